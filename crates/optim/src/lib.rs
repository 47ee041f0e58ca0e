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
mod kernels;
mod rmsprop;
mod scheduler;
mod sgd;
mod state;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, clip_grad_norm_with, clip_grad_value};
pub use error::OptimError;
pub use gd::{GradientDescent, GradientDescentConfig};
pub use rmsprop::{RMSprop, RMSpropConfig};
pub use scheduler::{CosineAnnealingLr, ExponentialLr, LinearLr, LrScheduler, StepLr};
pub use sgd::{Sgd, SgdConfig};
pub use state::{Buffer, OptimizerConfig, OptimizerState};

use tapegrad_autograd::Tensor;

/// A first-order optimizer over a fixed list of parameter tensors.
///
/// The training loop is PyTorch's: `zero_grad`, forward, `backward`, `step`.
pub trait Optimizer {
    /// The kind name used in saved states: "GradientDescent", "SGD", "Adam", "AdamW",
    /// "RMSprop" or "Adagrad".
    fn kind(&self) -> &'static str;

    /// The parameters this optimizer updates, in the order given to its constructor.
    fn params(&self) -> &[Tensor];

    /// Clears every parameter's gradient (PyTorch's default `set_to_none=True`), so the
    /// next `backward` starts from nothing rather than accumulating.
    fn zero_grad(&mut self) {
        for p in self.params() {
            p.zero_grad();
        }
    }

    /// Applies one update to every parameter that has a gradient; parameters whose
    /// gradient is `None` are skipped and their state left alone, as in PyTorch.
    fn step(&mut self);

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Replaces the learning rate (what schedulers call between steps). Panics on a
    /// negative, NaN or infinite rate, which constructors refuse too; see
    /// [`Optimizer::try_set_lr`].
    fn set_lr(&mut self, lr: f64);

    /// Replaces the learning rate, or fails with `Invalid learning rate: {lr}` when it
    /// is negative, NaN or infinite (nothing changes then).
    fn try_set_lr(&mut self, lr: f64) -> Result<(), OptimError> {
        error::check_lr(lr)?;
        self.set_lr(lr);
        Ok(())
    }

    /// A copy of the full state: hyper-parameters, step counts, per-parameter buffers.
    fn state(&self) -> OptimizerState;

    /// Restores a state exported by [`Optimizer::state`] from an optimizer of the same
    /// kind over parameters of the same sizes. Nothing changes when it fails.
    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError>;
}
