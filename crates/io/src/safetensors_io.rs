//! PyTorch interop through safetensors: f32 tensors under PyTorch's state-dict names,
//! so `model.load_state_dict(safetensors.torch.load_file(path))` reads what tapegrad
//! wrote, and tapegrad reads what `safetensors.torch.save_file(model.state_dict(), path)`
//! wrote.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tapegrad_nn::Module;

use crate::atomic::{read_file, write_atomic};
use crate::error::IoError;
use crate::state_dict::{NamedTensor, StateDict};

/// Whether PyTorch stores this state-dict entry as int64 (BatchNorm's counter).
fn is_int64(name: &str) -> bool {
    name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")
}

/// Encodes a state dict as safetensors bytes (f32, little-endian; `num_batches_tracked`
/// as int64, as PyTorch writes it).
pub fn to_safetensors(state: &StateDict) -> Result<Vec<u8>, IoError> {
    let dtype = |name: &str| {
        if is_int64(name) {
            Dtype::I64
        } else {
            Dtype::F32
        }
    };
    let bytes: Vec<Vec<u8>> = state
        .tensors
        .iter()
        .map(|t| match dtype(&t.name) {
            Dtype::I64 => t
                .data
                .iter()
                .flat_map(|&v| (v as i64).to_le_bytes())
                .collect(),
            _ => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let views = state
        .tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(dtype(&t.name), t.shape.clone(), b)
                .map(|view| (t.name.clone(), view))
                .map_err(|e| IoError::Safetensors(format!("{}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| IoError::Safetensors(e.to_string()))
}

/// Decodes safetensors bytes: f32 tensors, and int64 ones (PyTorch's
/// `num_batches_tracked`) converted to f32, exact below 2^24.
pub fn from_safetensors(bytes: &[u8]) -> Result<StateDict, IoError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| IoError::Safetensors(e.to_string()))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let data = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(IoError::Safetensors(format!(
                    "{name}: dtype {other:?}, only F32 and I64 are supported"
                )))
            }
        };
        tensors.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    // safetensors stores names sorted; keep a stable order for reproducible files.
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let state = StateDict { tensors };
    // The safetensors crate checks shapes against byte ranges; check them against what
    // a tapegrad tensor can hold too, so no caller meets a shape whose count wraps.
    state.validate()?;
    Ok(state)
}

/// Writes a model's parameters as a safetensors file (atomically).
pub fn save_safetensors(model: &dyn Module, path: impl AsRef<Path>) -> Result<(), IoError> {
    write_atomic(
        path.as_ref(),
        &to_safetensors(&StateDict::from_module(model))?,
    )
}

/// Loads a safetensors file (e.g. written by PyTorch) into a model's parameters.
pub fn load_safetensors(model: &dyn Module, path: impl AsRef<Path>) -> Result<(), IoError> {
    from_safetensors(&read_file(path.as_ref())?)?.load_into(model)
}
