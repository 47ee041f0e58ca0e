//! Max pooling with kernel 2, stride 2 and no padding (every CNN's pooling), one pair of
//! input rows at a time: the forward pass with each window's arg-max, and the backward
//! scatter through it.
//!
//! The general loops decide each window with branches on the data, and random data
//! mispredicts them (the pooling of the CIFAR-shaped step spent ~30 cycles per window
//! there). These loops are branch-free: eight windows at a time with AVX2 when the CPU
//! has it, a bit-mask select per window otherwise and in the tails. Both paths give
//! the same bits as the general walk: within a window the first maximum wins, or the
//! last NaN. A window is decided as two row pairs, then the rows (`best(best(a0, a1),
//! best(b0, b1))`), which picks the same element as scanning the four in row-major
//! order: a NaN in the bottom row beats anything above it, a NaN on top beats any
//! number below, and among numbers the bottom row wins only when strictly larger.

/// One output row of 2x2 max pooling: `out[j]` is the maximum of the window whose
/// top-left input is `r0[2j]` (`r1` is the row below), and `at[j]` its in-plane index as
/// `u32` bits in an `f32`, with `base` the in-plane index of `r0[0]` and `w` the
/// plane's width.
pub(crate) fn max_row(
    r0: &[f32],
    r1: &[f32],
    base: u32,
    w: u32,
    out: &mut [f32],
    at: Option<&mut [f32]>,
) {
    let ow = out.len();
    assert!(r0.len() >= 2 * ow && r1.len() >= 2 * ow && at.as_ref().is_none_or(|a| a.len() == ow));
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 was detected on the running CPU; the lengths were checked above.
        unsafe { avx2::max_row(r0, r1, base, w, out, at) };
        return;
    }
    max_row_scalar(r0, r1, base, w, 0, out, at);
}

/// The backward of [`max_row`]: writes the two input-gradient rows `d0`, `d1` (their
/// first `2 · g.len()` elements) from the output gradient `g` and the arg-maxes `at`.
pub(crate) fn scatter_row(
    g: &[f32],
    at: &[f32],
    base: u32,
    w: u32,
    d0: &mut [f32],
    d1: &mut [f32],
) {
    let ow = g.len();
    assert!(at.len() == ow && d0.len() >= 2 * ow && d1.len() >= 2 * ow);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 was detected on the running CPU; the lengths were checked above.
        unsafe { avx2::scatter_row(g, at, base, w, d0, d1) };
        return;
    }
    scatter_row_scalar(g, at, base, w, 0, d0, d1);
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// `b` if it beats `a` (larger, or NaN), else `a`, with its index; selected with bit
/// masks, not a branch.
#[inline(always)]
fn best(a: f32, ia: u32, b: f32, ib: u32) -> (f32, u32) {
    let take = ((b > a) | b.is_nan()) as u32;
    let mask = take.wrapping_neg();
    let v = (b.to_bits() & mask) | (a.to_bits() & !mask);
    (f32::from_bits(v), (ib & mask) | (ia & !mask))
}

/// [`max_row`] for the windows `from..`, one at a time.
fn max_row_scalar(
    r0: &[f32],
    r1: &[f32],
    base: u32,
    w: u32,
    from: usize,
    out: &mut [f32],
    mut at: Option<&mut [f32]>,
) {
    for j in from..out.len() {
        let first = base + 2 * j as u32;
        let top = best(r0[2 * j], first, r0[2 * j + 1], first + 1);
        let bottom = best(r1[2 * j], first + w, r1[2 * j + 1], first + w + 1);
        let (m, i) = best(top.0, top.1, bottom.0, bottom.1);
        out[j] = m;
        if let Some(at) = at.as_mut() {
            at[j] = f32::from_bits(i);
        }
    }
}

