//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
//! decay: `torch.optim.SGD`.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::error::{invalid, non_negative, OptimError};
use crate::group::{group_access, GroupConfig};
use crate::state::{Buffer, BufferSpec, Params};
use crate::{Optimizer, OptimizerConfig, OptimizerState, ParamGroup};

pub(crate) const KIND: &str = "SGD";
const MOMENTUM_BUFFER: &str = "momentum_buffer";

/// [`Sgd`]'s hyper-parameters, named and defaulted as `torch.optim.SGD`'s.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate η (default 1e-3).
    pub lr: f64,
    /// Momentum factor μ (default 0: no momentum buffer).
    pub momentum: f64,
    /// Dampening τ applied to the gradient entering the momentum buffer (default 0).
    pub dampening: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (default false; needs momentum > 0 and zero dampening).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// `torch.optim.SGD`, per parameter and element:
///
/// ```text
/// g ← ∇J + λθ                       (if λ ≠ 0)
/// b ← g on the first step, else b ← μb + (1 − τ)g    (if μ ≠ 0)
/// g ← g + μb if nesterov, else g ← b                  (if μ ≠ 0)
/// θ ← θ − ηg
/// ```
///
/// The first momentum buffer is the gradient itself, undampened, as in PyTorch.
pub struct Sgd {
    params: Params<SgdConfig>,
    momentum_buffer: Buffer,
}

impl Sgd {
    /// An optimizer over `params` (one group), validating the hyper-parameters as
    /// PyTorch does.
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Result<Sgd, OptimError> {
        Sgd::with_groups(vec![ParamGroup::new(params, config)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; fails when
    /// no group has a parameter, a hyper-parameter is invalid, or a parameter is given
    /// twice.
    pub fn with_groups(groups: Vec<ParamGroup<SgdConfig>>) -> Result<Sgd, OptimError> {
        let params = Params::new(groups)?;
        Ok(Sgd {
            momentum_buffer: params.empty_buffer(),
            params,
        })
    }

    /// The hyper-parameters of group 0.
    pub fn config(&self) -> &SgdConfig {
        &self.params.configs[0]
    }

    /// The hyper-parameters of every group, in group order.
    pub fn group_configs(&self) -> &[SgdConfig] {
        &self.params.configs
    }
}

fn validate(config: &SgdConfig) -> Result<(), OptimError> {
    non_negative("learning rate", config.lr)?;
    non_negative("momentum value", config.momentum)?;
    non_negative("weight_decay value", config.weight_decay)?;
    if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
        return Err(invalid(format!(
            "Nesterov momentum requires a momentum and zero dampening \
             (got momentum {}, dampening {})",
            config.momentum, config.dampening
        )));
    }
    Ok(())
}

impl GroupConfig for SgdConfig {
    const KIND: &'static str = KIND;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }

    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }

    fn validate(&self) -> Result<(), OptimError> {
        validate(self)
    }

    fn wrap(self) -> OptimizerConfig {
        OptimizerConfig::Sgd(self)
    }

    fn unwrap(config: &OptimizerConfig) -> Option<Self> {
        match config {
            OptimizerConfig::Sgd(c) => Some(*c),
            _ => None,
        }
    }
}

/// The momentum buffer, kept by groups with momentum. A missing entry is the first step's
/// (the buffer starts as the gradient), so a group may gain momentum mid-run.
const BUFFERS: [BufferSpec<SgdConfig>; 1] = [BufferSpec {
    name: MOMENTUM_BUFFER,
    used: |c| c.momentum != 0.0,
    lazy: true,
}];

impl Optimizer for Sgd {
    fn kind(&self) -> &'static str {
        KIND
    }

    group_access!(params);

    /// Mirrors `_single_tensor_sgd`: scalars are rounded to f32 once, and each
    /// `add(x, alpha=a)` is one fused multiply-add, as PyTorch's CPU kernel does it.
    fn step(&mut self) {
        let buffers = &mut self.momentum_buffer;
        self.params.update(|i, c, _, theta, grad| {
            let (wd, mu, nesterov) = (c.weight_decay as f32, c.momentum as f32, c.nesterov);
            let one_minus_dampening = (1.0 - c.dampening) as f32;
            let neg_lr = -c.lr as f32;
            let slot = &mut buffers[i];
            let fresh = slot.is_none();
            // Without momentum there is no buffer, and `buf.get_mut(j)` is always None.
            let buf: &mut [f32] = if c.momentum != 0.0 {
                slot.get_or_insert_with(|| vec![0.0; grad.len()])
            } else {
                &mut []
            };
            for j in 0..theta.len() {
                let mut g = grad[j];
                if c.weight_decay != 0.0 {
                    g = wd.mul_add(theta[j], g);
                }
                if let Some(b) = buf.get_mut(j) {
                    *b = if fresh {
                        g
                    } else {
                        one_minus_dampening.mul_add(g, *b * mu)
                    };
                    g = if nesterov { mu.mul_add(*b, g) } else { *b };
                }
                theta[j] = neg_lr.mul_add(g, theta[j]);
            }
        });
    }

    fn state(&self) -> OptimizerState {
        self.params.export(&BUFFERS, &[&self.momentum_buffer])
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.params.load(state, &BUFFERS)?;
        self.momentum_buffer = self.params.take(state, MOMENTUM_BUFFER);
        Ok(())
    }
}
