//! Packing strided views of A and B into the micro-kernel's panel layout.
//!
//! A panel of A holds `mr` rows interleaved (`dst[p·mr + i]`), a panel of B `nr`
//! columns (`dst[p·nr + j]`); missing rows or columns at the edges are zero. Where a
//! panel is a transposing copy (row-major A, and B = Wᵀ read from W in `linear`), the
//! AVX2 kernel's panels are transposed 8 × 8 in registers instead of element by element
//! (the element-wise copy was about a tenth of the MLP step).

use super::MatRef;

/// Zeros standing in for the missing rows or columns of an edge panel, so edge panels
/// take the same SIMD transposing copy as full ones (the element-wise fallback was a
/// third of a product with a 9-column output). Panels deeper than this take the
/// fallback.
static ZEROS: [f32; 1024] = [0.0; 1024];

/// Packs rows `i0..min(i0 + mr, rows_end)`, columns `pc..pc + kc` of `a` as
/// `dst[p·mr + i]`, zero-padding missing rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_a_panel(
    a: MatRef,
    pc: usize,
    kc: usize,
    i0: usize,
    rows_end: usize,
    mr: usize,
    simd: bool,
    dst: &mut [f32],
) {
    let rows = mr.min(rows_end - i0);
    let dst = &mut dst[..kc * mr];
    if a.row_stride == 1 && rows < mr {
        // Aᵀ at the bottom edge: each p's rows are contiguous, the rest zero.
        for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
            let s = i0 + (pc + p) * a.col_stride;
            d[..rows].copy_from_slice(&a.data[s..s + rows]);
            d[rows..].fill(0.0);
        }
        return;
    }
    if a.row_stride == 1 && rows == mr {
        // A transposed in memory (Aᵀ·G in backward): each p's mr values are contiguous.
        let start = i0 + pc * a.col_stride;
        match mr {
            4 => gather::<4>(&a.data[start..], a.col_stride, dst),
            6 => gather::<6>(&a.data[start..], a.col_stride, dst),
            _ => {
                for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                    let s = start + p * a.col_stride;
                    d.copy_from_slice(&a.data[s..s + mr]);
                }
            }
        }
        return;
    }
    if a.col_stride == 1 && (rows == mr || kc <= ZEROS.len()) {
        // Row-major A (the usual case): interleave mr contiguous rows (zeros below
        // the edge).
        let row = |i: usize| {
            if i >= rows {
                return &ZEROS[..kc];
            }
            let s = (i0 + i) * a.row_stride + pc;
            &a.data[s..s + kc]
        };
        match mr {
            4 => return interleave::<4>(std::array::from_fn(row), dst, simd),
            6 => return interleave::<6>(std::array::from_fn(row), dst, simd),
            _ => {}
        }
    }
    if rows < mr {
        dst.fill(0.0);
    }
    for i in 0..rows {
        let base = (i0 + i) * a.row_stride + pc * a.col_stride;
        let column = dst[i..].iter_mut().step_by(mr);
        if a.col_stride == 1 {
            for (d, &v) in column.zip(&a.data[base..base + kc]) {
                *d = v;
            }
        } else {
            let src = &a.data[base..=base + (kc - 1) * a.col_stride];
            for (d, &v) in column.zip(src.iter().step_by(a.col_stride)) {
                *d = v;
            }
        }
    }
}

