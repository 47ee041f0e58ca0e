//! Anomaly mode: PyTorch's `torch.autograd.set_detect_anomaly`, off by default.
//!
//! NaN and infinity spread silently through arithmetic, as in PyTorch, so a loss that
//! turns NaN says nothing about where it began. With anomaly mode on, every recorded
//! op's output is checked as it is recorded, and every gradient as backward computes
//! it; [`Tensor::try_backward`](crate::Tensor::try_backward) then fails with an error
//! naming the first op (in the order they ran) whose output was not finite, or the
//! first op whose backward produced a gradient that is not finite, with its place on
//! the tape and the shape. It costs a pass over each output and gradient, so it is for
//! debugging, as in PyTorch.

use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

/// Turns anomaly mode on or off for this thread (PyTorch's `set_detect_anomaly`).
pub fn set_detect_anomaly(enabled: bool) {
    ENABLED.with(|e| e.set(enabled));
}

/// Whether anomaly mode is on for this thread.
pub fn is_anomaly_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Runs `f` with anomaly mode on, then restores the previous mode (PyTorch's
/// `with torch.autograd.detect_anomaly():`), also when `f` panics.
pub fn detect_anomaly<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_detect_anomaly(self.0);
        }
    }
    let _restore = Restore(ENABLED.with(|e| e.replace(true)));
    f()
}

/// What kind of non-finite value `data` holds first, if any.
pub(crate) fn non_finite(data: &[f32]) -> Option<&'static str> {
    let bad = data.iter().find(|v| !v.is_finite())?;
    Some(if bad.is_nan() {
        "NaN"
    } else if *bad > 0.0 {
        "inf"
    } else {
        "-inf"
    })
}
