//! What cross-entropy and NLL share: validating class targets against the input, and
//! the fused NLL op (with label smoothing) on log-probabilities.
//!
//! NLL is one fused op (autograd's built-in [`nll_from_log_probs`]) rather than
//! gather-and-multiply: an ignored sample is skipped, never multiplied by 0, so a −∞
//! log-probability there (NLL on log 0) cannot turn the loss into NaN, the tape holds
//! one node instead of five, and its buffers come from the tensor pool, so a training
//! step allocates nothing for it.

use tapegrad_autograd::{nll_from_log_probs, Result, Shape, Tensor, TensorError};

use crate::Reduction;

/// The checked shapes of one call; the class indices are checked by the NLL op.
pub(crate) struct Targets<'a> {
    /// The input with a batch axis, `[N, C, ...]`.
    pub(crate) batched: Tensor,
    /// The shape of the unreduced loss: the input's without the class axis.
    out_shape: Shape,
    target: &'a [i64],
    weight: Option<&'a Tensor>,
    ignore_index: i64,
}

/// Checks the shapes and the class weights.
pub(crate) fn validate<'a>(
    op: &'static str,
    input: &Tensor,
    target: &'a [i64],
    weight: Option<&'a Tensor>,
    ignore_index: i64,
) -> Result<Targets<'a>> {
    let (batched, out_shape) = match input.rank() {
        0 => {
            return Err(TensorError::InvalidArgument {
                op,
                reason: "needs an input of shape [C], [N, C] or [N, C, d...], got a scalar".into(),
            })
        }
        1 => (input.try_reshape(&[1, input.shape()[0]])?, Shape::new()),
        _ => {
            let mut out = Shape::from_slice(input.shape());
            out.remove(1);
            (input.clone(), out)
        }
    };
    let classes = batched.shape()[1];
    let samples: usize = out_shape.iter().product();
    if target.len() != samples {
        return Err(TensorError::ShapeMismatch {
            op,
            lhs: input.shape().to_vec(),
            rhs: vec![target.len()],
            detail: "input {} needs one class index per sample (its shape without the \
                     class axis 1), got targets of shape {}",
        });
    }
    if let Some(w) = weight.filter(|w| w.shape() != [classes]) {
        return Err(TensorError::ShapeMismatch {
            op,
            lhs: input.shape().to_vec(),
            rhs: w.shape().to_vec(),
            detail: "input {} needs a class weight of shape [C], got {}",
        });
    }
    Ok(Targets {
        batched,
        out_shape,
        target,
        weight,
        ignore_index,
    })
}

/// The loss from log-probabilities `logp` (`[N, C, ...]`):
/// l_i = −(1 − ε)·w_{t_i}·logp_{i,t_i} − (ε/C)·Σ_c w_c·logp_{i,c}, 0 for ignored i;
/// the mean divides the sum by Σ w_{t_i} over non-ignored i, as PyTorch does for both
/// terms. Fails when a target is neither a class index nor the ignored index.
pub(crate) fn from_log_probs(
    op: &'static str,
    logp: &Tensor,
    t: Targets<'_>,
    label_smoothing: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    let (loss, total_weight) = nll_from_log_probs(
        op,
        logp,
        t.target,
        t.weight,
        t.ignore_index,
        label_smoothing,
        &t.out_shape,
    )?;
    Ok(match reduction {
        Reduction::None => loss,
        Reduction::Sum => loss.sum(),
        Reduction::Mean => loss.sum().div_scalar(total_weight),
    })
}
