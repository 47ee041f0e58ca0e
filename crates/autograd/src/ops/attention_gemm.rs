//! The small products of the attention kernels (and of the Winograd convolution's
//! per-block products, `ops/conv_winograd.rs`), read in place without packing.
//!
//! A (batch, head) pair's products are at most `64 × 64 × D` (D = 32 in a GPT of width
//! 128 with 4 heads): through the blocked GEMM, packing both operands and running edge
//! tiles cost as much as the arithmetic. Every product the kernels need can be written
//! as `C (+)= A·B` where `B`'s rows are contiguous: the key and value blocks are
//! transposed once per tile, everything else already is. So one register-blocked
//! kernel serves them all: it broadcasts `A`'s elements (any strides) and multiplies
//! them with 8-float vectors of `B`'s rows, for a tile of up to 6 rows × 16 columns in
//! 12 accumulators, and reads and writes nothing but the operands.
//!
//! Under a causal mask half of each diagonal score block is dead; [`Live`] tells the
//! kernel which part of a product is live, so that it skips the dead part by row
//! blocks of 6: output columns past the diagonal, or the terms of the sum whose `A`
//! elements are the masked (zero) probabilities.
//!
//! Each output sums its terms in increasing order from zero and is then added to `C`
//! (when accumulating): the order depends on the shapes alone, never on the threads.
//! AVX2 + FMA at run time, else a portable loop with the same live parts.

use crate::ops::gemm::MatRef;

/// Rows of a register tile.
const MR: usize = 6;

/// Which part of a product `C[m×n] (+)= A[m×k]·B[k×n]` is live (a causal mask's
/// triangle), as an offset between the row index `i` and the column or sum index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Live {
    /// Every element and every term.
    All,
    /// Output `(i, j)` is live for `j < i + 1 + off`; the others may be left unwritten
    /// (or hold anything).
    ColsTo(isize),
    /// Row `i` sums over `p < i + 1 + off` only (`A` is zero past that).
    KTo(isize),
    /// Row `i` sums over `p ≥ i + off` only (`A` is zero before that).
    KFrom(isize),
}

impl Live {
    /// For rows `i0 .. i0 + h`: the columns to write and the range of the sum.
    #[inline]
    fn block(self, i0: usize, h: usize, n: usize, k: usize) -> (usize, usize, usize) {
        let clamp = |x: isize, hi: usize| x.clamp(0, hi as isize) as usize;
        let end = (i0 + h) as isize;
        match self {
            Live::All => (n, 0, k),
            // Rounded up to whole vectors: a few dead outputs cost less than a scalar tail.
            Live::ColsTo(off) => (clamp(end + off, n).next_multiple_of(8).min(n), 0, k),
            Live::KTo(off) => (n, 0, clamp(end + off, k)),
            Live::KFrom(off) => (n, clamp(i0 as isize + off, k), k),
        }
    }
}

/// `c[i·ldc + j] (+)= Σ_p a(i, p)·b[p·ldb + j]` for `i < m`, `j < n`, over the [`Live`]
/// part only; outputs of a block whose sum range is empty are set to 0 (or kept when
/// accumulating). `b`'s rows are contiguous with stride `ldb`, `c`'s with `ldc`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product(
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    (b, ldb): (&[f32], usize),
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
    live: Live,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.fits(m, k)
            && (k == 0 || ends_within((k - 1, ldb, n), b.len()))
            && ends_within((m - 1, ldc, n), c.len()),
        "attention product: operand out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on this CPU; the operands were checked to
        // hold every element the m × n × k product reads or writes.
        unsafe { avx2::product((m, n, k), a, (b, ldb), (c, ldc), accumulate, live) };
        return;
    }
    portable((m, n, k), a, (b, ldb), (c, ldc), accumulate, live);
}

