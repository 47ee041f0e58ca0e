//! The ground floor of tapegrad: n-dimensional f32 tensors and reverse-mode autodiff.
//!
//! Every op on a tensor that requires grad records itself on a per-thread tape;
//! [`Tensor::backward`] walks that record in reverse once and accumulates gradients into
//! the leaves, PyTorch-style (they add up until [`Tensor::zero_grad`]).
//!
//! ```
//! use tapegrad_autograd::Tensor;
//!
//! let w = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap().with_requires_grad(true);
//! let x = Tensor::from_vec(vec![4.0, 5.0, 6.0], &[3]).unwrap();
//! let loss = (&w * &x).sum();
//! loss.backward();
//! assert_eq!(w.grad().unwrap().to_vec(), vec![4.0, 5.0, 6.0]);
//! ```
//!
//! See `docs/architecture.md` for the floor plan and the recipe for adding an op.

mod anomaly;
pub mod cpu;
mod error;
mod gradcheck;
mod ops;
pub mod parallel;
mod pool;
pub mod random;
pub mod shape;
mod tape;
mod tensor;

pub use anomaly::{detect_anomaly, is_anomaly_enabled, set_detect_anomaly};
pub use error::{or_panic, Result, TensorError};
pub use gradcheck::{gradcheck, gradcheck_with, GradcheckReport};
pub use ops::attention::AttnMask;
pub use ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
pub use ops::custom::{custom_op, BackwardFn};
pub use ops::gemm::{num_threads, set_num_threads};
pub use ops::loss::{nll_from_log_probs, pointwise_loss, PointwiseLoss};
pub use ops::pooling::Pool2dOptions;
pub use ops::unary::GeluApprox;
pub use pool::pooled_bytes;
pub use random::{manual_seed, with_default_rng};
pub use shape::Shape;
pub use tape::{clear_tape, is_grad_enabled, no_grad, no_grad_guard, tape_len, NoGradGuard};
pub use tensor::{live_tensors, DataAndGrad, Tensor};

/// The random-number crate the constructors take generators from, re-exported so that
/// users seed the same version (`tapegrad_autograd::rand::rngs::StdRng`).
pub use rand;
