//! Anomaly mode names the first op whose output or gradient is not finite; and a
//! backward after `clear_tape` says the tape was cleared (issue 12).

use tapegrad_autograd::{
    clear_tape, detect_anomaly, is_anomaly_enabled, set_detect_anomaly, Tensor,
};

fn leaf(values: &[f32]) -> Tensor {
    Tensor::from_slice(values, &[values.len()])
        .unwrap()
        .with_requires_grad(true)
}

#[test]
fn off_by_default_non_finite_values_spread_silently() {
    assert!(!is_anomaly_enabled());
    let x = leaf(&[-1.0, 2.0]);
    let loss = (&x.log() * 2.0).sum();
    assert!(loss.item().is_nan());
    loss.try_backward().unwrap();
}

#[test]
fn a_forward_output_that_is_not_finite_is_named() {
    let err = detect_anomaly(|| {
        let x = leaf(&[-1.0, 2.0]);
        let y = &x * 3.0; // finite
        let loss = (&y.log() * 2.0).sum(); // log(-3) = NaN: the first bad op
        loss.try_backward().unwrap_err()
    })
    .to_string();
    assert_eq!(
        err,
        "backward: anomaly detected: the output of `Log` (op 1 of the tape, shape [2]) holds NaN"
    );
    assert!(!is_anomaly_enabled(), "detect_anomaly restores the mode");
}

#[test]
fn a_gradient_that_is_not_finite_names_the_backward_that_made_it() {
    set_detect_anomaly(true);
    let x = leaf(&[0.0, 4.0]);
    // sqrt(0) = 0 is finite, but its derivative 1 / (2·√0) is inf.
    let loss = (&x.sqrt() + 1.0).sum();
    let err = loss.try_backward().unwrap_err().to_string();
    set_detect_anomaly(false);
    assert_eq!(
        err,
        "backward: anomaly detected: the backward of `Sqrt` (op 0 of the tape) computed a \
         gradient holding inf for its input of shape [2]"
    );
    // The record was released: the next step starts clean.
    let loss = (&x * 2.0).sum();
    loss.try_backward().unwrap();
}

#[test]
fn a_non_finite_output_gradient_is_named() {
    set_detect_anomaly(true);
    let x = leaf(&[1.0, 2.0]);
    let y = &x * 2.0;
    let seed = Tensor::from_vec(vec![f32::INFINITY, 0.0], &[2]).unwrap();
    let err = y.backward_with(&seed).unwrap_err().to_string();
    set_detect_anomaly(false);
    assert!(
        err.contains("output gradient given to backward holds inf"),
        "{err}"
    );
}

#[test]
fn backward_after_clear_tape_says_the_tape_was_cleared() {
    let x = leaf(&[1.0, 2.0]);
    let loss = (&x * &x).sum();
    clear_tape();
    let err = loss.try_backward().unwrap_err().to_string();
    assert!(err.contains("released by clear_tape()"), "{err}");
    assert!(!err.contains("second time"), "{err}");
    // A real second backward still says so.
    let loss = (&x * &x).sum();
    loss.try_backward().unwrap();
    let err = loss.try_backward().unwrap_err().to_string();
    assert!(err.contains("a second time"), "{err}");
}
