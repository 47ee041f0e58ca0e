//! What every data-parallel run needs besides the optimizer: one starting model on every
//! rank, metrics averaged over ranks, output from rank 0 only, and checkpoints written
//! by rank 0 and read by all.

use std::path::Path;

use tapegrad_autograd::{no_grad, Tensor};
use tapegrad_io::{Checkpoint, IoError};

use crate::comm::Communicator;

/// Copies rank 0's parameter values to every rank (one broadcast of all of them,
/// flattened), so that every rank starts from the same model whatever its own seed.
/// Optimizers holding these tensors see the new values.
pub fn broadcast_parameters(comm: &dyn Communicator, params: &[Tensor]) {
    let mut flat: Vec<f32> = Vec::with_capacity(params.iter().map(Tensor::numel).sum());
    for p in params {
        flat.extend_from_slice(&p.data());
    }
    comm.broadcast(&mut flat, 0);
    no_grad(|| {
        let mut offset = 0;
        for p in params {
            let n = p.numel();
            p.data_mut().copy_from_slice(&flat[offset..offset + n]);
            offset += n;
        }
    });
}

/// The sum of `value` over all ranks, on every rank.
pub fn sum_over_ranks(comm: &dyn Communicator, value: f64) -> f64 {
    let mut out = [0.0];
    comm.all_reduce_sum_f64(&[value], &mut out);
    out[0]
}

/// The mean of `value` over all ranks, on every rank (e.g. the training loss, each
/// rank having seen its own shard).
pub fn mean_over_ranks(comm: &dyn Communicator, value: f64) -> f64 {
    sum_over_ranks(comm, value) / comm.size() as f64
}

/// Whether this is rank 0, the one that prints and saves.
pub fn is_rank0(comm: &dyn Communicator) -> bool {
    comm.rank() == 0
}

/// `println!` on rank 0 only: `rank0_println!(world, "epoch {epoch}")`.
#[macro_export]
macro_rules! rank0_println {
    ($comm:expr, $($arg:tt)*) => {
        if $crate::Communicator::rank(&$comm) == 0 {
            println!($($arg)*);
        }
    };
}

/// Saves the checkpoint that `make` builds, on rank 0 only (the others hold the same
/// model and optimizer state, so one copy is enough, and `make` runs only there). Every
/// rank gets rank 0's result, so all of them stop if the save failed; no rank returns
/// before the file is complete, so a [`load_checkpoint`] right after sees it.
pub fn save_checkpoint(
    comm: &dyn Communicator,
    path: impl AsRef<Path>,
    make: impl FnOnce() -> Checkpoint,
) -> Result<(), IoError> {
    let outcome = if comm.rank() == 0 {
        Some(make().save(path.as_ref()).map(|()| Vec::new()))
    } else {
        None
    };
    broadcast_result(comm, outcome).map(drop)
}

/// Reads a checkpoint on rank 0 and sends its bytes to every rank, which all decode it:
/// the file need only be on rank 0's machine (no shared file system needed), and a
/// missing or damaged file is the same error on every rank instead of a hang.
pub fn load_checkpoint(
    comm: &dyn Communicator,
    path: impl AsRef<Path>,
) -> Result<Checkpoint, IoError> {
    let outcome = if comm.rank() == 0 {
        let path = path.as_ref();
        Some(std::fs::read(path).map_err(|e| IoError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }))
    } else {
        None
    };
    let bytes = broadcast_result(comm, outcome)?;
    Checkpoint::from_bytes(&bytes)
}

/// Sends rank 0's `Ok(bytes)` or `Err(error)` to every rank: a header (status and
/// length) and then the payload, so the other ranks know how much to receive.
fn broadcast_result(
    comm: &dyn Communicator,
    outcome: Option<Result<Vec<u8>, IoError>>,
) -> Result<Vec<u8>, IoError> {
    let (ok, mut payload) = match outcome {
        Some(Ok(bytes)) => (true, bytes),
        Some(Err(e)) => (false, e.to_string().into_bytes()),
        None => (true, Vec::new()),
    };
    let mut header = [0u8; 9];
    header[0] = u8::from(ok);
    header[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    comm.broadcast_bytes(&mut header, 0);
    let len = u64::from_le_bytes(header[1..].try_into().expect("8 bytes")) as usize;
    payload.resize(len, 0);
    if len > 0 {
        comm.broadcast_bytes(&mut payload, 0);
    }
    if header[0] == 1 {
        Ok(payload)
    } else {
        Err(IoError::Io {
            path: "rank 0".into(),
            message: String::from_utf8_lossy(&payload).into_owned(),
        })
    }
}
