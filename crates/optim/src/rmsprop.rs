//! RMSprop (`torch.optim.RMSprop`): divide the gradient by a running root mean square of
//! recent gradients, optionally centred and with momentum.

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::error::{non_negative, OptimError};
use crate::group::{group_access, GroupConfig};
use crate::kernels::{addcdiv, addcmul, lerp};
use crate::state::{Buffer, BufferSpec, Params};
use crate::{Optimizer, OptimizerConfig, OptimizerState, ParamGroup};

pub(crate) const KIND: &str = "RMSprop";
const SQUARE_AVG: &str = "square_avg";
const MOMENTUM_BUFFER: &str = "momentum_buffer";
const GRAD_AVG: &str = "grad_avg";

/// [`RMSprop`]'s hyper-parameters, named and defaulted as `torch.optim.RMSprop`'s.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RMSpropConfig {
    /// Learning rate η (default 1e-2).
    pub lr: f64,
    /// Smoothing constant α of the running averages (default 0.99).
    pub alpha: f64,
    /// ε added to the root mean square, outside the square root (default 1e-8).
    pub eps: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// Momentum factor μ (default 0).
    pub momentum: f64,
    /// Centred: normalise by an estimate of the gradient's variance rather than its
    /// second moment (default false).
    pub centered: bool,
}

impl Default for RMSpropConfig {
    fn default() -> Self {
        RMSpropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

/// `torch.optim.RMSprop`, per parameter and element:
///
/// ```text
/// g ← ∇J + λθ                            (if λ ≠ 0)
/// v ← αv + (1 − α)g²
/// ḡ ← αḡ + (1 − α)g;  r = √(v − ḡ²)      (centered), else r = √v
/// b ← μb + g/(r + ε);  θ ← θ − ηb        (if μ > 0)
/// θ ← θ − η·g/(r + ε)                     (otherwise)
/// ```
pub struct RMSprop {
    params: Params<RMSpropConfig>,
    square_avg: Buffer,
    momentum_buffer: Buffer,
    grad_avg: Buffer,
}

impl RMSprop {
    /// An optimizer over `params` (one group), validating the hyper-parameters as
    /// PyTorch does.
    pub fn new(params: Vec<Tensor>, config: RMSpropConfig) -> Result<RMSprop, OptimError> {
        RMSprop::with_groups(vec![ParamGroup::new(params, config)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; fails when
    /// no group has a parameter, a hyper-parameter is invalid, or a parameter is given
    /// twice.
    pub fn with_groups(groups: Vec<ParamGroup<RMSpropConfig>>) -> Result<RMSprop, OptimError> {
        let params = Params::new(groups)?;
        Ok(RMSprop {
            square_avg: params.empty_buffer(),
            momentum_buffer: params.empty_buffer(),
            grad_avg: params.empty_buffer(),
            params,
        })
    }

    /// The hyper-parameters of group 0.
    pub fn config(&self) -> &RMSpropConfig {
        &self.params.configs[0]
    }

    /// The hyper-parameters of every group, in group order.
    pub fn group_configs(&self) -> &[RMSpropConfig] {
        &self.params.configs
    }
}

fn validate(c: &RMSpropConfig) -> Result<(), OptimError> {
    non_negative("learning rate", c.lr)?;
    non_negative("epsilon value", c.eps)?;
    non_negative("momentum value", c.momentum)?;
    non_negative("weight_decay value", c.weight_decay)?;
    non_negative("alpha value", c.alpha)
}

impl GroupConfig for RMSpropConfig {
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
        OptimizerConfig::RMSprop(self)
    }

    fn unwrap(config: &OptimizerConfig) -> Option<Self> {
        match config {
            OptimizerConfig::RMSprop(c) => Some(*c),
            _ => None,
        }
    }
}

/// The buffers, in the order of the struct's fields. The optional ones start as zeros
/// whenever missing, so a group may switch momentum or centring on mid-run.
const BUFFERS: [BufferSpec<RMSpropConfig>; 3] = [
    BufferSpec {
        name: SQUARE_AVG,
        used: |_| true,
        lazy: false,
    },
    BufferSpec {
        name: MOMENTUM_BUFFER,
        used: |c| c.momentum > 0.0,
        lazy: true,
    },
    BufferSpec {
        name: GRAD_AVG,
        used: |c| c.centered,
        lazy: true,
    },
];

/// A buffer's entry for a parameter, created as zeros when `used`; empty otherwise.
fn entry(buffer: &mut Buffer, i: usize, n: usize, used: bool) -> &mut [f32] {
    if used {
        buffer[i].get_or_insert_with(|| vec![0.0; n])
    } else {
        &mut []
    }
}

impl Optimizer for RMSprop {
    fn kind(&self) -> &'static str {
        KIND
    }

    group_access!(params);

    /// Mirrors `_single_tensor_rmsprop`; `mul_add` where PyTorch's kernels fuse.
    fn step(&mut self) {
        let (sq_buf, mom_buf, avg_buf) = (
            &mut self.square_avg,
            &mut self.momentum_buffer,
            &mut self.grad_avg,
        );
        self.params.update(|i, c, _, theta, grad| {
            let (alpha, one_minus_alpha) = (c.alpha as f32, (1.0 - c.alpha) as f32);
            let (wd, eps, mu, neg_lr) = (
                c.weight_decay as f32,
                c.eps as f32,
                c.momentum as f32,
                -c.lr as f32,
            );
            let n = grad.len();
            let sq = entry(sq_buf, i, n, true);
            let mom = entry(mom_buf, i, n, c.momentum > 0.0);
            let avg = entry(avg_buf, i, n, c.centered);
            for j in 0..n {
                let mut g = grad[j];
                if c.weight_decay != 0.0 {
                    g = wd.mul_add(theta[j], g);
                }
                sq[j] = addcmul(sq[j] * alpha, one_minus_alpha, g, g);
                let rms = match avg.get_mut(j) {
                    Some(a) => {
                        *a = lerp(*a, g, one_minus_alpha);
                        addcmul(sq[j], -1.0, *a, *a).sqrt()
                    }
                    None => sq[j].sqrt(),
                } + eps;
                match mom.get_mut(j) {
                    Some(b) => {
                        *b = addcdiv(*b * mu, 1.0, g, rms);
                        theta[j] = neg_lr.mul_add(*b, theta[j]);
                    }
                    None => theta[j] = addcdiv(theta[j], neg_lr, g, rms),
                }
            }
        });
    }

    fn state(&self) -> OptimizerState {
        self.params.export(
            &BUFFERS,
            &[&self.square_avg, &self.momentum_buffer, &self.grad_avg],
        )
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.params.load(state, &BUFFERS)?;
        self.square_avg = self.params.take(state, SQUARE_AVG);
        self.momentum_buffer = self.params.take(state, MOMENTUM_BUFFER);
        self.grad_avg = self.params.take(state, GRAD_AVG);
        Ok(())
    }
}