/// [`scatter_row`] for the windows `from..`, one at a time.
fn scatter_row_scalar(
    g: &[f32],
    at: &[f32],
    base: u32,
    w: u32,
    from: usize,
    d0: &mut [f32],
    d1: &mut [f32],
) {
    for j in from..g.len() {
        let k = at[j].to_bits().wrapping_sub(base + 2 * j as u32);
        let gv = g[j].to_bits();
        let pick = |o: u32| f32::from_bits(gv & ((k == o) as u32).wrapping_neg());
        (d0[2 * j], d0[2 * j + 1]) = (pick(0), pick(1));
        (d1[2 * j], d1[2 * j + 1]) = (pick(w), pick(w + 1));
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The eight-windows-at-a-time loops. Every function here needs AVX2.

    use std::arch::x86_64::*;

    /// Lanes of `a` replaced by those of `b` that beat them (larger, or NaN), and the
    /// same choice between the index vectors.
    #[inline(always)]
    unsafe fn best(a: __m256, ia: __m256, b: __m256, ib: __m256) -> (__m256, __m256) {
        let take = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(b, a),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(b, b),
        );
        (_mm256_blendv_ps(a, b, take), _mm256_blendv_ps(ia, ib, take))
    }

    /// [`best`] on four lanes.
    #[inline(always)]
    unsafe fn best4(a: __m128, ia: __m128, b: __m128, ib: __m128) -> (__m128, __m128) {
        let take = _mm_or_ps(
            _mm_cmp_ps::<_CMP_GT_OQ>(b, a),
            _mm_cmp_ps::<_CMP_UNORD_Q>(b, b),
        );
        (_mm_blendv_ps(a, b, take), _mm_blendv_ps(ia, ib, take))
    }

    /// The even and odd elements of the 16 at `p`, in the lane order
    /// 0, 1, 4, 5, 2, 3, 6, 7 of the windows.
    #[inline(always)]
    unsafe fn pairs(p: *const f32) -> (__m256, __m256) {
        let (lo, hi) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
        (
            _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi),
            _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi),
        )
    }

    /// Window lanes back in order 0..8 (undoes the order of [`pairs`]).
    #[inline(always)]
    unsafe fn in_order(v: __m256) -> __m256 {
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn max_row(
        r0: &[f32],
        r1: &[f32],
        base: u32,
        w: u32,
        out: &mut [f32],
        mut at: Option<&mut [f32]>,
    ) {
        let ow = out.len();
        let k0 = _mm256_castsi256_ps(_mm256_set1_epi32(0));
        let k1 = _mm256_castsi256_ps(_mm256_set1_epi32(1));
        let k2 = _mm256_castsi256_ps(_mm256_set1_epi32(w as i32));
        let k3 = _mm256_castsi256_ps(_mm256_set1_epi32(w as i32 + 1));
        let step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let mut j = 0;
        while j + 8 <= ow {
            // SAFETY (all loads and stores): j + 8 <= ow, and the caller checked that
            // r0 and r1 hold 2·ow elements and at (when given) ow.
            let (a0, a1) = pairs(r0.as_ptr().add(2 * j));
            let (b0, b1) = pairs(r1.as_ptr().add(2 * j));
            let (top, itop) = best(a0, k0, a1, k1);
            let (bottom, ibottom) = best(b0, k2, b1, k3);
            let (m, i) = best(top, itop, bottom, ibottom);
            _mm256_storeu_ps(out.as_mut_ptr().add(j), in_order(m));
            if let Some(at) = at.as_mut() {
                let first = _mm256_add_epi32(_mm256_set1_epi32((base + 2 * j as u32) as i32), step);
                let i = _mm256_add_epi32(_mm256_castps_si256(in_order(i)), first);
                _mm256_storeu_ps(at.as_mut_ptr().add(j), _mm256_castsi256_ps(i));
            }
            j += 8;
        }
        if j + 4 <= ow {
            // The same on four windows (the 8×8 digits' rows).
            let k = |v: u32| _mm_castsi128_ps(_mm_set1_epi32(v as i32));
            let pairs = |p: *const f32| {
                let (lo, hi) = (_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
                (
                    _mm_shuffle_ps::<0b10_00_10_00>(lo, hi),
                    _mm_shuffle_ps::<0b11_01_11_01>(lo, hi),
                )
            };
            // SAFETY: j + 4 <= ow; the caller checked the lengths.
            let (a0, a1) = pairs(r0.as_ptr().add(2 * j));
            let (b0, b1) = pairs(r1.as_ptr().add(2 * j));
            let (top, itop) = best4(a0, k(0), a1, k(1));
            let (bottom, ibottom) = best4(b0, k(w), b1, k(w + 1));
            let (m, i) = best4(top, itop, bottom, ibottom);
            _mm_storeu_ps(out.as_mut_ptr().add(j), m);
            if let Some(at) = at.as_mut() {
                let first = _mm_add_epi32(
                    _mm_set1_epi32((base + 2 * j as u32) as i32),
                    _mm_setr_epi32(0, 2, 4, 6),
                );
                let i = _mm_add_epi32(_mm_castps_si128(i), first);
                _mm_storeu_ps(at.as_mut_ptr().add(j), _mm_castsi128_ps(i));
            }
            j += 4;
        }
        // (A call with nothing left was a tenth of the 8 × 8 digits' pooling.)
        if j < ow {
            super::max_row_scalar(r0, r1, base, w, j, out, at);
        }
    }

    /// `g` where `off == k`, +0 elsewhere.
    #[inline(always)]
    unsafe fn pick(g: __m256, off: __m256i, k: __m256i) -> __m256 {
        _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(off, k)))
    }

    /// Stores `left[0], right[0], left[1], right[1], ..` (16 floats) at `p`.
    #[inline(always)]
    unsafe fn store_pairs(p: *mut f32, left: __m256, right: __m256) {
        let (lo, hi) = (
            _mm256_unpacklo_ps(left, right),
            _mm256_unpackhi_ps(left, right),
        );
        _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(lo, hi));
        _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scatter_row(
        g: &[f32],
        at: &[f32],
        base: u32,
        w: u32,
        d0: &mut [f32],
        d1: &mut [f32],
    ) {
        let ow = g.len();
        let (k0, k1) = (_mm256_set1_epi32(0), _mm256_set1_epi32(1));
        let (k2, k3) = (_mm256_set1_epi32(w as i32), _mm256_set1_epi32(w as i32 + 1));
        let step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let mut j = 0;
        while j + 8 <= ow {
            // SAFETY (all loads and stores): j + 8 <= ow, and the caller checked that
            // at holds ow elements and d0, d1 2·ow each.
            let gv = _mm256_loadu_ps(g.as_ptr().add(j));
            let first = _mm256_add_epi32(_mm256_set1_epi32((base + 2 * j as u32) as i32), step);
            let off = _mm256_sub_epi32(_mm256_loadu_si256(at.as_ptr().add(j).cast()), first);
            let (left, right) = (pick(gv, off, k0), pick(gv, off, k1));
            store_pairs(d0.as_mut_ptr().add(2 * j), left, right);
            let (left, right) = (pick(gv, off, k2), pick(gv, off, k3));
            store_pairs(d1.as_mut_ptr().add(2 * j), left, right);
            j += 8;
        }
        if j + 4 <= ow {
            // SAFETY: j + 4 <= ow; the caller checked the lengths.
            let gv = _mm_loadu_ps(g.as_ptr().add(j));
            let first = _mm_add_epi32(
                _mm_set1_epi32((base + 2 * j as u32) as i32),
                _mm_setr_epi32(0, 2, 4, 6),
            );
            let off = _mm_sub_epi32(_mm_loadu_si128(at.as_ptr().add(j).cast()), first);
            let pick = |k: u32| {
                _mm_and_ps(
                    gv,
                    _mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_set1_epi32(k as i32))),
                )
            };
            for (d, left, right) in [
                (d0.as_mut_ptr(), pick(0), pick(1)),
                (d1.as_mut_ptr(), pick(w), pick(w + 1)),
            ] {
                let p = d.add(2 * j);
                _mm_storeu_ps(p, _mm_unpacklo_ps(left, right));
                _mm_storeu_ps(p.add(4), _mm_unpackhi_ps(left, right));
            }
            j += 4;
        }
        if j < ow {
            super::scatter_row_scalar(g, at, base, w, j, d0, d1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window maximum by a plain scan in row-major order (first maximum, last NaN).
    fn scan(r0: &[f32], r1: &[f32], w: u32, j: usize) -> (f32, u32) {
        let cands = [
            (r0[2 * j], 2 * j as u32),
            (r0[2 * j + 1], 2 * j as u32 + 1),
            (r1[2 * j], 2 * j as u32 + w),
            (r1[2 * j + 1], 2 * j as u32 + w + 1),
        ];
        let mut b = cands[0];
        for c in &cands[1..] {
            if c.0 > b.0 || c.0.is_nan() {
                b = *c;
            }
        }
        b
    }

    #[test]
    fn both_paths_match_a_row_major_scan_on_ties_and_nans() {
        let values = [
            1.0,
            1.0,
            -2.0,
            f32::NAN,
            0.5,
            3.0,
            3.0,
            -0.0,
            0.0,
            f32::NEG_INFINITY,
        ];
        for ow in [1, 3, 4, 5, 7, 8, 9, 12, 13, 16, 21] {
            let w = 2 * ow as u32 + 1;
            let row = |s: usize| {
                (0..w as usize)
                    .map(|i| values[(i * 7 + s) % 10])
                    .collect::<Vec<_>>()
            };
            for s in 0..10 {
                let (r0, r1) = (row(s), row(s * 3 + 1));
                let g: Vec<f32> = (0..ow).map(|i| i as f32 + 0.5).collect();
                let (mut out, mut at) = (vec![9.0; ow], vec![9.0; ow]);
                let (mut out_s, mut at_s) = (vec![9.0; ow], vec![9.0; ow]);
                max_row(&r0, &r1, 0, w, &mut out, Some(&mut at));
                max_row_scalar(&r0, &r1, 0, w, 0, &mut out_s, Some(&mut at_s));
                for j in 0..ow {
                    let (m, i) = scan(&r0, &r1, w, j);
                    assert_eq!(
                        (out[j].to_bits(), at[j].to_bits()),
                        (m.to_bits(), i),
                        "{ow} {s} {j}"
                    );
                    assert_eq!((out_s[j].to_bits(), at_s[j].to_bits()), (m.to_bits(), i));
                }
                let mut d = vec![9.0; 2 * w as usize];
                let mut d_s = vec![9.0; 2 * w as usize];
                let (d0, d1) = d.split_at_mut(w as usize);
                scatter_row(&g, &at, 0, w, d0, d1);
                let (d0, d1) = d_s.split_at_mut(w as usize);
                scatter_row_scalar(&g, &at, 0, w, 0, d0, d1);
                let mut want = vec![9.0; 2 * w as usize];
                for j in 0..ow {
                    for o in [2 * j, 2 * j + 1, w as usize + 2 * j, w as usize + 2 * j + 1] {
                        want[o] = 0.0;
                    }
                    want[at[j].to_bits() as usize] = g[j];
                }
                assert_eq!(d, want, "{ow} {s}");
                assert_eq!(d_s, want, "{ow} {s}");
            }
        }
    }
}