/// Packs rows `pc..pc + kc`, columns `j0..min(j0 + nr, cols_end)` of `b` as
/// `dst[p·nr + j]`, zero-padding missing columns.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_b_panel(
    b: MatRef,
    pc: usize,
    kc: usize,
    j0: usize,
    cols_end: usize,
    nr: usize,
    simd: bool,
    dst: &mut [f32],
) {
    let cols = nr.min(cols_end - j0);
    let dst = &mut dst[..kc * nr];
    if b.col_stride == 1 && cols < nr {
        // Row-major B at the right edge: each p's columns are contiguous, the rest zero.
        for (p, d) in dst.chunks_exact_mut(nr).enumerate() {
            let s = (pc + p) * b.row_stride + j0;
            d[..cols].copy_from_slice(&b.data[s..s + cols]);
            d[cols..].fill(0.0);
        }
        return;
    }
    if b.col_stride == 1 && cols == nr {
        // Row-major B: each p's nr values are contiguous.
        let start = pc * b.row_stride + j0;
        match nr {
            8 => gather::<8>(&b.data[start..], b.row_stride, dst),
            16 => gather::<16>(&b.data[start..], b.row_stride, dst),
            _ => {
                for (p, d) in dst.chunks_exact_mut(nr).enumerate() {
                    let s = start + p * b.row_stride;
                    d.copy_from_slice(&b.data[s..s + nr]);
                }
            }
        }
        return;
    }
    if b.row_stride == 1 && (cols == nr || kc <= ZEROS.len()) {
        // Wᵀ in `linear`: column j of B is row j of W, contiguous along p (zeros past
        // the edge).
        let column = |j: usize| {
            if j >= cols {
                return &ZEROS[..kc];
            }
            let s = pc + (j0 + j) * b.col_stride;
            &b.data[s..s + kc]
        };
        match nr {
            8 => return interleave::<8>(std::array::from_fn(column), dst, simd),
            16 => return interleave::<16>(std::array::from_fn(column), dst, simd),
            _ => {}
        }
    }
    if cols < nr {
        dst.fill(0.0);
    }
    for j in 0..cols {
        let base = pc * b.row_stride + (j0 + j) * b.col_stride;
        let column = dst[j..].iter_mut().step_by(nr);
        if b.row_stride == 1 {
            // Wᵀ in `linear`: column j of B is row j of W, contiguous along p.
            for (d, &v) in column.zip(&b.data[base..base + kc]) {
                *d = v;
            }
        } else {
            let src = &b.data[base..=base + (kc - 1) * b.row_stride];
            for (d, &v) in column.zip(src.iter().step_by(b.row_stride)) {
                *d = v;
            }
        }
    }
}

/// `dst[p·R + r] = src[r][p]`: R equally long slices interleaved, one contiguous
/// R-group of `dst` per p (a transposing copy with R read streams). With `simd` (only
/// passed for the AVX2 kernel's panels, so the CPU has AVX2) blocks of 8 × 8 are
/// transposed in registers.
fn interleave<const R: usize>(src: [&[f32]; R], dst: &mut [f32], simd: bool) {
    let kc = src[0].len();
    assert!(src.iter().all(|s| s.len() == kc) && dst.len() >= kc * R);
    let dst = &mut dst[..kc * R];
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd && (R % 8 == 0 || R == 6) {
        // SAFETY: `simd` is only set for the AVX2 kernel, handed out on CPUs with AVX2;
        // the lengths were checked above.
        done = unsafe { interleave_avx2::<R>(&src, dst) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    for p in done..kc {
        for r in 0..R {
            // SAFETY: p < kc and every row holds kc floats (asserted above).
            // Unchecked because LLVM keeps R bounds checks per p.
            dst[p * R + r] = unsafe { *src[r].get_unchecked(p) };
        }
    }
}

/// The AVX2 part of [`interleave`] for R a multiple of 8 or R = 6: transposes 8 × 8
/// blocks (for R = 6, six rows and two ignored ones, each 8-wide group stored over the
/// next group's start, which the next store then overwrites). Returns how many p it
/// packed; the caller packs the rest.
///
/// # Safety
/// The CPU must have AVX2; every `src` row holds `kc` floats and `dst` exactly kc·R.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interleave_avx2<const R: usize>(src: &[&[f32]; R], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let kc = src[0].len();
    // For R = 6 the last store of a block writes 2 floats past its group: stop while
    // that stays inside `dst`.
    let blocks = if R == 6 {
        (kc * R).saturating_sub(2) / (8 * R)
    } else {
        kc / 8
    };
    let groups = R.div_ceil(8);
    let out = dst.as_mut_ptr();
    // For R a multiple of 8, two blocks at a time, so each row's 64-byte line is used
    // whole while it is in L1 (rows a multiple of 2 KiB apart share few L1 sets, and
    // the second half of a line was often evicted before the next block read it).
    let pairs = if R % 8 == 0 { blocks / 2 } else { 0 };
    for pair in 0..pairs {
        let p = pair * 16;
        for g in 0..groups {
            let mut lo = [_mm256_setzero_ps(); 8];
            let mut hi = [_mm256_setzero_ps(); 8];
            for r in 0..8 {
                // SAFETY: p + 16 <= kc (pairs ≤ kc / 16) and the row holds kc floats;
                // g·8 + r < R for R a multiple of 8.
                unsafe {
                    let row = src[g * 8 + r].as_ptr().add(p);
                    // The row's line four ahead: sixteen rows are read in step, more
                    // streams than the hardware prefetcher follows (W comes from L3).
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64) as *const i8);
                    lo[r] = _mm256_loadu_ps(row);
                    hi[r] = _mm256_loadu_ps(row.add(8));
                }
            }
            for (half, rows) in [lo, hi].into_iter().enumerate() {
                let cols = transpose8(rows);
                for (q, col) in cols.iter().enumerate() {
                    // SAFETY: (p + half·8 + q)·R + g·8 + 8 ≤ kc·R (p + 16 ≤ kc).
                    unsafe { _mm256_storeu_ps(out.add((p + half * 8 + q) * R + g * 8), *col) };
                }
            }
        }
    }
    for blk in 2 * pairs..blocks {
        let p = blk * 8;
        for g in 0..groups {
            // A plain loop, not `array::from_fn`: a closure would not inherit AVX2.
            let mut rows = [_mm256_setzero_ps(); 8];
            for (r, row) in rows.iter_mut().enumerate().take(R - g * 8) {
                // SAFETY: p + 8 <= kc (blocks ≤ kc / 8) and the row holds kc floats.
                *row = unsafe { _mm256_loadu_ps(src[g * 8 + r].as_ptr().add(p)) };
            }
            let cols = transpose8(rows);
            for (q, col) in cols.iter().enumerate() {
                // SAFETY: (p + q)·R + g·8 + 8 ≤ kc·R for R a multiple of 8; for R = 6,
                // (p + q)·6 + 8 ≤ blocks·48 + 2 ≤ kc·6 by the choice of `blocks`.
                unsafe { _mm256_storeu_ps(out.add((p + q) * R + g * 8), *col) };
            }
        }
    }
    blocks * 8
}