/// `dst[p·rows + j] = src[j·ld + p]` for `j < rows`, `p < width`: the first `rows`
/// rows of `src` (each `width` long, `ld` apart) transposed into `dst` (`width` × `rows`,
/// row-major), for the key and value tiles of the attention products.
pub(crate) fn transpose((src, ld): (&[f32], usize), rows: usize, width: usize, dst: &mut [f32]) {
    if rows == 0 || width == 0 {
        return;
    }
    assert!(
        ends_within((rows - 1, ld, width), src.len()) && dst.len() >= rows * width,
        "attention transpose: operand out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        // SAFETY: AVX2 was detected on this CPU; both operands were checked to hold
        // every element read or written.
        unsafe { avx2::transpose((src, ld), rows, width, dst) };
        return;
    }
    transpose_portable((src, ld), (0, rows), (0, width), dst, rows);
}

/// The part `js × ps` of [`transpose`] (rows `js.0 .. js.1`, columns `ps.0 .. ps.1`)
/// with plain loops; `ldd` is `dst`'s row stride.
fn transpose_portable(
    (src, ld): (&[f32], usize),
    js: (usize, usize),
    ps: (usize, usize),
    dst: &mut [f32],
    ldd: usize,
) {
    for j in js.0..js.1 {
        for p in ps.0..ps.1 {
            dst[p * ldd + j] = src[j * ld + p];
        }
    }
}

/// Whether `rows` rows of `width` at stride `ld` (the last at `rows·ld`) end within
/// `len` floats, with checked arithmetic (a wrapped offset would pass the test).
fn ends_within((rows, ld, width): (usize, usize, usize), len: usize) -> bool {
    rows.checked_mul(ld)
        .and_then(|x| x.checked_add(width))
        .is_some_and(|end| end <= len)
}

