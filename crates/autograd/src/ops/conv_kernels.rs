//! The arithmetic of 2-D convolution: im2col / col2im and the three GEMM-shaped products
//! (output, input gradient, weight gradient) that `conv2d`, `conv_transpose2d` and
//! their backward passes are built from.
//!
//! Every product runs over the whole batch at once: the column matrix of a group is
//! `[C/g · kh · kw, N · OH · OW]` (rows are kernel taps, columns are output pixels of
//! every sample), so one GEMM per group covers the batch and the GEMM sees long
//! operands instead of one short product per sample. The price is a permutation between
//! NCHW and the `[O, N · P]` layout of the product, a copy that is small next to it.

use crate::ops::gemm::{gemm_into, MatRef};
use crate::ops::planes;
use crate::parallel::for_each_piece;
use crate::pool;

/// The shape of one convolution seen from its "conv" side: an input `[n, c, h, w]`
/// correlated with a weight `[o, c / groups, kh, kw]` gives an output `[n, o, oh, ow]`.
/// A transposed convolution uses the same geometry with input and output swapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// Zeros added above and to the left (those below and to the right only change
    /// `oh` and `ow`).
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub groups: usize,
}

impl Geom {
    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Rows of a group's column matrix: `cg · kh · kw`.
    pub fn kg(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output pixels per sample and channel.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Columns of the column matrix: output pixels of the whole batch.
    pub fn np(&self) -> usize {
        self.n * self.p()
    }
}

/// The output columns `lo..hi` whose input column `ow · s + off` lies in `0..len`.
fn valid_range(off: isize, s: usize, len: usize, out: usize) -> (usize, usize) {
    let s = s as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi = if len as isize - off <= 0 {
        0
    } else {
        (len as isize - off + s - 1) / s
    };
    let hi = (hi as usize).min(out);
    ((lo as usize).min(hi), hi)
}

/// Walks one row of group `grp`'s column matrix (`row` = (ci · kh + ki) · kw + kj) for
/// one sample `n`: hands `f` each output row's offset in the column row, the matching
/// input row's offset in the sample's channel plane (`None` in the padding), the valid
/// output columns and the input column of the first one.
#[inline]
fn for_each_tap(d: &Geom, row: usize, mut f: impl FnMut(usize, Option<usize>, (usize, usize))) {
    let (ki, kj) = ((row / d.kw) % d.kh, row % d.kw);
    let off = (kj * d.dw) as isize - d.pw as isize;
    let (lo, hi) = valid_range(off, d.sw, d.w, d.ow);
    let first_iw = (lo as isize * d.sw as isize + off).max(0) as usize;
    for oh in 0..d.oh {
        let ih = (oh * d.sh + ki * d.dh) as isize - d.ph as isize;
        let src = (ih >= 0 && (ih as usize) < d.h).then(|| ih as usize * d.w + first_iw);
        f(oh * d.ow, src, (lo, hi));
    }
}

/// Writes group `grp`'s column matrix `[kg, n · p]` of `x` into `col`, one row per
/// task.
pub(crate) fn im2col(x: &[f32], d: &Geom, grp: usize, col: &mut [f32]) {
    let (np, p, hw, s) = (d.np(), d.p(), d.h * d.w, d.sw);
    for_each_piece(&mut col[..d.kg() * np], np, d.kg() * np, |row, dst| {
        let c = grp * d.cg() + row / (d.kh * d.kw);
        for n in 0..d.n {
            let plane = &x[(n * d.c + c) * hw..][..hw];
            let dst = &mut dst[n * p..][..p];
            for_each_tap(d, row, |at, src, (lo, hi)| {
                let dst = &mut dst[at..at + d.ow];
                let Some(src) = src else {
                    dst.fill(0.0);
                    return;
                };
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                let dst = &mut dst[lo..hi];
                if s == 1 {
                    dst.copy_from_slice(&plane[src..src + dst.len()]);
                } else {
                    for (j, v) in dst.iter_mut().enumerate() {
                        *v = plane[src + j * s];
                    }
                }
            });
        }
    });
}

/// Writes the image that group `grp`'s column matrix adds up to (the adjoint of
/// [`im2col`]) into the group's channel planes of `x`, one plane per task: each
/// element sums its taps in the order of the kernel, whatever the threads.
pub(crate) fn col2im(col: &[f32], d: &Geom, grp: usize, x: &mut [f32]) {
    let (np, p, hw, s, taps) = (d.np(), d.p(), d.h * d.w, d.sw, d.kh * d.kw);
    for_each_piece(x, hw, d.kg() * np, |plane, dst| {
        let (n, c) = (plane / d.c, plane % d.c);
        if c / d.cg() != grp {
            return;
        }
        dst.fill(0.0);
        let ci = c - grp * d.cg();
        for row in ci * taps..(ci + 1) * taps {
            let from_row = &col[row * np + n * p..][..p];
            for_each_tap(d, row, |at, src, (lo, hi)| {
                let Some(src) = src else { return };
                let from = &from_row[at + lo..at + hi];
                if s == 1 {
                    for (a, b) in dst[src..src + from.len()].iter_mut().zip(from) {
                        *a += b;
                    }
                } else {
                    for (j, v) in from.iter().enumerate() {
                        dst[src + j * s] += v;
                    }
                }
            });
        }
    });
}

/// `[n, ch, p]` → `[ch, n · p]`: an NCHW gradient or input laid out as the product's.
pub(crate) fn to_channel_major(x: &[f32], n: usize, ch: usize, p: usize) -> Vec<f32> {
    let mut out = pool::for_overwrite(n * ch * p);
    for_each_piece(&mut out, p, 2 * x.len(), |i, dst| {
        let (c, b) = (i / n, i % n);
        dst.copy_from_slice(&x[(b * ch + c) * p..][..p]);
    });
    out
}

/// The output `[n, o, oh, ow]` of the convolution of `x` by `w` (+ bias), and the
/// column matrices of every group (`[groups · kg, n · p]`) for the weight gradient.
pub(crate) fn conv_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    d: &Geom,
) -> (Vec<f32>, Vec<f32>) {
    let (kg, og, np, p) = (d.kg(), d.og(), d.np(), d.p());
    let mut col = pool::for_overwrite(d.groups * kg * np);
    let mut tmp = pool::for_overwrite(og * np);
    let mut out = pool::for_overwrite(d.n * d.o * p);
    for grp in 0..d.groups {
        let col_g = &mut col[grp * kg * np..][..kg * np];
        im2col(x, d, grp, col_g);
        gemm_into(
            og,
            np,
            kg,
            MatRef::rows(&w[grp * og * kg..][..og * kg], kg),
            MatRef::rows(col_g, np),
            &mut tmp,
            false,
        );
        let tmp = &tmp[..];
        for_each_piece(&mut out, p, 2 * og * np, |plane, dst| {
            let (s, o) = (plane / d.o, plane % d.o);
            if o / og != grp {
                return;
            }
            let b = bias.map_or(0.0, |b| b[o]);
            let src = &tmp[(o - grp * og) * np + s * p..][..p];
            for (y, v) in dst.iter_mut().zip(src) {
                *y = v + b;
            }
        });
    }
    pool::give(tmp);
    (out, col)
}