/// The transpose of an 8 × 8 block held as 8 rows (also the attention kernels' key and
/// value tiles, `ops/attention_gemm.rs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `dst[p·R .. p·R + R] = src[p·stride .. p·stride + R]` for every R-group of `dst`: a
/// copy of R-wide rows whose width the compiler knows (no `memcpy` call per row).
fn gather<const R: usize>(src: &[f32], stride: usize, dst: &mut [f32]) {
    for (p, d) in dst.chunks_exact_mut(R).enumerate() {
        let row: &[f32; R] = src[p * stride..p * stride + R].try_into().unwrap();
        d.copy_from_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD transposing copy matches the element-wise one bit for bit, for every
    /// length (tails, blocks, and the R = 6 overlapping stores at the end of `dst`).
    #[test]
    fn simd_interleave_matches_the_scalar_copy() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for kc in [1, 7, 8, 9, 15, 16, 17, 40, 64, 65] {
            let rows: Vec<Vec<f32>> = (0..16)
                .map(|r| (0..kc).map(|p| (r * 100 + p) as f32).collect())
                .collect();
            let six: [&[f32]; 6] = std::array::from_fn(|r| &rows[r][..]);
            let (mut fast, mut slow) = (vec![-1.0; kc * 6], vec![-1.0; kc * 6]);
            interleave::<6>(six, &mut fast, true);
            interleave::<6>(six, &mut slow, false);
            assert_eq!(fast, slow, "R = 6, kc = {kc}");
            assert_eq!(slow[6 * (kc - 1) + 5], (500 + kc - 1) as f32);
            let sixteen: [&[f32]; 16] = std::array::from_fn(|r| &rows[r][..]);
            let (mut fast, mut slow) = (vec![-1.0; kc * 16], vec![-1.0; kc * 16]);
            interleave::<16>(sixteen, &mut fast, true);
            interleave::<16>(sixteen, &mut slow, false);
            assert_eq!(fast, slow, "R = 16, kc = {kc}");
        }
    }
}
