//! Adam (`torch.optim.Adam`), and the update rule AdamW (in `adamw.rs`) shares: weight
//! decay either added to the gradient (Adam's L2) or applied to the weights (AdamW).

use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::error::{invalid, non_negative, OptimError};
use crate::group::{group_access, GroupConfig};
use crate::kernels::{addcdiv, addcmul, lerp, maximum, with_fma};
use crate::state::{Buffer, BufferSpec, Params};
use crate::{Optimizer, OptimizerConfig, OptimizerState, ParamGroup};

pub(crate) const ADAM: &str = "Adam";
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";
const MAX_EXP_AVG_SQ: &str = "max_exp_avg_sq";

/// [`Adam`]'s hyper-parameters, named and defaulted as `torch.optim.Adam`'s.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate η (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the first and second moment averages (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added to √v̂, outside the square root (default 1e-8).
    pub eps: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// AMSGrad: normalise by the running maximum of v (default false).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

/// `torch.optim.Adam`, per parameter and element, at step t:
///
/// ```text
/// g ← ∇J + λθ                                  (if λ ≠ 0)
/// m ← β₁m + (1 − β₁)g          v ← β₂v + (1 − β₂)g²
/// v_max ← max(v_max, v)                         (amsgrad; v_max replaces v below)
/// m̂ = m / (1 − β₁ᵗ)            v̂ = v / (1 − β₂ᵗ)
/// θ ← θ − η·m̂ / (√v̂ + ε)
/// ```
///
/// ε sits outside the square root; AMSGrad keeps the maximum of the uncorrected v.
pub struct Adam {
    core: Core<AdamConfig>,
}

