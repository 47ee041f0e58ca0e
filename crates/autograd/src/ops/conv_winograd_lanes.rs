//! The tile transforms of `conv_winograd` with eight channels in the lanes of a vector.
//!
//! A plane's tiles overlap and sit at awkward offsets, so transforming eight tiles of
//! one plane at once needs a gather per value. Eight channels of one sample at the
//! same pixel need none once the planes are transposed to pixel-major order ("lanes":
//! `[pixel][8 channels]`, an 8 × 8 register transpose per 8 pixels of a row): every
//! tile is then 16 whole-vector loads, adds and stores, and the transformed values of
//! a tile land as one 8-float row piece of `Vᵀ[ξ]` (`[tiles, C]`), the layout the
//! products want. The arithmetic is that of `conv_winograd_math`'s scalar transforms
//! in the same order, so both give the same bits.

use super::math::{a, at, b, bt};

/// Eight lanes: one value per channel of a group.
pub(super) type L = [f32; 8];

/// A buffer of floats (a multiple of 8 long) as vectors of lanes.
pub(super) fn as_lanes(buf: &mut [f32]) -> &mut [L] {
    assert!(
        buf.len() % 8 == 0,
        "winograd lanes: length not a multiple of 8"
    );
    // SAFETY: `[f32; 8]` has the size of 8 floats and the alignment of one, so the
    // `len / 8` arrays cover exactly the floats of `buf`, which stay borrowed mutably
    // for the lifetime of the result.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<L>(), buf.len() / 8) }
}

/// `f` of four lane vectors, lane by lane (compiled to whole-vector adds).
#[inline(always)]
fn map4(x: [L; 4], f: impl Fn([f32; 4]) -> [f32; 4]) -> [L; 4] {
    let mut out = [[0.0; 8]; 4];
    for l in 0..8 {
        let y = f([x[0][l], x[1][l], x[2][l], x[3][l]]);
        for (o, v) in out.iter_mut().zip(y) {
            o[l] = v;
        }
    }
    out
}

/// `f` (`bt` or `b`) along i, then along j, of a 4 × 4 tile `[4 · i + j]`.
#[inline(always)]
fn both_axes(t: &[L; 16], f: impl Fn([f32; 4]) -> [f32; 4] + Copy) -> [L; 16] {
    let mut e = [[0.0; 8]; 16];
    for j in 0..4 {
        let y = map4([t[j], t[4 + j], t[8 + j], t[12 + j]], f);
        for (i, v) in y.into_iter().enumerate() {
            e[4 * i + j] = v;
        }
    }
    let mut out = [[0.0; 8]; 16];
    for i in 0..4 {
        let y = map4([e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]], f);
        out[4 * i..4 * i + 4].copy_from_slice(&y);
    }
    out
}

/// `Bᵀ d B` of the 4 × 4 patch whose top-left corner is vector `at0` of a plane of
/// lanes `pw` vectors wide.
#[inline(always)]
pub(super) fn input_tile(plane: &[L], at0: usize, pw: usize) -> [L; 16] {
    let d: [L; 16] = std::array::from_fn(|k| plane[at0 + (k / 4) * pw + k % 4]);
    both_axes(&d, bt)
}

/// `B dV Bᵀ` of a tile: the patch gradient.
#[inline(always)]
pub(super) fn input_grad_tile(dv: &[L; 16]) -> [L; 16] {
    both_axes(dv, b)
}

/// `Aᵀ M A` of a tile: its 2 × 2 outputs `[2 · i + j]`.
#[inline(always)]
pub(super) fn output_tile(m: &[L; 16]) -> [L; 4] {
    let mut e = [[0.0; 8]; 8];
    for j in 0..4 {
        for l in 0..8 {
            let y = at([m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]]);
            e[j][l] = y[0];
            e[4 + j][l] = y[1];
        }
    }
    let mut out = [[0.0; 8]; 4];
    for i in 0..2 {
        for l in 0..8 {
            let y = at([
                e[4 * i][l],
                e[4 * i + 1][l],
                e[4 * i + 2][l],
                e[4 * i + 3][l],
            ]);
            out[2 * i][l] = y[0];
            out[2 * i + 1][l] = y[1];
        }
    }
    out
}