/// The same products with plain loops (CPUs without AVX2 + FMA, and the tests).
pub(crate) fn portable(
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    (b, ldb): (&[f32], usize),
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
    live: Live,
) {
    for i0 in (0..m).step_by(MR) {
        let h = MR.min(m - i0);
        let (cols, k0, k1) = live.block(i0, h, n, k);
        for i in i0..i0 + h {
            for j in 0..cols {
                let mut sum = 0.0f32;
                for p in k0..k1 {
                    sum += a.data[i * a.row_stride + p * a.col_stride] * b[p * ldb + j];
                }
                let out = &mut c[i * ldc + j];
                *out = if accumulate { *out + sum } else { sum };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{transpose_portable, Live, MatRef, MR};
    use crate::ops::gemm::transpose8;
    use std::arch::x86_64::*;

    /// See [`super::transpose`]: 8 × 8 blocks in registers (eight row loads, the
    /// packing code's 24-shuffle `transpose8`, eight row stores), the edges with plain
    /// loops.
    ///
    /// # Safety
    /// The CPU must have AVX2; `src` must hold `rows` rows of `width` at stride `ld`,
    /// and `dst` `rows · width` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn transpose(
        (src, ld): (&[f32], usize),
        rows: usize,
        width: usize,
        dst: &mut [f32],
    ) {
        let (rows8, width8) = (rows / 8 * 8, width / 8 * 8);
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        for j0 in (0..rows8).step_by(8) {
            for p0 in (0..width8).step_by(8) {
                // SAFETY: rows j0 .. j0 + 8 ≤ rows, columns p0 .. p0 + 8 ≤ width of
                // src, and the transposed block of dst, lie in the checked operands.
                unsafe {
                    let r: [__m256; 8] =
                        std::array::from_fn(|t| _mm256_loadu_ps(s.add((j0 + t) * ld + p0)));
                    let cols = transpose8(r);
                    for (t, &c) in cols.iter().enumerate() {
                        _mm256_storeu_ps(d.add((p0 + t) * rows + j0), c);
                    }
                }
            }
        }
        transpose_portable((src, ld), (0, rows8), (width8, width), dst, rows);
        transpose_portable((src, ld), (rows8, rows), (0, width), dst, rows);
    }

    /// See [`super::product`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `a` must hold the m × k view, `b` the k rows of
    /// n floats at stride `ldb`, `c` the m rows of n floats at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product(
        (m, n, k): (usize, usize, usize),
        a: MatRef,
        (b, ldb): (&[f32], usize),
        (c, ldc): (&mut [f32], usize),
        accumulate: bool,
        live: Live,
    ) {
        let (rsa, csa) = (a.row_stride, a.col_stride);
        let (ap, bp, cp) = (a.data.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        for i0 in (0..m).step_by(MR) {
            let h = MR.min(m - i0);
            let (cols, k0, k1) = live.block(i0, h, n, k);
            let tile = Tile {
                a: ap.wrapping_add(i0 * rsa),
                rsa,
                csa,
                b: bp,
                ldb,
                c: cp.wrapping_add(i0 * ldc),
                ldc,
                k: (k0, k1),
                accumulate,
            };
            let mut j = 0;
            while j + 16 <= cols {
                // SAFETY: rows i0 .. i0 + h, columns j .. j + 16 ≤ n and terms
                // k0 .. k1 ≤ k lie in the checked operands.
                unsafe { rows::<2>(h, tile.at(j)) };
                j += 16;
            }
            if j + 8 <= cols {
                // SAFETY: as above, for columns j .. j + 8 ≤ n.
                unsafe { rows::<1>(h, tile.at(j)) };
                j += 8;
            }
            for jj in j..cols {
                // SAFETY: as above, for column jj < n.
                unsafe { column(h, tile.at(jj)) };
            }
        }
    }

    /// One block of rows and the columns from its `b` and `c` pointers on.
    #[derive(Clone, Copy)]
    struct Tile {
        a: *const f32,
        rsa: usize,
        csa: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        k: (usize, usize),
        accumulate: bool,
    }

    impl Tile {
        /// The same tile from column `j` on.
        fn at(self, j: usize) -> Tile {
            Tile {
                b: self.b.wrapping_add(j),
                c: self.c.wrapping_add(j),
                ..self
            }
        }
    }

    /// Dispatches `h` (1..=6) rows to the register tile of that height.
    ///
    /// # Safety
    /// As for [`tile`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const V: usize>(h: usize, t: Tile) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match h {
                6 => tile::<6, V>(t),
                5 => tile::<5, V>(t),
                4 => tile::<4, V>(t),
                3 => tile::<3, V>(t),
                2 => tile::<2, V>(t),
                _ => tile::<1, V>(t),
            }
        }
    }

    /// `R` rows × `8·V` columns: the accumulators stay in registers over the terms.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `a(r, p)` at `t.a + r·rsa + p·csa`, `b[p][0..8V]`
    /// at `t.b + p·ldb` and `c[r][0..8V]` at `t.c + r·ldc` must be valid for every
    /// `r < R` and `p` in `t.k`, and no one else may touch that part of `c`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize, const V: usize>(t: Tile) {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        for p in t.k.0..t.k.1 {
            // SAFETY: row p of b and column p of a's R rows are inside the operands.
            unsafe {
                let brow = t.b.add(p * t.ldb);
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(brow.add(8 * v));
                }
                let acol = t.a.add(p * t.csa);
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*acol.add(r * t.rsa));
                    for (s, &y) in row.iter_mut().zip(&bv) {
                        *s = _mm256_fmadd_ps(x, y, *s);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &s) in row.iter().enumerate() {
                // SAFETY: c's row r, columns 8v .. 8v + 8, belong to this tile.
                unsafe {
                    let dst = t.c.add(r * t.ldc + 8 * v);
                    let s = if t.accumulate {
                        _mm256_add_ps(_mm256_loadu_ps(dst), s)
                    } else {
                        s
                    };
                    _mm256_storeu_ps(dst, s);
                }
            }
        }
    }

    /// One column of `h` rows (the last `n mod 8` columns), summed in the same order.
    ///
    /// # Safety
    /// As for [`tile`] with one column and `h` rows.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn column(h: usize, t: Tile) {
        for r in 0..h {
            let mut sum = 0.0f32;
            for p in t.k.0..t.k.1 {
                // SAFETY: a(r, p) and b[p][0] are inside the operands.
                sum =
                    unsafe { (*t.a.add(r * t.rsa + p * t.csa)).mul_add(*t.b.add(p * t.ldb), sum) };
            }
            // SAFETY: c[r][0] belongs to this tile.
            unsafe {
                let dst = t.c.add(r * t.ldc);
                *dst = if t.accumulate { *dst + sum } else { sum };
            }
        }
    }
}

#[cfg(test)]
#[path = "attention_gemm_tests.rs"]
mod tests;
