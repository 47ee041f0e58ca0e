//! Kullback-Leibler divergence between distributions, PyTorch's `KLDivLoss`.
//!
//! As in PyTorch the input holds log-probabilities log q and the target probabilities p
//! (or log p with `log_target`), and the element loss is p·(log p − log q). It needs one
//! more reduction than the other losses, `BatchMean` (sum / batch size), which is the
//! mathematical KL divergence per sample; hence its own [`KlReduction`] enum.

use tapegrad_autograd::{Result, Tensor};

use crate::{or_panic, pointwise, Pointwise, Reduction};

/// How `KLDivLoss` combines its element losses: PyTorch's `reduction` strings,
/// including `"batchmean"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KlReduction {
    /// One loss per element.
    None,
    /// Sum divided by the size of axis 0: the KL divergence per sample, which is what
    /// one usually wants.
    BatchMean,
    /// Sum of all elements.
    Sum,
    /// Mean over all elements, PyTorch's default (which warns that it is not the KL
    /// divergence; kept as the default only to match it).
    #[default]
    Mean,
}

impl From<Reduction> for KlReduction {
    fn from(r: Reduction) -> Self {
        match r {
            Reduction::None => KlReduction::None,
            Reduction::Mean => KlReduction::Mean,
            Reduction::Sum => KlReduction::Sum,
        }
    }
}

/// KL divergence with `input` = log q and `target` = p (or log p when `log_target`),
/// same shape: element loss p·(log p − input), with 0·log 0 = 0 (PyTorch's `xlogy`)
/// when `log_target` is false, exp(t)·(t − input) when it is true; then reduced.
///
/// The input gradient is −p. The target gradient is log p + 1 − input (−∞ where p = 0)
/// or exp(t)·(t − input + 1).
pub fn kl_div(
    input: &Tensor,
    target: &Tensor,
    reduction: KlReduction,
    log_target: bool,
) -> Result<Tensor> {
    let loss = pointwise("kl_div", input, target, |_, x, t| {
        if log_target {
            let p = t.exp();
            Pointwise {
                loss: p * (t - x),
                d_input: -p,
                d_target: p * (t - x + 1.0),
            }
        } else {
            let p_log_p = if t == 0.0 { 0.0 } else { t * t.ln() };
            Pointwise {
                loss: p_log_p - t * x,
                d_input: -t,
                d_target: t.ln() + 1.0 - x,
            }
        }
    })?;
    Ok(match reduction {
        KlReduction::None => loss,
        KlReduction::Mean => loss.mean(),
        KlReduction::Sum => loss.sum(),
        KlReduction::BatchMean => {
            let batch = input.shape().first().copied().unwrap_or(1);
            loss.sum().div_scalar(batch as f32)
        }
    })
}

/// `torch.nn.KLDivLoss`: see [`kl_div`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KlDivLoss {
    reduction: KlReduction,
    log_target: bool,
}

impl KlDivLoss {
    /// Mean reduction (prefer `.reduction(KlReduction::BatchMean)`) and probability
    /// targets, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined; takes a [`KlReduction`] or a plain
    /// [`Reduction`].
    pub fn reduction(mut self, reduction: impl Into<KlReduction>) -> Self {
        self.reduction = reduction.into();
        self
    }

    /// Whether the target holds log-probabilities rather than probabilities.
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }

    /// The loss, or an error when the shapes differ.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        kl_div(input, target, self.reduction, self.log_target)
    }

    /// The loss; panics with the error's message when the shapes differ.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}
