//! tapegrad: a CPU deep-learning framework with PyTorch's semantics.
//!
//! This facade re-exports the workspace's crates: [`autograd`] (tensors and the tape),
//! [`nn`] (layers), [`losses`], [`optim`] (optimizers, schedulers, clipping), [`data`]
//! (CSV, data sets, mini-batch loading), [`io`] (checkpoints, safetensors) and
//! [`distributed`] (data-parallel training; over MPI with the `mpi` cargo feature). A
//! script starts with `use tapegrad::prelude::*;`.
//!
//! ```
//! use tapegrad::prelude::*;
//!
//! manual_seed(0);
//! let net = Sequential::new().add(Linear::new(4, 8)?).add(Relu).add(Linear::new(8, 1)?);
//! let mut optimizer = Sgd::new(net.parameters(), SgdConfig { lr: 0.1, ..Default::default() })?;
//! let (x, y) = (Tensor::randn(&[16, 4])?, Tensor::randn(&[16, 1])?);
//! optimizer.zero_grad();
//! let loss = MseLoss::new().forward(&net.forward(&x), &y);
//! loss.backward();
//! optimizer.step();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod prelude;

pub use tapegrad_autograd as autograd;
pub use tapegrad_autograd::{manual_seed, no_grad, Tensor, TensorError};
pub use tapegrad_data as data;
pub use tapegrad_distributed as distributed;
pub use tapegrad_io as io;
pub use tapegrad_losses as losses;
pub use tapegrad_losses::metrics;
pub use tapegrad_nn as nn;
pub use tapegrad_optim as optim;

/// The Markdown documentation, compiled and run as doc tests (`cargo test --doc`), so
/// that a snippet cannot promise an API that does not exist. Each file's ```rust blocks
/// become tests. One line per file: a new page under `docs/` adds its line here.
#[cfg(doctest)]
mod markdown_docs {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/checkpoints.md")]
    struct Checkpoints;
    #[doc = include_str!("../docs/guide.md")]
    struct Guide;
    #[doc = include_str!("../docs/losses.md")]
    struct Losses;
    #[doc = include_str!("../docs/optimizers.md")]
    struct Optimizers;
    #[doc = include_str!("../docs/transformer.md")]
    struct Transformer;
    #[doc = include_str!("../docs/convolution.md")]
    struct Convolution;
    #[doc = include_str!("../docs/distributed.md")]
    struct Distributed;
}
