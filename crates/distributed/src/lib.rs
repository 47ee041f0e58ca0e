//! Data-parallel training for tapegrad: the same training loop on many processes, one
//! per core or per machine, over MPI (PyTorch's DistributedDataParallel, Horovod's
//! `DistributedOptimizer`).
//!
//! Every rank holds the whole model and trains on its own shard of each global batch (a
//! [`tapegrad_data::DistributedSampler`]); `DistributedOptimizer::step` averages the
//! gradients over the ranks, in flat buckets, before the wrapped optimizer updates, so
//! every rank takes the same step and the models stay bit-identical.
//!
//! ```no_run
//! # #[cfg(feature = "mpi")]
//! # fn main() {
//! use tapegrad_distributed::{broadcast_parameters, rank0_println, run, Communicator, DistributedOptimizer};
//! # use tapegrad_nn::{Linear, Module};
//! # use tapegrad_optim::{Adam, AdamConfig, Optimizer};
//! # use tapegrad_autograd::rand::{rngs::StdRng, SeedableRng};
//! run(|world| {
//!     # let net = Linear::new_with_rng(4, 1, &mut StdRng::seed_from_u64(0))?;
//!     broadcast_parameters(world, &net.parameters());
//!     let adam = Adam::new(net.parameters(), AdamConfig::default())?;
//!     let mut optimizer = DistributedOptimizer::new(Box::new(adam), world.clone());
//!     // ... the usual loop: zero_grad, forward, backward, optimizer.step() ...
//!     rank0_println!(world, "done on {} ranks", world.size());
//!     Ok(())
//! });
//! # }
//! # #[cfg(not(feature = "mpi"))]
//! # fn main() {}
//! ```
//!
//! Without the `mpi` cargo feature the crate needs no MPI: it offers the same API over
//! [`SingleProcess`], the bucket layout and the cost model. With it, `World` and
//! `run` start MPI. See `docs/distributed.md` for the design, the guarantees and how
//! to launch a job.

mod bucket;
mod comm;
pub mod cost_model;
mod helpers;
mod optimizer;
#[cfg(feature = "mpi")]
mod world;

pub use bucket::{flatten_grads, unflatten_grads, Bucket, BucketPlan, DEFAULT_BUCKET_ELEMENTS};
pub use comm::{Communicator, SingleProcess};
pub use helpers::{
    broadcast_parameters, is_rank0, load_checkpoint, mean_over_ranks, save_checkpoint,
    sum_over_ranks,
};
pub use optimizer::{micro_batch_rows, DistributedOptimizer, Reduction};
#[cfg(feature = "mpi")]
pub use world::{run, InitError, World};

/// The rsmpi crate, for what this crate does not wrap.
#[cfg(feature = "mpi")]
pub use mpi;