impl Adam {
    /// An optimizer over `params` (one group), validating the hyper-parameters as
    /// PyTorch does.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Result<Adam, OptimError> {
        Adam::with_groups(vec![ParamGroup::new(params, config)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; fails when
    /// no group has a parameter, a hyper-parameter is invalid, or a parameter is given
    /// twice.
    pub fn with_groups(groups: Vec<ParamGroup<AdamConfig>>) -> Result<Adam, OptimError> {
        Ok(Adam {
            core: Core::new(groups)?,
        })
    }

    /// The hyper-parameters of group 0.
    pub fn config(&self) -> &AdamConfig {
        &self.core.params.configs[0]
    }

    /// The hyper-parameters of every group, in group order.
    pub fn group_configs(&self) -> &[AdamConfig] {
        &self.core.params.configs
    }
}

/// Adam's and AdamW's config structs, as read by the shared update.
pub(crate) trait AdamStyle: GroupConfig {
    /// Whether `weight_decay` decays the weights (AdamW) rather than adding to the
    /// gradient (Adam).
    const DECOUPLED: bool;
    /// The hyper-parameters in Adam's struct.
    fn adam(&self) -> AdamConfig;
}

impl AdamStyle for AdamConfig {
    const DECOUPLED: bool = false;

    fn adam(&self) -> AdamConfig {
        *self
    }
}

impl GroupConfig for AdamConfig {
    const KIND: &'static str = ADAM;

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
        validate(self)
    }

    fn wrap(self) -> OptimizerConfig {
        OptimizerConfig::Adam(self)
    }

    fn unwrap(config: &OptimizerConfig) -> Option<Self> {
        match config {
            OptimizerConfig::Adam(c) => Some(*c),
            _ => None,
        }
    }
}

pub(crate) fn validate(c: &AdamConfig) -> Result<(), OptimError> {
    non_negative("learning rate", c.lr)?;
    non_negative("epsilon value", c.eps)?;
    for (index, beta) in [c.betas.0, c.betas.1].into_iter().enumerate() {
        if !(0.0..1.0).contains(&beta) {
            return Err(invalid(format!(
                "Invalid beta parameter at index {index}: {beta}"
            )));
        }
    }
    non_negative("weight_decay value", c.weight_decay)
}

/// The per-step constants of the elementwise update, already rounded to f32.
struct Scalars {
    avg_weight: f32,
    beta2: f32,
    one_minus_beta2: f32,
    wd: f32,
    eps: f32,
    bias_correction2_sqrt: f32,
    neg_step_size: f32,
    /// AdamW's `1 − lr·weight_decay`, applied to each weight just before its update (the
    /// same product as PyTorch's separate `param.mul_` pass, without a second sweep over
    /// the weights); 1 otherwise, which leaves every bit unchanged.
    decay: f32,
}

/// The elementwise Adam update of one parameter (decoupled decay first), with the
/// L2 term (`L2`) and the AMSGrad maximum (`AMS`) chosen at compile time.
#[inline(always)]
fn update_elements<const L2: bool, const AMS: bool>(
    theta: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    v_max: &mut [f32],
    k: &Scalars,
) {
    let n = theta.len();
    // Equal lengths up front, so the loop carries no bounds checks.
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    let v_max = if AMS { &mut v_max[..n] } else { v_max };
    for j in 0..n {
        let mut g = grad[j];
        if L2 {
            g = k.wd.mul_add(theta[j], g);
        }
        m[j] = lerp(m[j], g, k.avg_weight);
        v[j] = addcmul(v[j] * k.beta2, k.one_minus_beta2, g, g);
        let second = if AMS {
            v_max[j] = maximum(v_max[j], v[j]);
            v_max[j]
        } else {
            v[j]
        };
        let denom = second.sqrt() / k.bias_correction2_sqrt + k.eps;
        theta[j] = addcdiv(theta[j] * k.decay, k.neg_step_size, m[j], denom);
    }
}

/// Elements below which a parameter is not worth splitting between threads.
const PARALLEL_MIN: usize = 1 << 15;
/// Elements per part of a split parameter: fixed, so the parts do not depend on the
/// thread count (the update is elementwise anyway), and small enough that two threads
/// share a 400k-element weight evenly.
const CHUNK: usize = 1 << 15;

/// Mutable base pointers of one parameter's buffers, shared by the parts of a split.
struct Bases {
    theta: *mut f32,
    m: *mut f32,
    v: *mut f32,
    v_max: *mut f32,
}

// SAFETY: each part reconstructs only its own disjoint range from the pointers.
unsafe impl Sync for Bases {}

/// [`update_elements`] over fixed chunks of the parameter, shared between up to
/// `threads` threads (tapegrad's pool: the caller works too, no rayon wake-up). The
/// update is elementwise, so the split changes no bit of the result.
fn update_split<const L2: bool, const AMS: bool>(
    theta: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    v_max: &mut [f32],
    k: &Scalars,
    threads: usize,
) {
    let n = theta.len();
    if threads < 2 || n < PARALLEL_MIN {
        return with_fma(|| update_elements::<L2, AMS>(theta, grad, m, v, v_max, k));
    }
    assert!(grad.len() == n && m.len() == n && v.len() == n && (!AMS || v_max.len() == n));
    let bases = Bases {
        theta: theta.as_mut_ptr(),
        m: m.as_mut_ptr(),
        v: v.as_mut_ptr(),
        v_max: v_max.as_mut_ptr(),
    };
    let bases = &bases;
    tapegrad_autograd::parallel::for_each_part(n.div_ceil(CHUNK), |i| {
        let (lo, len) = (i * CHUNK, CHUNK.min(n - i * CHUNK));
        // SAFETY: part i touches elements lo..lo + len only, disjoint from every other
        // part, inside buffers of n elements (asserted above; v_max only with AMS), and
        // the exclusive borrows they came from outlive the region.
        let (t, mm, vv, x) = unsafe {
            (
                std::slice::from_raw_parts_mut(bases.theta.add(lo), len),
                std::slice::from_raw_parts_mut(bases.m.add(lo), len),
                std::slice::from_raw_parts_mut(bases.v.add(lo), len),
                if AMS {
                    std::slice::from_raw_parts_mut(bases.v_max.add(lo), len)
                } else {
                    &mut [][..]
                },
            )
        };
        // Worker threads are outside the optimizer's FMA-dispatched call: dispatch again.
        with_fma(|| update_elements::<L2, AMS>(t, &grad[lo..lo + len], mm, vv, x, k));
    });
}

/// Parameters and moment buffers, shared by Adam and AdamW.
pub(crate) struct Core<C> {
    pub(crate) params: Params<C>,
    exp_avg: Buffer,
    exp_avg_sq: Buffer,
    max_exp_avg_sq: Buffer,
}

impl<C: AdamStyle> Core<C> {
    /// The buffers, in the order of the struct's fields.
    const BUFFERS: [BufferSpec<C>; 3] = [
        BufferSpec {
            name: EXP_AVG,
            used: |_| true,
            lazy: false,
        },
        BufferSpec {
            name: EXP_AVG_SQ,
            used: |_| true,
            lazy: false,
        },
        BufferSpec {
            name: MAX_EXP_AVG_SQ,
            used: |c| c.adam().amsgrad,
            lazy: false,
        },
    ];

