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
    let (np, p, hw) = (d.np(), d.p(), d.h * d.w);
    for_each_piece(&mut col[..d.kg() * np], np, d.kg() * np, |row, dst| {
        let c = grp * d.cg() + row / (d.kh * d.kw);
        let tap = is_shifted(d).then(|| Tap::of(d, row % (d.kh * d.kw)));
        for n in 0..d.n {
            let plane = &x[(n * d.c + c) * hw..][..hw];
            im2col_row_with(plane, d, row, tap.as_ref(), &mut dst[n * p..][..p]);
        }
    });
}

/// One sample's `p` entries of column-matrix row `row` (only its kernel tap,
/// `row % (kh · kw)`, matters), from the sample's input channel plane of that row.
pub(crate) fn im2col_row(plane: &[f32], d: &Geom, row: usize, dst: &mut [f32]) {
    let tap = is_shifted(d).then(|| Tap::of(d, row % (d.kh * d.kw)));
    im2col_row_with(plane, d, row, tap.as_ref(), dst);
}

/// [`im2col_row`] given the row's [`Tap`] when `d` [`is_shifted`].
fn im2col_row_with(plane: &[f32], d: &Geom, row: usize, tap: Option<&Tap>, dst: &mut [f32]) {
    if let Some(tap) = tap {
        let (lo, hi) = tap.span(d);
        if hi > lo {
            let from = (lo as isize + tap.shift) as usize;
            dst[lo..hi].copy_from_slice(&plane[from..from + hi - lo]);
        }
        dst[..tap.rows.0 * d.ow].fill(0.0);
        dst[tap.rows.1 * d.ow..].fill(0.0);
        zero_padding_columns(dst, d, tap);
        return;
    }
    let s = d.sw;
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
            for (v, j) in dst.iter_mut().zip((src..).step_by(s)) {
                *v = plane[j];
            }
        }
    });
}

/// Whether `d` is a stride-1 convolution whose output rows are as wide as its input
/// rows (a "same" convolution): then a column-matrix row of one sample is its channel
/// plane shifted by a constant, except for the rows and columns that fall in the
/// padding, and im2col / col2im move whole planes at once instead of one output row at
/// a time.
fn is_shifted(d: &Geom) -> bool {
    d.sh == 1 && d.sw == 1 && d.ow == d.w
}

/// One kernel tap of a [`is_shifted`] convolution: the shift of the plane, the valid
/// output rows and the valid output columns.
#[derive(Clone, Copy)]
struct Tap {
    shift: isize,
    rows: (usize, usize),
    cols: (usize, usize),
}

impl Tap {
    /// Tap `t` (= ki · kw + kj) of `d`.
    fn of(d: &Geom, t: usize) -> Tap {
        let off_h = ((t / d.kw) * d.dh) as isize - d.ph as isize;
        let off_w = ((t % d.kw) * d.dw) as isize - d.pw as isize;
        Tap {
            shift: off_h * d.w as isize + off_w,
            rows: valid_range(off_h, 1, d.h, d.oh),
            cols: valid_range(off_w, 1, d.w, d.ow),
        }
    }

    /// The range of output positions `t` (in one sample's plane) of the valid rows
    /// whose input position `t + shift` lies in the plane: a superset of the valid
    /// positions that also holds the padding columns between the valid rows; `(0, 0)`
    /// when no position is valid (a plane smaller than the kernel's reach).
    fn span(&self, d: &Geom) -> (usize, usize) {
        let hw = (d.h * d.w) as isize;
        let lo = ((self.rows.0 * d.ow) as isize).max(-self.shift);
        let hi = ((self.rows.1 * d.ow) as isize).min(hw - self.shift);
        if hi <= lo {
            return (0, 0);
        }
        (lo as usize, hi as usize)
    }
}

/// Zeroes the columns outside `tap.cols` of the tap's valid rows of one sample's plane.
fn zero_padding_columns(plane: &mut [f32], d: &Geom, tap: &Tap) {
    let (lo, hi) = tap.cols;
    if (lo == 0 && hi == d.ow) || tap.rows.0 >= tap.rows.1 {
        return;
    }
    // Column by column: mostly one, a strided run of stores.
    let rows = &mut plane[tap.rows.0 * d.ow..tap.rows.1 * d.ow];
    for c in (0..lo).chain(hi..d.ow) {
        rows[c..].iter_mut().step_by(d.ow).for_each(|v| *v = 0.0);
    }
}

