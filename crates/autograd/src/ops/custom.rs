//! User-defined differentiable ops, like PyTorch's `torch.autograd.Function`.
//!
//! A crate above `autograd` computes its forward on slices and hands over a backward
//! closure that maps the output gradient to one gradient per input. Prefer composing
//! existing ops; a custom op earns its place where a fused backward is needed for speed
//! or to match PyTorch's formula at the edges. Each recorded call boxes its closure and
//! its gradients are fresh `Vec`s, so ops run every training step are built-in records
//! instead (the losses' are in `ops/loss.rs`), which allocate nothing in the steady
//! state.

use smallvec::SmallVec;

use crate::error::{Result, TensorError};
use crate::shape::{try_numel, Shape};
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// Maps the output gradient to one gradient per input (`None` for inputs that get none);
/// each `Some` must have its input's element count.
pub type BackwardFn = Box<dyn Fn(&[f32]) -> Vec<Option<Vec<f32>>>>;

pub(crate) struct CustomRecord {
    name: &'static str,
    /// Inline up to four inputs, so that recording needs no list on the heap.
    inputs: SmallVec<[Tensor; 4]>,
    backward: BackwardFn,
}

impl CustomRecord {
    /// The name the caller gave [`custom_op`], for anomaly reports.
    pub(crate) fn name(&self) -> String {
        self.name.into()
    }

    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        let input_grads = (self.backward)(g);
        assert_eq!(
            input_grads.len(),
            self.inputs.len(),
            "custom op {}: backward returned {} gradients for {} inputs",
            self.name,
            input_grads.len(),
            self.inputs.len()
        );
        for (input, grad) in self.inputs.iter().zip(input_grads) {
            if let Some(grad) = grad {
                assert_eq!(
                    grad.len(),
                    input.numel(),
                    "custom op {}: gradient length {} for an input of shape {:?}",
                    self.name,
                    grad.len(),
                    input.shape()
                );
                grads.add(input, grad);
            }
        }
    }
}

/// Makes a tensor of `shape` from `data` computed by the caller from `inputs`, and, when
/// any input requires grad, records `backward` for it on the tape.
pub fn custom_op(
    name: &'static str,
    inputs: &[&Tensor],
    data: Vec<f32>,
    shape: &[usize],
    backward: impl Fn(&[f32]) -> Vec<Option<Vec<f32>>> + 'static,
) -> Result<Tensor> {
    let expected = try_numel(name, shape)?;
    if data.len() != expected {
        return Err(TensorError::LengthMismatch {
            op: name,
            expected,
            got: data.len(),
        });
    }
    let out = Tensor::from_parts(data, Shape::from_slice(shape));
    Ok(tape::record(out, inputs, || {
        Op::Custom(CustomRecord {
            name,
            inputs: inputs.iter().map(|&t| t.clone()).collect(),
            backward: Box::new(backward),
        })
    }))
}
