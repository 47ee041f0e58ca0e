//! Plain gradient descent: the full-batch strategy, with no state at all.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::error::{non_negative, OptimError};
use crate::group::{group_access, GroupConfig};
use crate::state::{BufferSpec, Params};
use crate::{Optimizer, OptimizerConfig, OptimizerState, ParamGroup};

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
    params: Params<GradientDescentConfig>,
}

impl GradientDescent {
    /// An optimizer over `params` (one group); fails on an empty list or a negative
    /// learning rate.
    pub fn new(
        params: Vec<Tensor>,
        config: GradientDescentConfig,
    ) -> Result<GradientDescent, OptimError> {
        GradientDescent::with_groups(vec![ParamGroup::new(params, config)])
    }

    /// An optimizer over parameter groups, each with its own learning rate; fails when no
    /// group has a parameter, a learning rate is negative, or a parameter is given twice.
    pub fn with_groups(
        groups: Vec<ParamGroup<GradientDescentConfig>>,
    ) -> Result<GradientDescent, OptimError> {
        Ok(GradientDescent {
            params: Params::new(groups)?,
        })
    }

    /// The hyper-parameters of group 0.
    pub fn config(&self) -> &GradientDescentConfig {
        &self.params.configs[0]
    }

    /// The hyper-parameters of every group, in group order.
    pub fn group_configs(&self) -> &[GradientDescentConfig] {
        &self.params.configs
    }
}

impl GroupConfig for GradientDescentConfig {
    const KIND: &'static str = KIND;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<(), OptimError> {
        validate(self)
    }

    fn wrap(self) -> OptimizerConfig {
        OptimizerConfig::GradientDescent(self)
    }

    fn unwrap(config: &OptimizerConfig) -> Option<Self> {
        match config {
            OptimizerConfig::GradientDescent(c) => Some(*c),
            _ => None,
        }
    }
}

fn validate(config: &GradientDescentConfig) -> Result<(), OptimError> {
    non_negative("learning rate", config.lr)
}

impl Optimizer for GradientDescent {
    fn kind(&self) -> &'static str {
        KIND
    }

    group_access!(params);

    /// θ ← θ − η·g, as PyTorch's `param.add_(grad, alpha=-lr)` (one fused multiply-add).
    fn step(&mut self) {
        self.params.update(|_, c, _, theta, grad| {
            let neg_lr = -c.lr as f32;
            for (t, &g) in theta.iter_mut().zip(grad) {
                *t = neg_lr.mul_add(g, *t);
            }
        });
    }

    fn state(&self) -> OptimizerState {
        self.params.export(&[], &[])
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        const NO_BUFFERS: &[BufferSpec<GradientDescentConfig>] = &[];
        self.params.load(state, NO_BUFFERS)
    }
}