/// Writes the image that group `grp`'s column matrix adds up to (the adjoint of
/// [`im2col`]) into the group's channel planes of `x`, one plane per task: each
/// element sums its taps in the order of the kernel, whatever the threads.
///
/// `col`'s entries that fall in the padding may be overwritten with zeros (see
/// [`col2im_plane`]).
pub(crate) fn col2im(col: &mut [f32], d: &Geom, grp: usize, x: &mut [f32]) {
    let (np, p, hw, taps) = (d.np(), d.p(), d.h * d.w, d.kh * d.kw);
    let col = &mut col[..d.kg() * np];
    if is_shifted(d) {
        for_each_piece(col, np, d.kg() * np, |row, dst| {
            let tap = Tap::of(d, row % taps);
            dst.chunks_exact_mut(p)
                .for_each(|sample| zero_padding_columns(sample, d, &tap));
        });
    }
    let col = &*col;
    for_each_piece(x, hw, d.kg() * np, |plane, dst| {
        let (n, c) = (plane / d.c, plane % d.c);
        if c / d.cg() == grp {
            let ci = c - grp * d.cg();
            col2im_plane(&col[ci * taps * np + n * p..], np, d, dst);
        }
    });
}

/// Overwrites with zeros one sample's entries of column-matrix row `row` that fall in
/// the padding, when `d` [`is_shifted`] (see [`col2im_plane`]).
pub(crate) fn zero_padding(sample: &mut [f32], d: &Geom, row: usize) {
    if is_shifted(d) {
        zero_padding_columns(sample, d, &Tap::of(d, row % (d.kh * d.kw)));
    }
}

/// Writes one input-channel plane `dst` of one sample: the sum of its `kh · kw` taps,
/// in the kernel's order, whose `p` entries start at `col[t · stride]` for tap `t`.
///
/// For a "same" stride-1 convolution the padding entries must have been zeroed by
/// [`zero_padding`]: each tap then adds a whole shifted plane at once, and the zeros
/// it adds to the elements its padding columns land on change no bit (a sum that
/// starts at +0 is never −0, and x + 0 = x otherwise).
pub(crate) fn col2im_plane(col: &[f32], stride: usize, d: &Geom, dst: &mut [f32]) {
    dst.fill(0.0);
    let (p, s) = (d.p(), d.sw);
    for t in 0..d.kh * d.kw {
        let from_row = &col[t * stride..][..p];
        if is_shifted(d) {
            let tap = Tap::of(d, t);
            let (lo, hi) = tap.span(d);
            if hi > lo {
                let to = (lo as isize + tap.shift) as usize;
                add_into(&mut dst[to..to + hi - lo], &from_row[lo..hi]);
            }
            continue;
        }
        for_each_tap(d, t, |at, src, (lo, hi)| {
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
}

/// `dst[i] += src[i]`, eight lanes at a time.
fn add_into(dst: &mut [f32], src: &[f32]) {
    crate::cpu::with_avx2_fma(|| {
        for (a, b) in dst.iter_mut().zip(src) {
            *a += b;
        }
    })
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
        col2im(&mut dcol, d, grp, &mut dx);
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

    /// col2im by the definition: each column entry added to its input element, in
    /// the order of the taps (the order col2im promises).
    fn naive_col2im(col: &[f32], d: &Geom) -> Vec<f32> {
        let mut x = vec![0.0; d.n * d.c * d.h * d.w];
        for n in 0..d.n {
            for c in 0..d.c {
                for ki in 0..d.kh {
                    for kj in 0..d.kw {
                        let row = (c * d.kh + ki) * d.kw + kj;
                        for oh in 0..d.oh {
                            for ow in 0..d.ow {
                                let ih = (oh * d.sh + ki * d.dh) as isize - d.ph as isize;
                                let iw = (ow * d.sw + kj * d.dw) as isize - d.pw as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < d.h && (iw as usize) < d.w
                                {
                                    x[((n * d.c + c) * d.h + ih as usize) * d.w + iw as usize] +=
                                        col[row * d.np() + n * d.p() + oh * d.ow + ow];
                                }
                            }
                        }
                    }
                }
            }
        }
        x
    }

    #[test]
    fn im2col_matches_the_definition_and_col2im_is_its_adjoint() {
        for (h, w, k, s, p, dil) in [
            (5, 6, 3, 1, 1, 1),
            (6, 5, 5, 1, 2, 1),
            (7, 6, 3, 1, 2, 2),
            (3, 3, 3, 1, 1, 1),
            (7, 5, 3, 2, 1, 1),
            (6, 6, 2, 3, 2, 2),
            (4, 4, 1, 1, 0, 1),
            (1, 1, 3, 1, 1, 1),
            (1, 2, 3, 1, 1, 1),
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
            col2im(&mut y.clone(), &d, 0, &mut back);
            assert_eq!(back, naive_col2im(&y, &d), "{h} {w} {k} {s} {p} {dil}");
            let lhs: f32 = col.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} {rhs}");
        }
    }
}