/// `A dY Aᵀ` of a tile's 2 × 2 output gradient `[2 · i + j]`.
#[inline(always)]
pub(super) fn output_grad_tile(y: &[L; 4]) -> [L; 16] {
    let mut e = [[0.0; 8]; 8];
    for j in 0..2 {
        for l in 0..8 {
            let v = a([y[j][l], y[2 + j][l]]);
            for (i, v) in v.into_iter().enumerate() {
                e[2 * i + j][l] = v;
            }
        }
    }
    let mut out = [[0.0; 8]; 16];
    for i in 0..4 {
        for l in 0..8 {
            let v = a([e[2 * i][l], e[2 * i + 1][l]]);
            for (j, v) in v.into_iter().enumerate() {
                out[4 * i + j][l] = v;
            }
        }
    }
    out
}

/// Rows `0 .. h` of `count` (≤ 8) planes `h × w` (`stride` floats apart in `src`) into
/// lanes: `dst[(r + off) · pw + off + col][l] = plane l [r][col]`. Lanes `count ..`
/// are left as they were.
pub(super) fn to_lanes(
    (src, stride, count): (&[f32], usize, usize),
    (h, w): (usize, usize),
    dst: &mut [L],
    (pw, off): (usize, usize),
) {
    assert!(
        count <= 8
            && (count == 0 || (count - 1) * stride + h * w <= src.len())
            && (h == 0 || (h - 1 + off) * pw + off + w <= dst.len())
            && w + off <= pw,
        "winograd lanes: operand out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() && count == 8 {
        // SAFETY: AVX2 was detected; the assert above bounds every row read and written.
        unsafe { avx2::to_lanes((src, stride), (h, w), dst, (pw, off)) };
        return;
    }
    to_lanes_portable((src, stride, count), (h, w), dst, (pw, off));
}

/// [`to_lanes`] element by element (fewer than 8 planes, CPUs without AVX2, tests).
fn to_lanes_portable(
    (src, stride, count): (&[f32], usize, usize),
    (h, w): (usize, usize),
    dst: &mut [L],
    (pw, off): (usize, usize),
) {
    for r in 0..h {
        for col in 0..w {
            let at = &mut dst[(r + off) * pw + off + col];
            for (l, v) in at.iter_mut().enumerate().take(count) {
                *v = src[l * stride + r * w + col];
            }
        }
    }
}

/// The inverse of [`to_lanes`]: `plane l [r][col] = src[(r + off) · pw + off + col][l]`
/// for the first `count` planes of `dst`.
pub(super) fn from_lanes(
    src: &[L],
    (pw, off): (usize, usize),
    (h, w): (usize, usize),
    (dst, stride, count): (&mut [f32], usize, usize),
) {
    assert!(
        count <= 8
            && (count == 0 || (count - 1) * stride + h * w <= dst.len())
            && (h == 0 || (h - 1 + off) * pw + off + w <= src.len())
            && w + off <= pw,
        "winograd lanes: operand out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() && count == 8 {
        // SAFETY: AVX2 was detected; the assert above bounds every row read and written.
        unsafe { avx2::from_lanes(src, (pw, off), (h, w), (dst, stride)) };
        return;
    }
    from_lanes_portable(src, (pw, off), (h, w), (dst, stride, count));
}

