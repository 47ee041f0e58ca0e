//! Reading the PyTorch reference files (`tools/reference/*.json`) in tests.
//!
//! Every crate's reference tests include this one file (`#[path = ...] mod reference;`),
//! so the JSON layout the scripts write is read in one place and compared one way.
#![allow(dead_code)] // each test crate uses its own subset

use serde_json::Value;
use tapegrad_autograd::Tensor;

/// An array of numbers; JSON has no infinities or NaN, so the scripts write those as the
/// strings "inf", "-inf" and "nan".
pub fn floats(v: &Value) -> Vec<f32> {
    f64s(v).into_iter().map(|x| x as f32).collect()
}

/// An array of numbers at full precision (learning rates, momenta).
pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| match x.as_str() {
            Some("inf") => f64::INFINITY,
            Some("-inf") => f64::NEG_INFINITY,
            Some("nan") => f64::NAN,
            _ => x.as_f64().expect("a number"),
        })
        .collect()
}

/// The `shape` field of a tensor object.
pub fn shape(v: &Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .expect("a shape")
        .iter()
        .map(|d| d.as_u64().expect("an extent") as usize)
        .collect()
}

/// A tensor object, `{"shape": [...], "data": [...]}` (data row-major).
pub fn tensor(v: &Value) -> Tensor {
    Tensor::from_vec(floats(&v["data"]), &shape(v)).expect("data fits its shape")
}

/// |a − b| ≤ `abs` + `rel`·|b| element by element, with a message naming `what`.
pub fn assert_slices_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= abs + rel * b.abs(),
            "{what}[{i}]: got {a}, PyTorch {b} (diff {})",
            (a - b).abs()
        );
    }
}

/// Equal shapes, and |a − b| ≤ `tol`·max(|b|, 1) element by element.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, PyTorch {w}"
        );
    }
}

/// The inputs of an op case (`case["inputs"]`), each a leaf that requires grad.
pub fn inputs(case: &Value) -> Vec<Tensor> {
    case["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|v| tensor(v).with_requires_grad(true))
        .collect()
}

/// Checks an op case: `out` against `case["output"]`, then the gradients of
/// `(out · case["weights"]).sum()` against `case["grads"]`, one per input. An input that
/// gets no gradient at all (a mask) must have PyTorch's gradient of zeros.
pub fn check_output_and_grads(case: &Value, inputs: &[Tensor], out: &Tensor, tol: f32) {
    let name = case["name"].as_str().expect("name");
    assert_close(
        &format!("{name} output"),
        out,
        &tensor(&case["output"]),
        tol,
    );
    (out * &tensor(&case["weights"])).sum().backward();
    let grads = case["grads"].as_array().expect("grads");
    assert_eq!(grads.len(), inputs.len(), "{name}: one gradient per input");
    for (i, (input, want)) in inputs.iter().zip(grads).enumerate() {
        let grad = input.grad().unwrap_or_else(|| Tensor::zeros(input.shape()));
        assert_close(&format!("{name} grad {i}"), &grad, &tensor(want), tol);
    }
}
