//! Optimizers, learning-rate schedulers and gradient clipping for tapegrad, matching
//! `torch.optim` and `torch.nn.utils.clip_grad_*` step for step.
//!
//! An optimizer holds handles to the parameter tensors (cloning a [`Tensor`] is free) and
//! updates them in place from the gradients `backward` accumulated in them:
//!
//! ```
//! use tapegrad_autograd::Tensor;
//! use tapegrad_optim::{Optimizer, Sgd, SgdConfig};
//!
//! let w = Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap().with_requires_grad(true);
//! let mut opt = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap();
//! for _ in 0..3 {
//!     opt.zero_grad();
//!     let loss = (&w * &w).sum();
//!     loss.backward();
//!     opt.step();
//! }
//! assert!(w.data()[0].abs() < 1.0);
//! ```
//!
//! Each optimizer's state (step counts and per-parameter buffers) exports to an
//! [`OptimizerState`] that serialises with serde, so training can stop and resume
//! bit-identically. The update rules are written out in `docs/optimizers.md`.

mod adagrad;
mod adam;
mod adamw;
mod clip;
mod error;
mod gd;
mod group;
mod kernels;
mod lambda;
mod one_cycle;
mod plateau;
mod rmsprop;
mod scheduler;
mod scheduler_state;
mod sequential;
mod sgd;
mod state;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use error::OptimError;
pub use gd::{GradientDescent, GradientDescentConfig};
pub use group::ParamGroup;
pub use lambda::{LambdaLr, LambdaLrState, LrLambda};
pub use one_cycle::{AnnealStrategy, OneCycleConfig, OneCycleLr};
pub use plateau::{PlateauMode, ReduceLrOnPlateau, ReduceLrOnPlateauConfig, ThresholdMode};
pub use rmsprop::{RMSprop, RMSpropConfig};
pub use scheduler::{CosineAnnealingLr, ExponentialLr, LinearLr, LrScheduler, StepLr};
pub use scheduler_state::SchedulerState;
pub use sequential::{SequentialLr, SequentialLrState};
pub use sgd::{Sgd, SgdConfig};
pub use state::{Buffer, GroupState, OptimizerConfig, OptimizerState};

use tapegrad_autograd::Tensor;

/// A first-order optimizer over a fixed list of parameter tensors, in one or more
/// parameter groups (PyTorch's `param_groups`), each with its own hyper-parameters.
///
/// The training loop is PyTorch's: `zero_grad`, forward, `backward`, `step`. Group
/// indices start at 0 in the order the groups were given; the `group_*` methods panic on
/// an index past [`Optimizer::num_groups`], as indexing a slice does.
pub trait Optimizer {
    /// The kind name used in saved states: "GradientDescent", "SGD", "Adam", "AdamW",
    /// "RMSprop" or "Adagrad".
    fn kind(&self) -> &'static str;

    /// All the parameters this optimizer updates, group after group, each group in the
    /// order given to its constructor.
    fn params(&self) -> &[Tensor];

    /// Clears every parameter's gradient (PyTorch's default `set_to_none=True`), so the
    /// next `backward` starts from nothing rather than accumulating.
    fn zero_grad(&mut self) {
        for p in self.params() {
            p.zero_grad();
        }
    }

    /// Applies one update to every parameter that has a gradient, each with its group's
    /// hyper-parameters; parameters whose gradient is `None` are skipped and their state
    /// left alone, as in PyTorch.
    fn step(&mut self);

    /// The number of parameter groups (1 for an optimizer built with `new`).
    fn num_groups(&self) -> usize;

    /// The parameters of one group.
    fn group_params(&self, group: usize) -> &[Tensor];

    /// One group's current learning rate.
    fn group_lr(&self, group: usize) -> f64;

    /// Replaces one group's learning rate.
    fn set_group_lr(&mut self, group: usize, lr: f64);

    /// The learning rate schedulers scale for this group (PyTorch's `initial_lr`): set by
    /// the first scheduler built on the optimizer to the group's lr at that time, and
    /// kept in the saved state. `None` until then.
    fn group_initial_lr(&self, group: usize) -> Option<f64>;

    /// Sets what [`Optimizer::group_initial_lr`] returns (schedulers call this).
    fn set_group_initial_lr(&mut self, group: usize, lr: f64);

    /// The momentum a one-cycle schedule cycles: `momentum` for SGD and RMSprop, β₁ for
    /// Adam and AdamW; `None` for kinds without one (gradient descent, Adagrad).
    fn group_momentum(&self, group: usize) -> Option<f64>;

    /// Sets what [`Optimizer::group_momentum`] reads; an error, changing nothing, for a
    /// kind without momentum or a value the constructor would reject.
    fn set_group_momentum(&mut self, group: usize, momentum: f64) -> Result<(), OptimError>;

    /// The learning rate of group 0 (the only group of an optimizer built with `new`).
    fn lr(&self) -> f64 {
        self.group_lr(0)
    }

    /// Sets every group's learning rate to `lr`. Schedulers set each group's own rate
    /// with [`Optimizer::set_group_lr`] instead.
    fn set_lr(&mut self, lr: f64) {
        for group in 0..self.num_groups() {
            self.set_group_lr(group, lr);
        }
    }

    /// Every group's learning rate, in group order (PyTorch's `[g["lr"] for g in
    /// param_groups]`).
    fn lrs(&self) -> Vec<f64> {
        (0..self.num_groups()).map(|g| self.group_lr(g)).collect()
    }

    /// A copy of the full state: groups with their hyper-parameters, step counts,
    /// per-parameter buffers.
    fn state(&self) -> OptimizerState;

    /// Restores a state exported by [`Optimizer::state`] from an optimizer of the same
    /// kind with groups of the same sizes over parameters of the same sizes. Nothing
    /// changes when it fails.
    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError>;
}
