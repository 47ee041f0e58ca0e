//! Loss functions for tapegrad, matching `torch.nn` in value, gradient and defaults.
//!
//! Every loss comes twice: as a function (`mse_loss`, `cross_entropy`, ...) returning
//! `Result<Tensor>`, and as a criterion struct named like PyTorch's class (`MseLoss`,
//! `CrossEntropyLoss`, ...) built with `new()` (PyTorch's defaults) and builder methods,
//! with `try_forward` returning `Result` and a panicking `forward`.
//!
//! ```
//! use tapegrad_autograd::Tensor;
//! use tapegrad_losses::{CrossEntropyLoss, MseLoss, Reduction};
//!
//! let logits = Tensor::from_vec(vec![2.0, 0.5, -1.0, 0.1, 0.2, 3.0], &[2, 3])
//!     .unwrap()
//!     .with_requires_grad(true);
//! let loss = CrossEntropyLoss::new().label_smoothing(0.1).forward(&logits, &[0, 2]);
//! loss.backward();
//! assert_eq!(logits.grad().unwrap().shape(), &[2, 3]);
//!
//! let pred = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
//! let target = Tensor::from_vec(vec![0.0, 2.0], &[2]).unwrap();
//! let sum = MseLoss::new().reduction(Reduction::Sum).forward(&pred, &target);
//! assert_eq!(sum.item(), 1.0);
//! ```
//!
//! Targets must have exactly the input's shape (PyTorch broadcasts with a warning; here
//! a mismatch is almost always a bug, so it is an error). Class targets are `&[i64]`,
//! one per sample, as PyTorch's LongTensor. Weights (`weight`, `pos_weight`) are
//! hyper-parameters: no gradient flows into them. See `docs/losses.md` for the formulas.

mod binary;
mod class_targets;
mod classification;
mod divergence;
pub mod metrics;
mod regression;

pub use binary::{
    binary_cross_entropy, binary_cross_entropy_with_logits, BceLoss, BceWithLogitsLoss,
};
pub use classification::{cross_entropy, nll_loss, CrossEntropyLoss, NllLoss};
pub use divergence::{kl_div, KlDivLoss, KlReduction};
pub use regression::{
    huber_loss, l1_loss, mse_loss, smooth_l1_loss, HuberLoss, L1Loss, MseLoss, SmoothL1Loss,
};

pub(crate) use tapegrad_autograd::or_panic;
use tapegrad_autograd::{pointwise_loss, Result, Tensor, TensorError};

/// How the per-element losses are combined, like PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Keep one loss per element (per sample for class losses).
    None,
    /// Average (for weighted class losses: divide by the total weight). PyTorch's default.
    #[default]
    Mean,
    /// Add them up.
    Sum,
}

/// Applies a sum or mean reduction to a tensor of per-element losses.
pub(crate) fn reduce(loss: Tensor, reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::None => loss,
        Reduction::Mean => loss.mean(),
        Reduction::Sum => loss.sum(),
    }
}

/// Fails unless `target` has exactly `input`'s shape.
pub(crate) fn check_same_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    if input.shape() != target.shape() {
        return Err(TensorError::ShapeMismatch {
            op,
            lhs: input.shape().to_vec(),
            rhs: target.shape().to_vec(),
            detail: "input {} and target {} must have the same shape",
        });
    }
    Ok(())
}

/// The values of an optional per-element factor (`weight`, `pos_weight`) broadcast to
/// `shape`; the error names the loss rather than `broadcast_to`.
pub(crate) fn broadcast_factor(
    op: &'static str,
    factor: Option<&Tensor>,
    shape: &[usize],
) -> Result<Option<Vec<f32>>> {
    let Some(f) = factor else { return Ok(None) };
    let broadcast = tapegrad_autograd::no_grad(|| f.try_broadcast_to(shape));
    match broadcast {
        Ok(t) => Ok(Some(t.to_vec())),
        Err(_) => Err(TensorError::ShapeMismatch {
            op,
            lhs: shape.to_vec(),
            rhs: f.shape().to_vec(),
            detail: "input {} cannot take a weight of shape {} (it must broadcast)",
        }),
    }
}

/// One element's loss and its partial derivatives ([`tapegrad_autograd::PointwiseLoss`]).
pub(crate) use tapegrad_autograd::PointwiseLoss as Pointwise;

/// An elementwise loss as one fused op: `f(i, x, y)` gives element `i`'s loss and both
/// derivatives in one pass. Fusing keeps the branchy losses (SmoothL1, Huber, the
/// clamped BCE) to one tape node with PyTorch's exact derivative at the edges, instead
/// of a chain of clamps and masks. The derivatives are only kept for inputs that will
/// receive a gradient; the op is autograd's built-in [`pointwise_loss`], whose buffers
/// come from the tensor pool, so a training step allocates nothing for it.
pub(crate) fn pointwise(
    op: &'static str,
    input: &Tensor,
    target: &Tensor,
    f: impl Fn(usize, f32, f32) -> Pointwise,
) -> Result<Tensor> {
    check_same_shape(op, input, target)?;
    pointwise_loss(op, input, target, f)
}
