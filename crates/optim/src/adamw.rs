//! AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay, sharing Adam's update.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::adam::{validate, Core};
use crate::error::OptimError;
use crate::state::kind_mismatch;
use crate::{AdamConfig, Optimizer, OptimizerConfig, OptimizerState};

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
    core: Core,
    config: AdamWConfig,
}

impl AdamW {
    /// An optimizer over `params`, validating the hyper-parameters as PyTorch does.
    pub fn new(params: Vec<Tensor>, config: AdamWConfig) -> Result<AdamW, OptimError> {
        validate(&as_adam(&config))?;
        Ok(AdamW {
            core: Core::new(params)?,
            config,
        })
    }

    /// The hyper-parameters in use.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
}

/// AdamW's hyper-parameters in Adam's struct; the update reads `weight_decay` as
/// decoupled or not by its own flag.
fn as_adam(c: &AdamWConfig) -> AdamConfig {
    AdamConfig {
        lr: c.lr,
        betas: c.betas,
        eps: c.eps,
        weight_decay: c.weight_decay,
        amsgrad: c.amsgrad,
    }
}

impl Optimizer for AdamW {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn params(&self) -> &[Tensor] {
        &self.core.params.tensors
    }

    fn step(&mut self) {
        self.core.step(as_adam(&self.config), true);
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        crate::error::or_panic_lr(lr);
        self.config.lr = lr;
    }

    fn state(&self) -> OptimizerState {
        self.core.export(
            KIND,
            OptimizerConfig::AdamW(self.config),
            self.config.amsgrad,
        )
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        let OptimizerConfig::AdamW(config) = &state.config else {
            return Err(kind_mismatch(KIND, state));
        };
        validate(&as_adam(config))?;
        self.core.load(KIND, state, config.amsgrad)?;
        self.config = *config;
        Ok(())
    }
}