/// [`from_lanes`] element by element.
fn from_lanes_portable(
    src: &[L],
    (pw, off): (usize, usize),
    (h, w): (usize, usize),
    (dst, stride, count): (&mut [f32], usize, usize),
) {
    for r in 0..h {
        for col in 0..w {
            let at = &src[(r + off) * pw + off + col];
            for (l, &v) in at.iter().enumerate().take(count) {
                dst[l * stride + r * w + col] = v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::L;
    use crate::ops::gemm::transpose8;
    use std::arch::x86_64::*;

    /// [`super::to_lanes`] for 8 planes: 8 × 8 blocks through registers, the last
    /// `w mod 8` columns of a row element by element.
    ///
    /// # Safety
    /// The CPU must have AVX2; the operands must hold what `super::to_lanes` checks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn to_lanes(
        (src, stride): (&[f32], usize),
        (h, w): (usize, usize),
        dst: &mut [L],
        (pw, off): (usize, usize),
    ) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
        for r in 0..h {
            let row = (r + off) * pw + off;
            let mut c0 = 0;
            while c0 + 8 <= w {
                // SAFETY: planes 0 .. 8, row r, columns c0 .. c0 + 8 ≤ w, and vectors
                // row + c0 .. row + c0 + 8 lie in the checked operands.
                unsafe {
                    let rows: [__m256; 8] =
                        std::array::from_fn(|l| _mm256_loadu_ps(s.add(l * stride + r * w + c0)));
                    for (k, v) in transpose8(rows).into_iter().enumerate() {
                        _mm256_storeu_ps(d.add((row + c0 + k) * 8), v);
                    }
                }
                c0 += 8;
            }
            for col in c0..w {
                for l in 0..8 {
                    // SAFETY: as above, for column col < w.
                    unsafe { *d.add((row + col) * 8 + l) = *s.add(l * stride + r * w + col) };
                }
            }
        }
    }

    /// [`super::from_lanes`] for 8 planes, the same way round.
    ///
    /// # Safety
    /// The CPU must have AVX2; the operands must hold what `super::from_lanes` checks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn from_lanes(
        src: &[L],
        (pw, off): (usize, usize),
        (h, w): (usize, usize),
        (dst, stride): (&mut [f32], usize),
    ) {
        let (s, d) = (src.as_ptr().cast::<f32>(), dst.as_mut_ptr());
        for r in 0..h {
            let row = (r + off) * pw + off;
            let mut c0 = 0;
            while c0 + 8 <= w {
                // SAFETY: vectors row + c0 .. row + c0 + 8 and planes 0 .. 8, row r,
                // columns c0 .. c0 + 8 ≤ w lie in the checked operands.
                unsafe {
                    let px: [__m256; 8] =
                        std::array::from_fn(|k| _mm256_loadu_ps(s.add((row + c0 + k) * 8)));
                    for (l, v) in transpose8(px).into_iter().enumerate() {
                        _mm256_storeu_ps(d.add(l * stride + r * w + c0), v);
                    }
                }
                c0 += 8;
            }
            for col in c0..w {
                for l in 0..8 {
                    // SAFETY: as above, for column col < w.
                    unsafe { *d.add(l * stride + r * w + col) = *s.add((row + col) * 8 + l) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector transposes move the same values as the element loops, both ways,
    /// for rows of whole vectors and rows with a tail.
    #[test]
    fn vector_and_portable_transposes_agree() {
        for (h, w, pw, off) in [(8, 8, 10, 1), (3, 11, 12, 0), (2, 5, 8, 1)] {
            let stride = h * w + 3;
            let src: Vec<f32> = (0..8 * stride).map(|i| i as f32 * 0.5 - 7.0).collect();
            let len = 8 * (h + off) * pw;
            let (mut fast, mut slow) = (vec![0.0; len], vec![0.0; len]);
            to_lanes((&src, stride, 8), (h, w), as_lanes(&mut fast), (pw, off));
            to_lanes_portable((&src, stride, 8), (h, w), as_lanes(&mut slow), (pw, off));
            assert_eq!(fast, slow);
            assert_eq!(as_lanes(&mut fast)[off * pw + off][3], src[3 * stride]);
            let (mut back, mut back_slow) = (vec![0.0; 8 * stride], vec![0.0; 8 * stride]);
            from_lanes(
                as_lanes(&mut fast),
                (pw, off),
                (h, w),
                (&mut back, stride, 8),
            );
            from_lanes_portable(
                as_lanes(&mut slow),
                (pw, off),
                (h, w),
                (&mut back_slow, stride, 8),
            );
            assert_eq!(back, back_slow);
            for l in 0..8 {
                let plane = l * stride;
                assert_eq!(back[plane..plane + h * w], src[plane..plane + h * w]);
            }
        }
    }
}
