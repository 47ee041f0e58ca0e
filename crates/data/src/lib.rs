//! Feeding data to a training loop: a CSV reader for numeric tables, an in-memory
//! tensor data set, a seeded train/test split and a mini-batch loader, like
//! `torch.utils.data`'s `TensorDataset`, `random_split` and `DataLoader`.
//!
//! It is its own crate (on `autograd` alone) so a program that only loads data, or
//! brings its own model code, need not pull in `nn` or `optim`; the facade re-exports it.
//! Every random choice comes from a seed the caller gives, and the loader's position is
//! a small serialisable [`LoaderState`], so a checkpointed run resumes with exactly the
//! batches it would have seen. A [`DistributedSampler`] shards each epoch over the ranks
//! of a data-parallel job.

mod csv;
mod dataset;
mod error;
mod loader;
mod sampler;
mod source;
mod text;

pub use csv::{read_csv, Table};
pub use dataset::{train_test_split, Standardizer, TensorDataset};
pub use error::DataError;
pub use loader::{Batch, DataLoader, Epoch, LoaderState};
pub use sampler::DistributedSampler;
pub use source::Dataset;
pub use text::{split_tail, CharVocab, TokenBatch, TokenWindows};