    /// No moments yet: each parameter's are created at its first step.
    pub(crate) fn new(groups: Vec<ParamGroup<C>>) -> Result<Core<C>, OptimError> {
        let params = Params::new(groups)?;
        Ok(Core {
            exp_avg: params.empty_buffer(),
            exp_avg_sq: params.empty_buffer(),
            max_exp_avg_sq: params.empty_buffer(),
            params,
        })
    }

    /// One Adam(W) step, mirroring `_single_tensor_adam` operation by operation: bias
    /// corrections and the step size in f64, then rounded once to f32 as PyTorch passes
    /// Python floats to its f32 kernels.
    pub(crate) fn step(&mut self) {
        let decoupled = C::DECOUPLED;
        let (m_buf, v_buf, vmax_buf) = (
            &mut self.exp_avg,
            &mut self.exp_avg_sq,
            &mut self.max_exp_avg_sq,
        );
        self.params.update(|i, c, step, theta, grad| {
            let h = c.adam();
            let (beta1, beta2) = h.betas;
            let avg_weight = (1.0 - beta1) as f32;
            let (beta2_f, one_minus_beta2) = (beta2 as f32, (1.0 - beta2) as f32);
            let (wd, eps) = (h.weight_decay as f32, h.eps as f32);
            let decay = if h.weight_decay != 0.0 && decoupled {
                (1.0 - h.lr * h.weight_decay) as f32
            } else {
                1.0
            };
            let n = grad.len();
            let m = m_buf[i].get_or_insert_with(|| vec![0.0; n]);
            let v = v_buf[i].get_or_insert_with(|| vec![0.0; n]);
            let v_max: &mut [f32] = if h.amsgrad {
                vmax_buf[i].get_or_insert_with(|| vec![0.0; n])
            } else {
                &mut []
            };
            let t = step as f64;
            let bias_correction1 = 1.0 - beta1.powf(t);
            let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt() as f32;
            let neg_step_size = (-(h.lr / bias_correction1)) as f32;
            let k = Scalars {
                avg_weight,
                beta2: beta2_f,
                one_minus_beta2,
                wd,
                eps,
                bias_correction2_sqrt,
                neg_step_size,
                decay,
            };
            // One loop per configuration, so no branch is left inside it to stop it
            // vectorising; large parameters are shared between threads.
            let threads = tapegrad_autograd::num_threads();
            match (h.weight_decay != 0.0 && !decoupled, h.amsgrad) {
                (false, false) => {
                    update_split::<false, false>(theta, grad, m, v, v_max, &k, threads)
                }
                (true, false) => update_split::<true, false>(theta, grad, m, v, v_max, &k, threads),
                (false, true) => update_split::<false, true>(theta, grad, m, v, v_max, &k, threads),
                (true, true) => update_split::<true, true>(theta, grad, m, v, v_max, &k, threads),
            }
        });
    }

    /// The saved state: AMSGrad's running maximum only when some group uses it.
    pub(crate) fn export(&self) -> OptimizerState {
        self.params.export(
            &Self::BUFFERS,
            &[&self.exp_avg, &self.exp_avg_sq, &self.max_exp_avg_sq],
        )
    }

    /// Adopts a state checked against the buffers its groups' configs imply.
    pub(crate) fn load(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.params.load(state, &Self::BUFFERS)?;
        self.exp_avg = self.params.take(state, EXP_AVG);
        self.exp_avg_sq = self.params.take(state, EXP_AVG_SQ);
        self.max_exp_avg_sq = self.params.take(state, MAX_EXP_AVG_SQ);
        Ok(())
    }
}

impl Optimizer for Adam {
    fn kind(&self) -> &'static str {
        ADAM
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
