//! `conv2d` and its backward pass one sample at a time, for images large enough that
//! one sample's products are long (the CIFAR-shaped step's 32×32 and 16×16 planes).
//!
//! The batched kernels of `conv_kernels` build the column matrix of the whole batch
//! (9 MB for the CIFAR step's second convolution), which leaves the caches between
//! im2col and the GEMM's packing, must be kept for the weight gradient, and needs
//! NCHW ↔ `[O, N · P]` copies on both sides of every product. Here a sample's column
//! matrix `[groups · kg, p]` is built in a scratch buffer that stays in the L2 cache,
//! the product writes the sample's NCHW output planes in place (`W · col`), the output
//! gradient of a sample is already the `[O, p]` operand the backward products read,
//! and backward rebuilds the columns instead of keeping them.
//!
//! Threads take whole samples; the products inside run on the calling thread (a
//! nested parallel region does). The weight gradient sums the samples of each fixed
//! run of [`SAMPLES_PER_PIECE`] samples, then adds the runs in order, so its bits do
//! not depend on the thread count.

use crate::ops::conv_kernels::{col2im_plane, im2col_row, zero_padding, Geom};
use crate::ops::gemm::{gemm_into, MatRef};
use crate::parallel::{for_each_piece, for_each_piece2};
use crate::pool;

/// Samples whose weight-gradient contributions one piece sums before the pieces are
/// added in order: fixed, so the summation order does not depend on the threads.
const SAMPLES_PER_PIECE: usize = 4;

/// Whether `conv2d` runs sample by sample: when a sample's output planes are large
/// enough to make its products long. Smaller images (the 8×8 digits) keep the batched
/// products, which give the GEMM longer operands than one sample would.
pub(crate) fn by_sample(d: &Geom) -> bool {
    d.p() >= 128
}

/// One sample's column matrix `[groups · kg, p]` of its input `x` (`[c, h, w]`).
fn im2col_sample(x: &[f32], d: &Geom, col: &mut [f32]) {
    let (p, hw, taps) = (d.p(), d.h * d.w, d.kh * d.kw);
    for (row, dst) in col.chunks_exact_mut(p).enumerate() {
        im2col_row(&x[(row / taps) * hw..][..hw], d, row, dst);
    }
}

/// The output `[n, o, oh, ow]` of the convolution of `x` by `w` (+ bias).
pub(crate) fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: &Geom) -> Vec<f32> {
    let (kg, og, p, chw) = (d.kg(), d.og(), d.p(), d.c * d.h * d.w);
    let mut out = pool::for_overwrite(d.n * d.o * p);
    let work = d.n * d.o * kg * p;
    for_each_piece(&mut out, d.o * p, work, |n, out| {
        let mut col = pool::for_overwrite(d.groups * kg * p);
        im2col_sample(&x[n * chw..][..chw], d, &mut col);
        for grp in 0..d.groups {
            gemm_into(
                og,
                p,
                kg,
                MatRef::rows(&w[grp * og * kg..][..og * kg], kg),
                MatRef::rows(&col[grp * kg * p..][..kg * p], p),
                &mut out[grp * og * p..][..og * p],
                false,
            );
        }
        pool::give(col);
        if let Some(b) = bias {
            for (plane, &v) in out.chunks_exact_mut(p).zip(b) {
                plane.iter_mut().for_each(|y| *y += v);
            }
        }
    });
    out
}