/// The gradient `[n, c, h, w]` reaching the input of a convolution by `w` from an
/// output gradient already in channel-major layout `[o, n · p]`.
pub(crate) fn conv_input_grad(g_cm: &[f32], w: &[f32], d: &Geom) -> Vec<f32> {
    let (kg, og, np) = (d.kg(), d.og(), d.np());
    // col2im writes every plane of its group.
    let mut dx = pool::for_overwrite(d.n * d.c * d.h * d.w);
    let mut dcol = pool::for_overwrite(kg * np);
    for grp in 0..d.groups {
        gemm_into(
            kg,
            np,
            og,
            MatRef::transposed(&w[grp * og * kg..][..og * kg], kg),
            MatRef::rows(&g_cm[grp * og * np..][..og * np], np),
            &mut dcol,
            false,
        );
        col2im(&dcol, d, grp, &mut dx);
    }
    pool::give(dcol);
    dx
}

/// The weight gradient `[o, kg]` from the column matrices and the channel-major
/// output gradient `[o, n · p]`.
pub(crate) fn conv_weight_grad(col: &[f32], g_cm: &[f32], d: &Geom) -> Vec<f32> {
    let (kg, og, np) = (d.kg(), d.og(), d.np());
    let mut dw = pool::for_overwrite(d.o * kg);
    for grp in 0..d.groups {
        gemm_into(
            og,
            kg,
            np,
            MatRef::rows(&g_cm[grp * og * np..][..og * np], np),
            MatRef::transposed(&col[grp * kg * np..][..kg * np], np),
            &mut dw[grp * og * kg..][..og * kg],
            false,
        );
    }
    dw
}

