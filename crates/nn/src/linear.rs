//! `Linear`: y = x·Wᵀ + b, with PyTorch's layout and default initialisation.

use rand::Rng;
use tapegrad_autograd::{with_default_rng, Result, Tensor};

use crate::init::kaiming_uniform;
use crate::Module;

/// A fully connected layer: weight `[out, in]`, optional bias `[out]`.
///
/// Initialised like `torch.nn.Linear`: the weight by Kaiming-uniform with a = √5 and the
/// bias from U(−1/√in, 1/√in), which makes both U(−1/√in, 1/√in).
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Tensor,
    /// `[out_features]`, when the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with a bias, drawn from the default generator (see `manual_seed`).
    pub fn new(in_features: usize, out_features: usize) -> Result<Linear> {
        with_default_rng(|rng| Linear::with_bias_and_rng(in_features, out_features, true, rng))
    }

    /// A layer with a bias, drawn from the caller's generator.
    pub fn new_with_rng(
        in_features: usize,
        out_features: usize,
        rng: &mut impl Rng,
    ) -> Result<Linear> {
        Linear::with_bias_and_rng(in_features, out_features, true, rng)
    }

    /// A layer with or without a bias, drawn from the default generator.
    pub fn with_bias(in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        with_default_rng(|rng| Linear::with_bias_and_rng(in_features, out_features, bias, rng))
    }

    /// A layer with or without a bias, drawn from the caller's generator.
    pub fn with_bias_and_rng(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Linear> {
        let weight = kaiming_uniform(&[out_features, in_features], 5f32.sqrt(), rng)?
            .with_requires_grad(true);
        let bias = if bias {
            let bound = 1.0 / (in_features as f32).sqrt();
            Some(Tensor::uniform(&[out_features], -bound, bound, rng)?.with_requires_grad(true))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// A layer around existing tensors (e.g. loaded weights); both become trainable.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        // Checks the shapes the same way forward would.
        Tensor::zeros(&[1, weight.shape().get(1).copied().unwrap_or(0)])
            .try_linear(&weight, bias.as_ref())?;
        weight.set_requires_grad(true)?;
        if let Some(b) = &bias {
            b.set_requires_grad(true)?;
        }
        Ok(Linear { weight, bias })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for Linear {
    #[track_caller]
    fn forward(&self, input: &Tensor) -> Tensor {
        input.linear(&self.weight, self.bias.as_ref())
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            params.push(("bias".to_string(), b.clone()));
        }
        params
    }
}
