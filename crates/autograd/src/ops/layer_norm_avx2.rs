//! Layer norm's rows in 8-lane AVX2 code (x86-64 only): the GPT step's layer norms,
//! forward and backward, written with intrinsics because LLVM left the portable loops
//! half in 4-lane and scalar code. Each lane does the portable code's operations in the
//! same order (nothing fused), so the results are the same bit for bit; a test checks.

use std::arch::x86_64::*;

use super::combine;

/// [`super::forward_rows`] in 8-lane AVX2 code for a norm with weight and bias (the GPT's):
/// lane k of each vector does what lane k of [`super::row_sum`]'s accumulator and element k of
/// each 8-wide chunk do there, the same operations in the same order (nothing fused),
/// so the bits are the same. Other norms run [`super::forward_rows`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn forward_rows(
    x: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
    d: usize,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) {
    let (Some(w), Some(b)) = (w, b) else {
        return super::forward_rows(x, y, stats, d, w, b, eps);
    };
    if d == 0 {
        return;
    }
    let full = d / 8 * 8;
    let rows = (x.len() / d).min(y.len() / d).min(stats.len() / 2);
    assert!(w.len() >= d && b.len() >= d);
    // Eight lanes summed as `row_sum` sums them: chunk by chunk, combined, then the tail.
    let lanes = |v: __m256| {
        let mut a = [0.0f32; 8];
        // SAFETY: `a` holds eight floats.
        _mm256_storeu_ps(a.as_mut_ptr(), v);
        combine(&a)
    };
    for row in 0..rows {
        let (xr, yr) = (&x[row * d..][..d], &mut y[row * d..][..d]);
        let mut acc = _mm256_setzero_ps();
        for j in (0..full).step_by(8) {
            // SAFETY: j + 8 ≤ full ≤ d, the length of xr, yr, w and b.
            acc = _mm256_add_ps(acc, _mm256_loadu_ps(xr.as_ptr().add(j)));
        }
        let mut sum = lanes(acc);
        for &v in &xr[full..] {
            sum += v;
        }
        let mu = sum / d as f32;
        let vmu = _mm256_set1_ps(mu);
        let mut acc = _mm256_setzero_ps();
        for j in (0..full).step_by(8) {
            // SAFETY: as above.
            let c = _mm256_sub_ps(_mm256_loadu_ps(xr.as_ptr().add(j)), vmu);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(c, c));
        }
        let mut sq = lanes(acc);
        for &v in &xr[full..] {
            sq += (v - mu) * (v - mu);
        }
        let var = sq / d as f32;
        let s = 1.0 / (var + eps).sqrt();
        stats[2 * row] = mu;
        stats[2 * row + 1] = s;
        let vs = _mm256_set1_ps(s);
        for j in (0..full).step_by(8) {
            // SAFETY: as above.
            let c = _mm256_sub_ps(_mm256_loadu_ps(xr.as_ptr().add(j)), vmu);
            let o = _mm256_add_ps(
                _mm256_mul_ps(_mm256_mul_ps(c, vs), _mm256_loadu_ps(w.as_ptr().add(j))),
                _mm256_loadu_ps(b.as_ptr().add(j)),
            );
            _mm256_storeu_ps(yr.as_mut_ptr().add(j), o);
        }
        for j in full..d {
            yr[j] = (xr[j] - mu) * s * w[j] + b[j];
        }
    }
}

