//! Multi-class losses with integer class targets: cross-entropy on logits and NLL on
//! log-probabilities.
//!
//! The input is `[N, C]`, `[N, C, d1, d2, ...]` (one class map per position, as
//! PyTorch's K-dimensional case) or a single sample `[C]`; the targets are one `i64` per
//! sample and position, in row-major order. Cross-entropy is the autograd op
//! `log_softmax` over the class axis followed by NLL: `log_softmax` subtracts the maximum
//! before exponentiating, so logits of ±1000 stay finite, and its backward chained with
//! NLL's gives softmax − target. The shared NLL op is in `class_targets.rs`.

use tapegrad_autograd::{Result, Tensor, TensorError};

use crate::class_targets::{from_log_probs, validate};
use crate::{or_panic, Reduction};

/// PyTorch's default `ignore_index`.
const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Cross-entropy of `input` logits (`[N, C]`, `[N, C, d...]` or `[C]`) against class
/// indices: `log_softmax` over axis 1, then [`nll_loss`] with optional class `weight`
/// (`[C]`), `ignore_index` (PyTorch's default −100) and `label_smoothing` ε ∈ [0, 1]
/// (the target becomes (1 − ε)·one-hot + ε/C). The mean divides by the summed weight
/// of the non-ignored targets (their count without weights); if all are ignored it is
/// NaN, as in PyTorch.
pub fn cross_entropy(
    input: &Tensor,
    target: &[i64],
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
    label_smoothing: f32,
) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(TensorError::InvalidArgument {
            op: OP,
            reason: format!("label_smoothing must be in [0, 1], got {label_smoothing}"),
        });
    }
    let t = validate(OP, input, target, weight, ignore_index)?;
    let logp = t.batched.try_log_softmax(1)?;
    from_log_probs(OP, &logp, t, label_smoothing, reduction)
}

/// Negative log-likelihood of log-probabilities `input` (`[N, C]`, `[N, C, d...]` or
/// `[C]`, e.g. a `log_softmax` output): l_i = −w_{t_i}·input[i, t_i], 0 where
/// t_i = `ignore_index`; the mean divides by Σ w_{t_i} over non-ignored samples.
pub fn nll_loss(
    input: &Tensor,
    target: &[i64],
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "nll_loss";
    let t = validate(OP, input, target, weight, ignore_index)?;
    let logp = t.batched.clone();
    from_log_probs(OP, &logp, t, 0.0, reduction)
}

/// `torch.nn.CrossEntropyLoss` on logits with class-index targets: see
/// [`cross_entropy`].
#[derive(Clone, Debug)]
pub struct CrossEntropyLoss {
    reduction: Reduction,
    weight: Option<Tensor>,
    ignore_index: i64,
    label_smoothing: f32,
}

impl Default for CrossEntropyLoss {
    fn default() -> Self {
        Self {
            reduction: Reduction::Mean,
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            label_smoothing: 0.0,
        }
    }
}

impl CrossEntropyLoss {
    /// Mean reduction, no class weights, ignore_index −100, no smoothing, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the per-sample losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Weighs each class's samples (a `[C]` tensor), e.g. against class imbalance.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Samples whose target is this value contribute nothing (padding tokens, say).
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Mixes ε of the uniform distribution into the one-hot target (checked in
    /// `try_forward`: ε ∈ [0, 1]).
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// The loss, or an error for a wrong target count, a bad class index or weight.
    pub fn try_forward(&self, input: &Tensor, target: &[i64]) -> Result<Tensor> {
        cross_entropy(
            input,
            target,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
        )
    }

    /// The loss; panics with the error's message where `try_forward` fails.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &[i64]) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}

/// `torch.nn.NLLLoss` on log-probabilities with class-index targets: see [`nll_loss`].
#[derive(Clone, Debug)]
pub struct NllLoss {
    reduction: Reduction,
    weight: Option<Tensor>,
    ignore_index: i64,
}

impl Default for NllLoss {
    fn default() -> Self {
        Self {
            reduction: Reduction::Mean,
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
        }
    }
}

impl NllLoss {
    /// Mean reduction, no class weights, ignore_index −100, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the per-sample losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Weighs each class's samples (a `[C]` tensor).
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Samples whose target is this value contribute nothing.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// The loss, or an error for a wrong target count, a bad class index or weight.
    pub fn try_forward(&self, input: &Tensor, target: &[i64]) -> Result<Tensor> {
        nll_loss(
            input,
            target,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
        )
    }

    /// The loss; panics with the error's message where `try_forward` fails.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &[i64]) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}
