//! Finite-difference gradient checking.
//!
//! [`gradcheck`] compares the gradient the tape computes for a scalar function with
//! central differences `(f(x + ε) − f(x − ε)) / 2ε`, element by element, and reports
//! the worst mismatch. Everything is f32, so expect agreement to about 1e-3, not 1e-7.

use crate::error::{Result, TensorError};
use crate::tape::no_grad;
use crate::tensor::Tensor;

/// The worst disagreement found by [`gradcheck`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckReport {
    /// |analytic − numeric| / max(1, |numeric|) at the worst element.
    pub max_error: f32,
    /// Which input the worst element belongs to.
    pub input: usize,
    /// Its flat index in that input.
    pub index: usize,
    /// The tape's gradient there.
    pub analytic: f32,
    /// The finite-difference estimate there.
    pub numeric: f32,
    /// How many elements were compared.
    pub checked: usize,
}

impl GradcheckReport {
    /// Whether the worst error is below `tolerance`.
    pub fn passes(&self, tolerance: f32) -> bool {
        self.max_error < tolerance
    }
}

/// Checks the gradient of a scalar function of `inputs` with step ε = 1e-3.
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Result<GradcheckReport> {
    gradcheck_with(f, inputs, 1e-3)
}

/// Checks the gradient of a scalar function of `inputs` with step `eps`.
///
/// The inputs are copied into fresh leaves that require grad; the originals are not
/// touched. Fails when `f` does not return a one-element tensor.
pub fn gradcheck_with(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    eps: f32,
) -> Result<GradcheckReport> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.detach().with_requires_grad(true))
        .collect();
    let out = f(&leaves);
    if out.numel() != 1 {
        return Err(TensorError::InvalidArgument {
            op: "gradcheck",
            reason: format!(
                "the function must return one element, got shape {:?}",
                out.shape()
            ),
        });
    }
    out.try_backward()?;
    let analytic: Vec<Vec<f32>> = leaves
        .iter()
        .map(|t| {
            t.grad()
                .map_or_else(|| vec![0.0; t.numel()], |g| g.to_vec())
        })
        .collect();

    let mut report = GradcheckReport {
        max_error: 0.0,
        input: 0,
        index: 0,
        analytic: 0.0,
        numeric: 0.0,
        checked: 0,
    };
    let eval = |leaves: &[Tensor]| no_grad(|| f(leaves).item());
    for (i, (leaf, analytic)) in leaves.iter().zip(&analytic).enumerate() {
        for (j, &a) in analytic.iter().enumerate() {
            let original = leaf.data()[j];
            leaf.data_mut()[j] = original + eps;
            let plus = eval(&leaves);
            leaf.data_mut()[j] = original - eps;
            let minus = eval(&leaves);
            leaf.data_mut()[j] = original;
            let numeric = (plus - minus) / (2.0 * eps);
            let error = (a - numeric).abs() / numeric.abs().max(1.0);
            report.checked += 1;
            if error > report.max_error || error.is_nan() {
                report = GradcheckReport {
                    max_error: if error.is_nan() { f32::INFINITY } else { error },
                    input: i,
                    index: j,
                    analytic: a,
                    numeric,
                    checked: report.checked,
                };
            }
        }
    }
    Ok(report)
}
