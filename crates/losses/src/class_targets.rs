//! What cross-entropy and NLL share: validating class targets against the input, and
//! the fused NLL op (with label smoothing) on log-probabilities.
//!
//! NLL is one custom op rather than gather-and-multiply: an ignored sample is skipped,
//! never multiplied by 0, so a −∞ log-probability there (NLL on log 0) cannot turn the
//! loss into NaN, and the tape holds one node instead of five.

use tapegrad_autograd::{custom_op, Result, Tensor, TensorError};

use crate::Reduction;

/// The validated class targets of one call.
pub(crate) struct Targets {
    /// The input with a batch axis, `[N, C, ...]`.
    pub(crate) batched: Tensor,
    /// The shape of the unreduced loss: the input's without the class axis.
    out_shape: Vec<usize>,
    classes: usize,
    /// Class per sample; 0, and never read, where the target is ignored.
    indices: Vec<usize>,
    /// w[target] per sample, 0 where the target is ignored.
    sample_weight: Vec<f32>,
    /// 1 per sample, 0 where the target is ignored. Not derivable from `sample_weight`:
    /// a class of weight 0 still gets the label-smoothing term, an ignored target not.
    kept: Vec<f32>,
    class_weight: Option<Vec<f32>>,
}

/// Checks the shapes, the class weights and every target index.
pub(crate) fn validate(
    op: &'static str,
    input: &Tensor,
    target: &[i64],
    weight: Option<&Tensor>,
    ignore_index: i64,
) -> Result<Targets> {
    let (batched, out_shape) = match input.rank() {
        0 => {
            return Err(TensorError::InvalidArgument {
                op,
                reason: "needs an input of shape [C], [N, C] or [N, C, d...], got a scalar".into(),
            })
        }
        1 => (input.try_reshape(&[1, input.shape()[0]])?, vec![]),
        _ => {
            let mut out = input.shape().to_vec();
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
    let class_weight = match weight {
        Some(w) if w.shape() != [classes] => {
            return Err(TensorError::ShapeMismatch {
                op,
                lhs: input.shape().to_vec(),
                rhs: w.shape().to_vec(),
                detail: "input {} needs a class weight of shape [C], got {}",
            })
        }
        Some(w) => Some(w.to_vec()),
        None => None,
    };
    let mut indices = Vec::with_capacity(samples);
    let mut sample_weight = Vec::with_capacity(samples);
    let mut kept = Vec::with_capacity(samples);
    for (position, &t) in target.iter().enumerate() {
        if t == ignore_index {
            indices.push(0);
            sample_weight.push(0.0);
            kept.push(0.0);
            continue;
        }
        let class = usize::try_from(t)
            .ok()
            .filter(|&c| c < classes)
            .ok_or_else(|| TensorError::InvalidArgument {
                op,
                reason: format!(
                    "target {t} at position {position} is not a class index in 0..{classes} \
                     (nor ignore_index {ignore_index})"
                ),
            })?;
        indices.push(class);
        kept.push(1.0);
        sample_weight.push(class_weight.as_ref().map_or(1.0, |w| w[class]));
    }
    Ok(Targets {
        batched,
        out_shape,
        classes,
        indices,
        sample_weight,
        kept,
        class_weight,
    })
}

/// The loss from log-probabilities `logp` (`[N, C, ...]`):
/// l_i = −(1 − ε)·w_{t_i}·logp_{i,t_i} − (ε/C)·Σ_c w_c·logp_{i,c}, 0 for ignored i;
/// the mean divides the sum by Σ w_{t_i} over non-ignored i, as PyTorch does for both
/// terms.
pub(crate) fn from_log_probs(
    op: &'static str,
    logp: &Tensor,
    t: Targets,
    label_smoothing: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    let eps = label_smoothing;
    let classes = t.classes;
    let inner = logp.numel() / (logp.shape()[0] * classes).max(1);
    let picked_scale: Vec<f32> = t.sample_weight.iter().map(|w| (1.0 - eps) * w).collect();
    let smooth_scale: Vec<f32> = match (eps > 0.0, &t.class_weight) {
        (false, _) => Vec::new(),
        (true, None) => vec![eps / classes as f32; classes],
        (true, Some(w)) => w.iter().map(|w| eps / classes as f32 * w).collect(),
    };
    // Sample s = o·inner + r reads class c at (o·C + c)·inner + r.
    let offset = move |s: usize, c: usize| ((s / inner) * classes + c) * inner + s % inner;
    let mut loss = vec![0.0; t.indices.len()];
    {
        let x = logp.data();
        for (s, l) in loss.iter_mut().enumerate() {
            if t.kept[s] == 0.0 {
                continue;
            }
            let smooth: f32 = (0..smooth_scale.len())
                .map(|c| smooth_scale[c] * x[offset(s, c)])
                .sum();
            *l = -(picked_scale[s] * x[offset(s, t.indices[s])] + smooth);
        }
    }
    let total_weight: f32 = t.sample_weight.iter().sum();
    let numel = logp.numel();
    let loss = custom_op(op, &[logp], loss, &t.out_shape, move |g| {
        let mut grad = vec![0.0; numel];
        for (s, &g) in g.iter().enumerate() {
            if t.kept[s] == 0.0 {
                continue;
            }
            for (c, w) in smooth_scale.iter().enumerate() {
                grad[offset(s, c)] -= g * w;
            }
            grad[offset(s, t.indices[s])] -= g * picked_scale[s];
        }
        vec![Some(grad)]
    })?;
    Ok(match reduction {
        Reduction::None => loss,
        Reduction::Sum => loss.sum(),
        Reduction::Mean => loss.sum().div_scalar(total_weight),
    })
}