/// [`super::backward_rows`] in 8-lane AVX2 code: lane k of each vector does what element k
/// of [`super::backward_rows`]'s 8-wide chunks does, with the same operations in the same
/// order (nothing fused), so the bits are the same.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn backward_rows(
    g: &[f32],
    x: &[f32],
    stats: &[f32],
    w: &[f32],
    d: usize,
    dx: Option<&mut [f32]>,
    partial: &mut [f32],
) {
    let Some(dx) = dx else {
        return super::backward_rows(g, x, stats, w, d, None, partial);
    };
    let (dw, db) = partial.split_at_mut(d);
    dw.fill(0.0);
    db.fill(0.0);
    let inv_d = 1.0 / d as f32;
    let full = d / 8 * 8;
    let rows = (g.len() / d.max(1))
        .min(x.len() / d.max(1))
        .min(stats.len() / 2);
    assert!(w.len() >= d && dx.len() >= rows * d);
    for row in 0..rows {
        let (gr, xr) = (&g[row * d..][..d], &x[row * d..][..d]);
        let dxr = &mut dx[row * d..][..d];
        let (mu, s) = (stats[2 * row], stats[2 * row + 1]);
        let (vmu, vs) = (_mm256_set1_ps(mu), _mm256_set1_ps(s));
        let (mut acc_g, mut acc_gx) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for j in (0..full).step_by(8) {
            // SAFETY: j + 8 ≤ full ≤ d, the length of every row slice and of dw, db, w.
            let gv = _mm256_loadu_ps(gr.as_ptr().add(j));
            let xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr.as_ptr().add(j)), vmu), vs);
            let pw = dw.as_mut_ptr().add(j);
            _mm256_storeu_ps(
                pw,
                _mm256_add_ps(_mm256_loadu_ps(pw), _mm256_mul_ps(gv, xh)),
            );
            let pb = db.as_mut_ptr().add(j);
            _mm256_storeu_ps(pb, _mm256_add_ps(_mm256_loadu_ps(pb), gv));
            let gw = _mm256_mul_ps(gv, _mm256_loadu_ps(w.as_ptr().add(j)));
            acc_g = _mm256_add_ps(acc_g, gw);
            acc_gx = _mm256_add_ps(acc_gx, _mm256_mul_ps(gw, xh));
        }
        let (mut lanes_g, mut lanes_gx) = ([0.0f32; 8], [0.0f32; 8]);
        // SAFETY: each array holds eight floats.
        _mm256_storeu_ps(lanes_g.as_mut_ptr(), acc_g);
        _mm256_storeu_ps(lanes_gx.as_mut_ptr(), acc_gx);
        let sums = (combine(&lanes_g), combine(&lanes_gx));
        let (sum_g, sum_gx) = super::backward_tail((gr, xr, w), (dw, db), (mu, s), full, sums);
        let (mg, mgx) = (sum_g * inv_d, sum_gx * inv_d);
        let (vmg, vmgx) = (_mm256_set1_ps(mg), _mm256_set1_ps(mgx));
        for j in (0..full).step_by(8) {
            // SAFETY: as above.
            let gw = _mm256_mul_ps(
                _mm256_loadu_ps(gr.as_ptr().add(j)),
                _mm256_loadu_ps(w.as_ptr().add(j)),
            );
            let xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr.as_ptr().add(j)), vmu), vs);
            let t = _mm256_sub_ps(_mm256_sub_ps(gw, vmg), _mm256_mul_ps(xh, vmgx));
            _mm256_storeu_ps(dxr.as_mut_ptr().add(j), _mm256_mul_ps(vs, t));
        }
        for j in full..d {
            dxr[j] = s * (gr[j] * w[j] - mg - (xr[j] - mu) * s * mgx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::has_avx2_fma;

    /// The AVX2 forward and backward give the portable ones' bits: a width with a tail (13) and
    /// one of whole vectors (16), with and without dx.
    #[test]
    fn avx2_rows_match_the_portable_ones_bit_for_bit() {
        if !has_avx2_fma() {
            return;
        }
        for d in [13usize, 16] {
            let rows = 5;
            let wave = |i: usize, a: f32| ((i as f32 * a).sin() * 2.0) + 0.1;
            let g: Vec<f32> = (0..rows * d).map(|i| wave(i, 0.37)).collect();
            let x: Vec<f32> = (0..rows * d).map(|i| wave(i, 0.91)).collect();
            let w: Vec<f32> = (0..d).map(|i| wave(i, 1.3)).collect();
            let bias: Vec<f32> = (0..d).map(|i| wave(i, 0.23)).collect();
            let mut stats = vec![0.0; 2 * rows];
            let mut y = vec![0.0; rows * d];
            super::super::forward_rows(&x, &mut y, &mut stats, d, Some(&w), Some(&bias), 1e-5);
            let (mut stats_v, mut y_v) = (vec![1.0; 2 * rows], vec![1.0; rows * d]);
            // SAFETY: AVX2 and FMA were detected above.
            unsafe { forward_rows(&x, &mut y_v, &mut stats_v, d, Some(&w), Some(&bias), 1e-5) };
            let (mut dx_p, mut part_p) = (vec![0.0; rows * d], vec![0.0; 2 * d]);
            let (mut dx_v, mut part_v) = (vec![1.0; rows * d], vec![1.0; 2 * d]);
            super::super::backward_rows(&g, &x, &stats, &w, d, Some(&mut dx_p), &mut part_p);
            // SAFETY: AVX2 and FMA were detected above.
            unsafe { backward_rows(&g, &x, &stats, &w, d, Some(&mut dx_v), &mut part_v) };
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&y_v), "y, d = {d}");
            assert_eq!(bits(&stats), bits(&stats_v), "mean and rstd, d = {d}");
            assert_eq!(bits(&dx_p), bits(&dx_v), "dx, d = {d}");
            assert_eq!(bits(&part_p), bits(&part_v), "dγ, dβ, d = {d}");
            let mut part_n = vec![1.0; 2 * d];
            // SAFETY: as above.
            unsafe { backward_rows(&g, &x, &stats, &w, d, None, &mut part_n) };
            assert_eq!(bits(&part_p), bits(&part_n), "without dx, d = {d}");
        }
    }
}
