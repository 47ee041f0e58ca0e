//! The `gemm` crate as a backend, for CPUs with AVX-512 (its AVX-512 kernels, picked at
//! run time, beat our AVX2 kernel there; tapegrad has no AVX-512 kernel of its own yet),
//! or when `TAPEGRAD_GEMM_KERNEL=crate` asks for it. It is the product path tapegrad
//! used before its own kernels, unchanged: the crate threads a product itself when both
//! output sides are long, otherwise rayon splits the output along its longer side.
//! Either way each element sums over k in an order the thread count does not change.

use rayon::prelude::*;

use super::MatRef;

/// `dst[m×n] = a·b` (or `+=` when `accumulate`) through the `gemm` crate on up to
/// `threads` threads; m, n, k > 0 and the views fit (checked by the caller).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    let mut parallelism = gemm::Parallelism::None;
    if threads > 1 {
        if m.min(n) >= SHARED_PACKING_MIN {
            // Both sides long: the crate's own threading shares one packed copy of each
            // operand between threads (measured 290 vs 240 GFLOP/s at 256³ on 2 threads).
            parallelism = gemm::Parallelism::Rayon(threads);
        } else if m.max(n) >= 2 * MIN_SPLIT {
            parallel_gemm(m, n, k, a, b, dst, accumulate, threads);
            return;
        }
    }
    assert!(dst.len() >= m * n, "gemm_into: operand out of bounds");
    // SAFETY: dst holds the m×n output (asserted above) and is borrowed exclusively.
    unsafe { gemm_block(m, n, k, a, b, dst.as_mut_ptr(), n, accumulate, parallelism) }
}

/// Rows or columns below which splitting a product between threads costs more than it
/// gains.
const MIN_SPLIT: usize = 16;

/// When both output sides are at least this long, the GEMM crate threads the product
/// itself; below, one side is too short for its column-block split to feed two threads.
const SHARED_PACKING_MIN: usize = 256;

/// A pointer to the output that threads write disjoint blocks of.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
impl OutPtr {
    /// The element `offset` places in. (A method, so closures capture the whole
    /// `Send` wrapper rather than the raw pointer field.)
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: `parallel_gemm` gives each thread a disjoint block of the output.
unsafe impl Send for OutPtr {}
// SAFETY: as above; the pointer is only read to compute each block's start.
unsafe impl Sync for OutPtr {}

/// Splits the output between threads along its longer side, so each thread packs only
/// its share of the operand on that side. (The GEMM crate's own threading splits over
/// column blocks, which leaves the second thread idle for a batch of 128 rows times a
/// 512-wide layer.) Each output element still sums over k in the same order, so the
/// result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
fn parallel_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    let split_rows = m > n;
    let len = if split_rows { m } else { n };
    let per = len.div_ceil(threads).max(MIN_SPLIT);
    let out = OutPtr(dst.as_mut_ptr());
    (0..len.div_ceil(per)).into_par_iter().for_each(|part| {
        let (start, end) = (part * per, ((part + 1) * per).min(len));
        if split_rows {
            let a_rows = MatRef {
                data: &a.data[start * a.row_stride..],
                ..a
            };
            // SAFETY: rows start..end of the m×n output, disjoint from other parts' rows,
            // inside `dst` (asserted by the caller).
            unsafe {
                gemm_block(
                    end - start,
                    n,
                    k,
                    a_rows,
                    b,
                    out.at(start * n),
                    n,
                    accumulate,
                    gemm::Parallelism::None,
                )
            }
        } else {
            let b_cols = MatRef {
                data: &b.data[start * b.col_stride..],
                ..b
            };
            // SAFETY: columns start..end of every row of the m×n output, disjoint from
            // other parts' columns, inside `dst` (asserted by the caller).
            unsafe {
                gemm_block(
                    m,
                    end - start,
                    k,
                    a,
                    b_cols,
                    out.at(start),
                    n,
                    accumulate,
                    gemm::Parallelism::None,
                )
            }
        }
    });
}

/// One GEMM-crate call into an m×n block of a row-major output with row stride
/// `dst_row_stride`, threaded by the crate as `parallelism` says.
///
/// # Safety
/// `dst` must point to such a block that the caller may write and no one else touches
/// during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert!(
        a.fits(m, k) && b.fits(k, n),
        "gemm_into: operand out of bounds"
    );
    // SAFETY: the assert checks that every element gemm reads, a[i·rs + p·cs] for i < m,
    // p < k (likewise b for p < k, j < n), lies inside its slice; the caller guarantees
    // the output block. alpha = 1 keeps dst when accumulating; beta = 1 scales a·b by one.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
