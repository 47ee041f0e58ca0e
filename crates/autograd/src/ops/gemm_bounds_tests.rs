//! Tests of the bounds check in front of the GEMM's `unsafe` blocks, built from the
//! shapes of issue 12, whose plain products wrap to small numbers: each must be refused
//! (a panic from `gemm_into`'s assert) before any unsafe code runs, never a wild read.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::gemm::{gemm_into, MatRef};

/// `k` of the issue's repro: `100 * k` wraps to 100 and `k * 200` to 200.
const K: usize = (1 << 62) + 1;

fn refused(f: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => false,
        Err(e) => e
            .downcast_ref::<&str>()
            .is_some_and(|m| m.contains("operand out of bounds")),
    }
}

#[test]
fn a_view_whose_last_offset_wraps_does_not_fit() {
    let a = vec![1.0f32; 100];
    // 100 rows of K columns: the last offset 99·K + K − 1 wraps to a small number.
    let wide = MatRef::rows(&a, K);
    assert!(!wide.fits(100, K));
    // ... and the transposed read of a K × 200 matrix likewise.
    let b = vec![1.0f32; 200];
    assert!(!MatRef::transposed(&b, K).fits(200, K));
    // Views that do fit still fit, up to the last element exactly.
    assert!(MatRef::rows(&a, 10).fits(10, 10));
    assert!(!MatRef::rows(&a, 10).fits(11, 10));
    assert!(
        MatRef::rows(&a, 10).fits(0, K),
        "an empty view reads nothing"
    );
}

#[test]
fn strides_beyond_isize_do_not_fit() {
    let a = vec![1.0f32; 4];
    let view = MatRef {
        data: &a,
        row_stride: usize::MAX,
        col_stride: 1,
    };
    // One row: the row stride is never multiplied, but the GEMM crate takes it as isize.
    assert!(!view.fits(1, 4));
}

#[test]
fn the_issue_repro_is_refused_before_the_unsafe_kernels() {
    let (a, b) = (vec![1.0f32; 100], vec![1.0f32; 200]);
    let mut dst = vec![0.0f32; 100 * 200];
    // m·n·k wraps too, so this would once have taken the small path or the GEMM crate.
    assert!(refused(|| gemm_into(
        100,
        200,
        K,
        MatRef::rows(&a, K),
        MatRef::rows(&b, 200),
        &mut dst,
        false,
    )));
    // An output whose m·n wraps to fit a tiny buffer.
    let mut tiny = vec![0.0f32; 4];
    let c = vec![1.0f32; 4];
    assert!(refused(|| gemm_into(
        1 << 33,
        1 << 31,
        0,
        MatRef::rows(&c, 0),
        MatRef::rows(&c, 1 << 31),
        &mut tiny,
        false,
    )));
}

#[test]
fn products_that_fit_still_run_on_both_paths() {
    // Small path and GEMM-crate path (above SMALL_PRODUCT), with a transposed operand.
    for &(m, n, k) in &[(3, 4, 5), (40, 50, 60)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32).collect();
        let mut out = vec![0.0f32; m * n];
        gemm_into(
            m,
            n,
            k,
            MatRef::rows(&a, k),
            MatRef::transposed(&b, k),
            &mut out,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert_eq!(out[i * n + j], want);
            }
        }
    }
}
