//! Adagrad (`torch.optim.Adagrad`): per-element learning rates shrinking with the sum of
//! all squared gradients seen so far.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::error::{non_negative, OptimError};
use crate::group::{group_access, GroupConfig};
use crate::kernels::{addcdiv, addcmul};
use crate::state::{Buffer, BufferSpec, Params};
use crate::{Optimizer, OptimizerConfig, OptimizerState, ParamGroup};

pub(crate) const KIND: &str = "Adagrad";
const SUM: &str = "sum";

/// [`Adagrad`]'s hyper-parameters, named and defaulted as `torch.optim.Adagrad`'s.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate η (default 1e-2).
    pub lr: f64,
    /// Learning-rate decay d: step t uses η / (1 + (t − 1)d) (default 0).
    pub lr_decay: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// Starting value of the sum of squares (default 0).
    pub initial_accumulator_value: f64,
    /// ε added to the square root of the sum (default 1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

/// `torch.optim.Adagrad`, per parameter and element, at step t:
///
/// ```text
/// g ← ∇J + λθ                  (if λ ≠ 0)
/// η_t = η / (1 + (t − 1)·d)
/// s ← s + g²                   (s starts at initial_accumulator_value)
/// θ ← θ − η_t·g / (√s + ε)
/// ```
pub struct Adagrad {
    params: Params<AdagradConfig>,
    sum: Buffer,
}

impl Adagrad {
    /// An optimizer over `params` (one group), validating the hyper-parameters as
    /// PyTorch does.
    pub fn new(params: Vec<Tensor>, config: AdagradConfig) -> Result<Adagrad, OptimError> {
        Adagrad::with_groups(vec![ParamGroup::new(params, config)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; fails when
    /// no group has a parameter, a hyper-parameter is invalid, or a parameter is given
    /// twice.
    pub fn with_groups(groups: Vec<ParamGroup<AdagradConfig>>) -> Result<Adagrad, OptimError> {
        let params = Params::new(groups)?;
        Ok(Adagrad {
            sum: params.empty_buffer(),
            params,
        })
    }

    /// The hyper-parameters of group 0.
    pub fn config(&self) -> &AdagradConfig {
        &self.params.configs[0]
    }

    /// The hyper-parameters of every group, in group order.
    pub fn group_configs(&self) -> &[AdagradConfig] {
        &self.params.configs
    }
}

fn validate(c: &AdagradConfig) -> Result<(), OptimError> {
    non_negative("learning rate", c.lr)?;
    non_negative("lr_decay value", c.lr_decay)?;
    non_negative("weight_decay value", c.weight_decay)?;
    non_negative(
        "initial_accumulator_value value",
        c.initial_accumulator_value,
    )?;
    non_negative("epsilon value", c.eps)
}

impl GroupConfig for AdagradConfig {
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
        OptimizerConfig::Adagrad(self)
    }

    fn unwrap(config: &OptimizerConfig) -> Option<Self> {
        match config {
            OptimizerConfig::Adagrad(c) => Some(*c),
            _ => None,
        }
    }
}

const BUFFERS: [BufferSpec<AdagradConfig>; 1] = [BufferSpec {
    name: SUM,
    used: |_| true,
    lazy: false,
}];

impl Optimizer for Adagrad {
    fn kind(&self) -> &'static str {
        KIND
    }

    group_access!(params);

    /// Mirrors `_single_tensor_adagrad`; the decayed rate η_t is computed in f64.
    fn step(&mut self) {
        let sums = &mut self.sum;
        self.params.update(|i, c, step, theta, grad| {
            let (wd, eps) = (c.weight_decay as f32, c.eps as f32);
            let initial = c.initial_accumulator_value as f32;
            // PyTorch fills the sum when it builds the optimizer; filling it at the first
            // step instead gives the same numbers and keeps all state lazy.
            let sum = sums[i].get_or_insert_with(|| vec![initial; grad.len()]);
            let neg_clr = (-(c.lr / (1.0 + (step - 1) as f64 * c.lr_decay))) as f32;
            for j in 0..theta.len() {
                let mut g = grad[j];
                if c.weight_decay != 0.0 {
                    g = wd.mul_add(theta[j], g);
                }
                sum[j] = addcmul(sum[j], 1.0, g, g);
                let std = sum[j].sqrt() + eps;
                theta[j] = addcdiv(theta[j], neg_clr, g, std);
            }
        });
    }

    fn state(&self) -> OptimizerState {
        self.params.export(&BUFFERS, &[&self.sum])
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.params.load(state, &BUFFERS)?;
        self.sum = self.params.take(state, SUM);
        Ok(())
    }
}
