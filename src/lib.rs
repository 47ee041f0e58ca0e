//! tapegrad: a CPU deep-learning framework with PyTorch's semantics.
//!
//! This facade re-exports the workspace's crates: [`autograd`] (tensors and the tape),
//! [`nn`] (layers), [`losses`], [`optim`] (optimizers, schedulers, clipping), [`data`]
//! (CSV, data sets, mini-batch loading), [`io`] (checkpoints, safetensors) and
//! [`distributed`] (data-parallel training; over MPI with the `mpi` cargo feature).

pub use tapegrad_autograd as autograd;
pub use tapegrad_autograd::{no_grad, Tensor, TensorError};
pub use tapegrad_data as data;
pub use tapegrad_distributed as distributed;
pub use tapegrad_io as io;
pub use tapegrad_losses as losses;
pub use tapegrad_nn as nn;
pub use tapegrad_optim as optim;
