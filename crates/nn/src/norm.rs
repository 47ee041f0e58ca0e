//! `LayerNorm` over the last axis: (x − mean) / √(var + ε) · γ + β, with the biased
//! variance, as `torch.nn.LayerNorm(normalized_shape=[d])`, computed by the fused
//! [`Tensor::layer_norm`] op (one pass per row forward and one backward).

use tapegrad_autograd::{or_panic, Result, Tensor, TensorError};

use crate::Module;

/// Layer normalisation over the last axis of width `d`.
pub struct LayerNorm {
    /// γ, `[d]`, initialised to ones (absent without elementwise affine).
    pub weight: Option<Tensor>,
    /// β, `[d]`, initialised to zeros.
    pub bias: Option<Tensor>,
    /// Added to the variance (PyTorch's default: 1e-5).
    pub eps: f32,
    width: usize,
}

impl LayerNorm {
    /// Normalises the last axis of width `d`, with a learnable γ and β.
    pub fn new(d: usize) -> LayerNorm {
        LayerNorm::with_options(d, 1e-5, true)
    }

    /// Full control: `eps`, and whether γ and β exist.
    pub fn with_options(d: usize, eps: f32, elementwise_affine: bool) -> LayerNorm {
        let (weight, bias) = if elementwise_affine {
            (
                Some(Tensor::ones(&[d]).with_requires_grad(true)),
                Some(Tensor::zeros(&[d]).with_requires_grad(true)),
            )
        } else {
            (None, None)
        };
        LayerNorm {
            weight,
            bias,
            eps,
            width: d,
        }
    }

    /// The normalisation, or an error when the last axis is not `d` wide.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let rank = x.rank();
        if rank == 0 || x.shape()[rank - 1] != self.width {
            return Err(TensorError::InvalidArgument {
                op: "LayerNorm",
                reason: format!(
                    "expected the last axis to be {}, got input of shape {:?}",
                    self.width,
                    x.shape()
                ),
            });
        }
        x.try_layer_norm(self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
}

impl Module for LayerNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(LayerNorm::try_forward(self, x))
    }

    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        LayerNorm::try_forward(self, x)
    }

    fn describe(&self) -> String {
        format!("LayerNorm {}", self.width)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = Vec::new();
        if let Some(w) = &self.weight {
            params.push(("weight".to_string(), w.clone()));
        }
        if let Some(b) = &self.bias {
            params.push(("bias".to_string(), b.clone()));
        }
        params
    }
}