/// Sums an NCHW gradient over the batch and the pixels: one value per channel.
pub(crate) fn channel_sums(g: &[f32], n: usize, ch: usize, p: usize) -> Vec<f32> {
    let mut out = pool::zeros(ch);
    for_each_piece(&mut out, 1, g.len(), |c, o| {
        for b in 0..n {
            o[0] += planes::sum(&g[(b * ch + c) * p..][..p]);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, k: usize, s: usize, p: usize, dil: usize) -> Geom {
        let oh = (h + 2 * p - dil * (k - 1) - 1) / s + 1;
        let ow = (w + 2 * p - dil * (k - 1) - 1) / s + 1;
        Geom {
            n: 2,
            c: 2,
            h,
            w,
            o: 1,
            oh,
            ow,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            ph: p,
            pw: p,
            dh: dil,
            dw: dil,
            groups: 1,
        }
    }

    /// im2col by the definition, one element at a time.
    fn naive_im2col(x: &[f32], d: &Geom) -> Vec<f32> {
        let mut col = vec![0.0; d.kg() * d.np()];
        for c in 0..d.c {
            for ki in 0..d.kh {
                for kj in 0..d.kw {
                    let row = (c * d.kh + ki) * d.kw + kj;
                    for n in 0..d.n {
                        for oh in 0..d.oh {
                            for ow in 0..d.ow {
                                let ih = (oh * d.sh + ki * d.dh) as isize - d.ph as isize;
                                let iw = (ow * d.sw + kj * d.dw) as isize - d.pw as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < d.h && (iw as usize) < d.w
                                {
                                    col[row * d.np() + n * d.p() + oh * d.ow + ow] =
                                        x[((n * d.c + c) * d.h + ih as usize) * d.w + iw as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn im2col_matches_the_definition_and_col2im_is_its_adjoint() {
        for (h, w, k, s, p, dil) in [
            (5, 6, 3, 1, 1, 1),
            (7, 5, 3, 2, 1, 1),
            (6, 6, 2, 3, 2, 2),
            (4, 4, 1, 1, 0, 1),
        ] {
            let d = geom(h, w, k, s, p, dil);
            let x: Vec<f32> = (0..d.n * d.c * h * w)
                .map(|i| i as f32 * 0.5 - 3.0)
                .collect();
            let mut col = vec![f32::NAN; d.kg() * d.np()];
            im2col(&x, &d, 0, &mut col);
            assert_eq!(col, naive_im2col(&x, &d), "{h} {w} {k} {s} {p} {dil}");
            // <im2col(x), y> == <x, col2im(y)> for any y.
            let y: Vec<f32> = (0..col.len()).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut back = vec![0.0; x.len()];
            col2im(&y, &d, 0, &mut back);
            let lhs: f32 = col.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs}");
        }
    }
}
