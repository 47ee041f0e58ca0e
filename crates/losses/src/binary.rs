//! Binary (multi-label) classification losses: BCE on probabilities and BCE on logits.
//!
//! Both are fused elementwise ops (see [`crate::pointwise`]) so that their values and
//! gradients at the edges are PyTorch's: BCE clamps each log at −100 and divides its
//! gradient by max(x·(1 − x), 1e-12); BCE-with-logits is written with softplus so that
//! logits of ±1000 give finite losses and gradients.

use tapegrad_autograd::{Result, Tensor, TensorError};

use crate::{broadcast_factor, or_panic, pointwise, reduce, Pointwise, Reduction};

/// PyTorch clamps each log term of BCE here, so a confident wrong prediction costs 100
/// instead of infinity.
const LOG_FLOOR: f32 = -100.0;
/// PyTorch's floor on x·(1 − x) in BCE's gradient.
const GRAD_EPS: f32 = 1e-12;

/// log(1 + eˣ) without overflow: max(x, 0) + log1p(e^−|x|).
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// 1 / (1 + e⁻ˣ), never exponentiating a large positive number.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Binary cross-entropy on probabilities x ∈ [0, 1]:
/// −w·(y·max(log x, −100) + (1 − y)·max(log(1 − x), −100)), reduced (mean over all
/// elements, whatever the weights). `weight` must broadcast to the input's shape.
///
/// The input gradient is PyTorch's w·(x − y) / max(x·(1 − x), 1e-12), so it is huge
/// but finite at x = 0 or 1. Fails for shapes that differ or an input outside [0, 1].
pub fn binary_cross_entropy(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy";
    let weight = broadcast_factor(OP, weight, input.shape())?;
    if let Some(bad) = input.data().iter().find(|x| !(0.0..=1.0).contains(*x)) {
        return Err(TensorError::InvalidArgument {
            op: OP,
            reason: format!(
                "all input elements must be probabilities in [0, 1], found {bad}; \
                 use binary_cross_entropy_with_logits on raw scores"
            ),
        });
    }
    let loss = pointwise(OP, input, target, |i, x, y| {
        let w = weight.as_ref().map_or(1.0, |w| w[i]);
        let log_x = x.ln().max(LOG_FLOOR);
        let log_1mx = (-x).ln_1p().max(LOG_FLOOR);
        Pointwise {
            loss: w * ((y - 1.0) * log_1mx - y * log_x),
            d_input: w * (x - y) / ((1.0 - x) * x).max(GRAD_EPS),
            // The derivative of the clamped expression, so it stays finite at 0 and 1.
            d_target: w * (log_1mx - log_x),
        }
    })?;
    Ok(reduce(loss, reduction))
}

/// Binary cross-entropy on logits, σ folded in:
/// w·((1 − y)·softplus(x) + p·y·softplus(−x)), reduced, where p is `pos_weight`
/// (broadcast to the input, so a `[C]` tensor weighs positives per class) and w is
/// `weight`. This equals PyTorch's (1 − y)·x + (1 + (p − 1)·y)·(log(1 + e^−|x|) +
/// max(−x, 0)) and never overflows.
///
/// The input gradient is w·((1 + (p − 1)·y)·σ(x) − p·y).
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy_with_logits";
    let weight = broadcast_factor(OP, weight, input.shape())?;
    let pos_weight = broadcast_factor(OP, pos_weight, input.shape())?;
    let loss = pointwise(OP, input, target, |i, x, y| {
        let w = weight.as_ref().map_or(1.0, |w| w[i]);
        let p = pos_weight.as_ref().map_or(1.0, |p| p[i]);
        let (sp_pos, sp_neg) = (softplus(x), softplus(-x));
        Pointwise {
            loss: w * ((1.0 - y) * sp_pos + p * y * sp_neg),
            d_input: w * ((1.0 + (p - 1.0) * y) * sigmoid(x) - p * y),
            d_target: w * (p * sp_neg - sp_pos),
        }
    })?;
    Ok(reduce(loss, reduction))
}

/// `torch.nn.BCELoss`: see [`binary_cross_entropy`].
#[derive(Clone, Debug, Default)]
pub struct BceLoss {
    reduction: Reduction,
    weight: Option<Tensor>,
}

impl BceLoss {
    /// Mean reduction and no weight, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Rescales each element's loss; must broadcast to the input's shape.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// The loss, or an error for differing shapes, a bad weight or a non-probability.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        binary_cross_entropy(input, target, self.weight.as_ref(), self.reduction)
    }

    /// The loss; panics with the error's message where `try_forward` fails.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}

/// `torch.nn.BCEWithLogitsLoss`: see [`binary_cross_entropy_with_logits`].
#[derive(Clone, Debug, Default)]
pub struct BceWithLogitsLoss {
    reduction: Reduction,
    weight: Option<Tensor>,
    pos_weight: Option<Tensor>,
}

impl BceWithLogitsLoss {
    /// Mean reduction, no weight, no pos_weight, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Rescales each element's loss; must broadcast to the input's shape.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Weighs the positive term (y = 1) of each element, typically `[C]` with
    /// negatives / positives per class; must broadcast to the input's shape.
    pub fn pos_weight(mut self, pos_weight: Tensor) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }

    /// The loss, or an error for differing shapes or a weight that does not broadcast.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        binary_cross_entropy_with_logits(
            input,
            target,
            self.weight.as_ref(),
            self.pos_weight.as_ref(),
            self.reduction,
        )
    }

    /// The loss; panics with the error's message where `try_forward` fails.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}
