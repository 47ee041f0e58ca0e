//! AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay, sharing Adam's update.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::adam::{validate, AdamStyle, Core};
use crate::error::OptimError;
use crate::group::{group_access, GroupConfig};
use crate::{AdamConfig, Optimizer, OptimizerConfig, OptimizerState, ParamGroup};

pub(crate) const KIND: &str = "AdamW";

/// [`AdamW`]'s hyper-parameters, named and defaulted as `torch.optim.AdamW`'s.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate η (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the first and second moment averages (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added to √v̂, outside the square root (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay λ: θ shrinks by the factor 1 − ηλ each step (default 0.01).
    pub weight_decay: f64,
    /// AMSGrad: normalise by the running maximum of v (default false).
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            amsgrad: false,
        }
    }
}

/// `torch.optim.AdamW`: [`Adam`](crate::Adam) with decoupled weight decay. Before the Adam update,
/// θ ← θ·(1 − ηλ), and λ never enters the gradient or the moment averages.
pub struct AdamW {
    core: Core<AdamWConfig>,
}

impl AdamW {
    /// An optimizer over `params` (one group), validating the hyper-parameters as
    /// PyTorch does.
    pub fn new(params: Vec<Tensor>, config: AdamWConfig) -> Result<AdamW, OptimError> {
        AdamW::with_groups(vec![ParamGroup::new(params, config)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters (typically
    /// weight decay on weight matrices and none on biases, norms and embeddings); fails
    /// when no group has a parameter, a hyper-parameter is invalid, or a parameter is
    /// given twice.
    pub fn with_groups(groups: Vec<ParamGroup<AdamWConfig>>) -> Result<AdamW, OptimError> {
        Ok(AdamW {
            core: Core::new(groups)?,
        })
    }

    /// The hyper-parameters of group 0.
    pub fn config(&self) -> &AdamWConfig {
        &self.core.params.configs[0]
    }

    /// The hyper-parameters of every group, in group order.
    pub fn group_configs(&self) -> &[AdamWConfig] {
        &self.core.params.configs
    }
}

impl AdamStyle for AdamWConfig {
    const DECOUPLED: bool = true;

    /// AdamW's hyper-parameters in Adam's struct; the update reads `weight_decay` as
    /// decoupled by [`AdamStyle::DECOUPLED`].
    fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
        }
    }
}

impl GroupConfig for AdamWConfig {
    const KIND: &'static str = KIND;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }

    fn set_momentum(&mut self, momentum: f64) {
        self.betas.0 = momentum;
    }

    fn validate(&self) -> Result<(), OptimError> {
        validate(&self.adam())
    }

    fn wrap(self) -> OptimizerConfig {
        OptimizerConfig::AdamW(self)
    }

    fn unwrap(config: &OptimizerConfig) -> Option<Self> {
        match config {
            OptimizerConfig::AdamW(c) => Some(*c),
            _ => None,
        }
    }
}

impl Optimizer for AdamW {
    fn kind(&self) -> &'static str {
        KIND
    }

    group_access!(core.params);

    fn step(&mut self) {
        self.core.step();
    }

    fn state(&self) -> OptimizerState {
        self.core.export()
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.core.load(state)
    }
}
