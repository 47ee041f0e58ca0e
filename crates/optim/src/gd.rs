//! Plain gradient descent: the full-batch strategy, with no state at all.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::error::{non_negative, OptimError};
use crate::state::{kind_mismatch, Params};
use crate::{Optimizer, OptimizerConfig, OptimizerState};

pub(crate) const KIND: &str = "GradientDescent";

/// [`GradientDescent`]'s hyper-parameters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct GradientDescentConfig {
    /// Learning rate η (default 1e-3, `torch.optim.SGD`'s).
    pub lr: f64,
}

impl Default for GradientDescentConfig {
    fn default() -> Self {
        GradientDescentConfig { lr: 1e-3 }
    }
}

/// Gradient descent, θ ← θ − η·∇J.
///
/// The same arithmetic as `torch.optim.SGD` without momentum or weight decay; fed the
/// gradient of the loss over the whole training set it is full-batch gradient descent.
pub struct GradientDescent {
    params: Params,
    config: GradientDescentConfig,
}

impl GradientDescent {
    /// An optimizer over `params`; fails on an empty list or a negative learning rate.
    pub fn new(
        params: Vec<Tensor>,
        config: GradientDescentConfig,
    ) -> Result<GradientDescent, OptimError> {
        validate(&config)?;
        Ok(GradientDescent {
            params: Params::new(params)?,
            config,
        })
    }

    /// The hyper-parameters in use.
    pub fn config(&self) -> &GradientDescentConfig {
        &self.config
    }
}

fn validate(config: &GradientDescentConfig) -> Result<(), OptimError> {
    non_negative("learning rate", config.lr)
}

impl Optimizer for GradientDescent {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn params(&self) -> &[Tensor] {
        &self.params.tensors
    }

    /// θ ← θ − η·g, as PyTorch's `param.add_(grad, alpha=-lr)` (one fused multiply-add).
    fn step(&mut self) {
        let neg_lr = -self.config.lr as f32;
        self.params.update(|_, _, theta, grad| {
            for (t, &g) in theta.iter_mut().zip(grad) {
                *t = neg_lr.mul_add(g, *t);
            }
        });
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        crate::error::or_panic_lr(lr);
        self.config.lr = lr;
    }

    fn state(&self) -> OptimizerState {
        self.params
            .export(KIND, OptimizerConfig::GradientDescent(self.config), &[])
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        let OptimizerConfig::GradientDescent(config) = &state.config else {
            return Err(kind_mismatch(KIND, state));
        };
        validate(config)?;
        self.params.load(KIND, state, &[])?;
        self.config = *config;
        Ok(())
    }
}
