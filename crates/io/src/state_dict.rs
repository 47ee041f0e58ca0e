//! A model's parameters by name (PyTorch's `state_dict`), and loading them back with
//! every mismatch listed rather than the first one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tapegrad_autograd::shape::checked_numel;
use tapegrad_autograd::Tensor;
use tapegrad_nn::Module;

use crate::atomic::{read_file, write_atomic};
use crate::error::IoError;
use crate::format;

/// One named parameter's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    /// The state-dict name, e.g. `fc1.weight`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// Named parameter values, in the model's parameter order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDict {
    /// The parameters.
    pub tensors: Vec<NamedTensor>,
}

impl StateDict {
    /// A copy of a model's parameters and buffers (PyTorch's `state_dict()`: running
    /// statistics included).
    pub fn from_module(model: &dyn Module) -> StateDict {
        let tensors = named_state(model)
            .into_iter()
            .map(|(name, p)| NamedTensor {
                name,
                shape: p.shape().to_vec(),
                data: p.to_vec(),
            })
            .collect();
        StateDict { tensors }
    }

    /// Checks what a file cannot be trusted to get right: every shape is one a tensor
    /// can have (the product of its extents does not overflow, see
    /// [`tapegrad_autograd::shape::checked_numel`]) and holds exactly as many values as
    /// it says. Loaders call it, so a decoded state never carries a shape whose element
    /// count wraps around to the length of its data.
    pub fn validate(&self) -> Result<(), IoError> {
        for t in &self.tensors {
            if let Some(problem) = shape_problem(t) {
                return Err(IoError::Corrupt(problem));
            }
        }
        Ok(())
    }

    /// Copies the values into `model`'s parameters in place (optimizers holding them see
    /// the new values). Nothing is changed unless every name and shape fits; otherwise
    /// the error lists each missing, unexpected or mis-shaped parameter.
    pub fn load_into(&self, model: &dyn Module) -> Result<(), IoError> {
        let params = named_state(model);
        let mut problems = Vec::new();
        problems.extend(self.tensors.iter().filter_map(shape_problem));
        for (name, p) in &params {
            match self.tensors.iter().find(|t| &t.name == name) {
                None => problems.push(format!("{name}: missing from the saved state")),
                Some(t) if t.shape != p.shape() => problems.push(format!(
                    "{name}: saved shape {:?}, model shape {:?}",
                    t.shape,
                    p.shape()
                )),
                Some(_) => {}
            }
        }
        for t in &self.tensors {
            if !params.iter().any(|(name, _)| name == &t.name) {
                problems.push(format!(
                    "{}: not a parameter or buffer of the model",
                    t.name
                ));
            }
        }
        if !problems.is_empty() {
            return Err(IoError::Mismatch(problems));
        }
        for (name, p) in &params {
            let saved = self
                .tensors
                .iter()
                .find(|t| &t.name == name)
                .expect("checked above");
            p.data_mut().copy_from_slice(&saved.data);
        }
        Ok(())
    }

    /// The tensor called `name`, as a new leaf.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let t = self.tensors.iter().find(|t| t.name == name)?;
        Tensor::from_slice(&t.data, &t.shape).ok()
    }
}

/// What is wrong with a named tensor's shape, if anything.
fn shape_problem(t: &NamedTensor) -> Option<String> {
    match checked_numel(&t.shape) {
        None => Some(format!(
            "{}: shape {:?} is too large: the product of its extents overflows",
            t.name, t.shape
        )),
        Some(n) if n != t.data.len() => Some(format!(
            "{}: {} values for shape {:?}",
            t.name,
            t.data.len(),
            t.shape
        )),
        Some(_) => None,
    }
}

/// A model's parameters, then its buffers, under their state-dict names.
fn named_state(model: &dyn Module) -> Vec<(String, Tensor)> {
    let mut state = model.named_parameters();
    state.extend(model.named_buffers());
    state
}

/// Saves a model's parameters to `path` (atomically, in tapegrad's checkpoint format).
pub fn save_state_dict(model: &dyn Module, path: impl AsRef<Path>) -> Result<(), IoError> {
    write_atomic(
        path.as_ref(),
        &format::encode(&StateDict::from_module(model))?,
    )
}

/// Loads parameters saved by [`save_state_dict`] into `model`.
pub fn load_state_dict(model: &dyn Module, path: impl AsRef<Path>) -> Result<(), IoError> {
    let state: StateDict = format::decode(&read_file(path.as_ref())?)?;
    state.validate()?;
    state.load_into(model)
}