/// The gradients reaching the input (`[n, c, h, w]`, when `want_dx`) and the weight
/// (`[o, kg]`, when `want_dw`) of the convolution of `x` by `w`, from the output
/// gradient `g` (`[n, o, oh, ow]`).
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    d: &Geom,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (kg, og, p, chw) = (d.kg(), d.og(), d.p(), d.c * d.h * d.w);
    let okg = d.o * kg;
    let pieces = d.n.div_ceil(SAMPLES_PER_PIECE);
    let mut dx = want_dx.then(|| pool::for_overwrite(d.n * chw));
    let mut partial = want_dw.then(|| pool::for_overwrite(pieces * okg));
    // Piece `i`: samples `i · SAMPLES_PER_PIECE ..`, their input gradients into `dx`
    // (those samples' planes) and the sum of their weight gradients into `dw`.
    let run = |i: usize, mut dx: Option<&mut [f32]>, mut dw: Option<&mut [f32]>| {
        let mut col = pool::for_overwrite(d.groups * kg * p);
        let first = i * SAMPLES_PER_PIECE;
        for n in first..(first + SAMPLES_PER_PIECE).min(d.n) {
            let g = &g[n * d.o * p..][..d.o * p];
            if let Some(dw) = dw.as_deref_mut() {
                im2col_sample(&x[n * chw..][..chw], d, &mut col);
                for grp in 0..d.groups {
                    gemm_into(
                        og,
                        kg,
                        p,
                        MatRef::rows(&g[grp * og * p..][..og * p], p),
                        MatRef::transposed(&col[grp * kg * p..][..kg * p], p),
                        &mut dw[grp * og * kg..][..og * kg],
                        n != first,
                    );
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                for grp in 0..d.groups {
                    gemm_into(
                        kg,
                        p,
                        og,
                        MatRef::transposed(&w[grp * og * kg..][..og * kg], kg),
                        MatRef::rows(&g[grp * og * p..][..og * p], p),
                        &mut col[grp * kg * p..][..kg * p],
                        false,
                    );
                }
                let taps = d.kh * d.kw;
                for (row, sample) in col.chunks_exact_mut(p).enumerate() {
                    zero_padding(sample, d, row);
                }
                let dx = &mut dx[(n - first) * chw..][..chw];
                for (c, plane) in dx.chunks_exact_mut(d.h * d.w).enumerate() {
                    col2im_plane(&col[c * taps * p..], p, d, plane);
                }
            }
        }
        pool::give(col);
    };
    let work = d.n * d.o * kg * p;
    let per = SAMPLES_PER_PIECE;
    match (dx.as_deref_mut(), partial.as_deref_mut()) {
        (Some(dx), Some(dw)) => for_each_piece2((dx, per * chw), (dw, okg), work, |i, dx, dw| {
            run(i, Some(dx), Some(dw))
        }),
        (Some(dx), None) => for_each_piece(dx, per * chw, work, |i, dx| run(i, Some(dx), None)),
        (None, Some(dw)) => for_each_piece(dw, okg, work, |i, dw| run(i, None, Some(dw))),
        (None, None) => {}
    }
    let dw = partial.map(|partial| {
        if pieces == 1 {
            return partial;
        }
        // The pieces' sums, added in order.
        let mut dw = pool::copy_of(&partial[..okg]);
        for piece in partial[okg..].chunks_exact(okg) {
            dw.iter_mut().zip(piece).for_each(|(a, b)| *a += b);
        }
        pool::give(partial);
        dw
    });
    (dx, dw)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ops::conv_kernels::{
        conv_forward, conv_input_grad, conv_weight_grad, to_channel_major,
    };

    /// Element by element within 1e-4 relative (shared with `conv_winograd`'s tests).
    pub(crate) fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// Sample by sample gives what the batched kernels give, for "same" and other
    /// geometries, groups, and a batch that leaves a short last piece.
    #[test]
    fn matches_the_batched_kernels() {
        // (h, w, k, stride, padding, groups)
        for (h, w, k, s, pad, groups) in [
            (12, 12, 3, 1, 1, 2),
            (14, 13, 3, 1, 0, 1),
            (24, 25, 3, 2, 1, 1),
        ] {
            let (n, c, o) = (5, 4, 6);
            let oh = (h + 2 * pad - k) / s + 1;
            let ow = (w + 2 * pad - k) / s + 1;
            let d = Geom {
                n,
                c,
                h,
                w,
                o,
                oh,
                ow,
                kh: k,
                kw: k,
                sh: s,
                sw: s,
                ph: pad,
                pw: pad,
                dh: 1,
                dw: 1,
                groups,
            };
            assert!(by_sample(&d));
            let wave = |len: usize, f: f32| {
                (0..len)
                    .map(|i| (i as f32 * f).sin() * 2.0)
                    .collect::<Vec<f32>>()
            };
            let x = wave(n * c * h * w, 0.37);
            let wt = wave(o * d.kg(), 0.91);
            let b = wave(o, 1.3);
            let g = wave(n * o * d.p(), 0.53);
            let (want, col) = conv_forward(&x, &wt, Some(&b), &d);
            close(&forward(&x, &wt, Some(&b), &d), &want, "forward");
            let g_cm = to_channel_major(&g, n, o, d.p());
            let want_dx = conv_input_grad(&g_cm, &wt, &d);
            let want_dw = conv_weight_grad(&col, &g_cm, &d);
            let (dx, dw) = backward(&x, &wt, &g, &d, true, true);
            close(&dx.unwrap(), &want_dx, "dx");
            close(&dw.unwrap(), &want_dw, "dw");
            let (dx, dw) = backward(&x, &wt, &g, &d, true, false);
            assert!(dw.is_none());
            close(&dx.unwrap(), &want_dx, "dx alone");
            let (dx, dw) = backward(&x, &wt, &g, &d, false, true);
            assert!(dx.is_none());
            close(&dw.unwrap(), &want_dw, "dw alone");
        }
    }
}
