//! Saving and loading: model parameters by name, full training checkpoints that resume
//! bit-identically, and safetensors files PyTorch can read and write.
//!
//! Every write is atomic (temporary file, fsync, rename), so a crash during a save
//! leaves the previous file intact; every read checks magic bytes, version, length and
//! checksum, so a bad file is an `Err` that says what is wrong. The encoding lives in
//! [`format`](mod@format) alone. See `docs/checkpoints.md` for the file layout.

mod atomic;
mod checkpoint;
mod error;
pub mod format;
mod safetensors_io;
mod state_dict;

pub use atomic::write_atomic;
pub use checkpoint::{Checkpoint, SchedulerState};
pub use error::IoError;
pub use safetensors_io::{from_safetensors, load_safetensors, save_safetensors, to_safetensors};
pub use state_dict::{load_state_dict, save_state_dict, NamedTensor, StateDict};
