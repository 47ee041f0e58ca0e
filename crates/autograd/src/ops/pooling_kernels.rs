//! The loops of 2-D pooling, one plane at a time: a general walk over any windows
//! (padding, ceil mode, adaptive) and a fast path for the common kernel 2, stride 2,
//! no padding, where every window is four whole elements.
//!
//! Max pooling's forward writes each window's arg-max (the first maximum; a NaN wins,
//! the last one, as PyTorch's CPU kernel) and its backward scatters through it, writing
//! every input-gradient element once (the 2x2 rows are in `pool2x2`). Planes are
//! independent, so `parallel::for_each_piece` deals them to threads without changing a
//! bit.

use crate::ops::pool2x2;

/// How windows run along one axis.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub len: usize,
    pub out: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub adaptive: bool,
}

impl Axis {
    /// The window of output index `i`: input range `start..end` (clipped to the input)
    /// and its size counting padding.
    #[inline]
    fn window(&self, i: usize) -> (usize, usize, usize) {
        if self.adaptive {
            let start = i * self.len / self.out;
            let end = ((i + 1) * self.len).div_ceil(self.out);
            return (start, end, end - start);
        }
        let start = (i * self.s) as isize - self.p as isize;
        let end = (start + self.k as isize).min((self.len + self.p) as isize);
        let size = (end - start) as usize;
        let start = start.max(0) as usize;
        let end = (end.max(0) as usize).min(self.len);
        (start.min(end), end, size)
    }

    /// Whether every window is two whole elements, two apart.
    fn is_pairs(&self) -> bool {
        !self.adaptive && self.k == 2 && self.s == 2 && self.p == 0 && 2 * self.out <= self.len
    }
}

/// The kind of pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Max,
    Avg { count_include_pad: bool },
}

/// A pooling of `planes` planes of `[h, w]`, with its two axes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeom {
    pub planes: usize,
    pub rows: Axis,
    pub cols: Axis,
    pub kind: Kind,
}

/// Whether `v` replaces `best` as a window's maximum: larger, or NaN. (`|`, not `||`:
/// both tests are cheap, and a branch on random data mispredicts.)
#[inline(always)]
fn beats(v: f32, best: f32) -> bool {
    (v > best) | v.is_nan()
}

impl PoolGeom {
    pub fn in_plane(&self) -> usize {
        self.rows.len * self.cols.len
    }
    pub fn out_plane(&self) -> usize {
        self.rows.out * self.cols.out
    }
    fn is_2x2(&self) -> bool {
        self.rows.is_pairs() && self.cols.is_pairs()
    }

    /// The divisor of an average window.
    fn divisor(
        &self,
        (h0, h1, hs): (usize, usize, usize),
        (w0, w1, ws): (usize, usize, usize),
    ) -> f32 {
        match self.kind {
            Kind::Avg {
                count_include_pad: true,
            } => (hs * ws) as f32,
            _ => ((h1 - h0) * (w1 - w0)) as f32,
        }
    }

    /// The in-plane index of the window's maximum (first one, or last NaN); None for
    /// an empty window.
    fn argmax(&self, x: &[f32], rows: (usize, usize), cols: (usize, usize)) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for h in rows.0..rows.1 {
            for (w, &v) in x[h * self.cols.len..][cols.0..cols.1].iter().enumerate() {
                match best {
                    Some((_, m)) if !beats(v, m) => {}
                    _ => best = Some((h * self.cols.len + cols.0 + w, v)),
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// Pools one input plane `x` into the output plane `out`.
    pub fn forward_plane(&self, x: &[f32], out: &mut [f32]) {
        match (self.kind, self.is_2x2()) {
            (Kind::Max, _) => self.max_plane(x, out, None),
            (Kind::Avg { .. }, true) => self.avg_2x2(x, out),
            (Kind::Avg { .. }, false) => self.avg_general(x, out),
        }
    }

    /// Max-pools one plane into `out` and, when given, each window's arg-max (an
    /// in-plane index, `u32` bits in an `f32`; `NO_INDEX` for an empty window) into
    /// `at`.
    pub fn max_plane(&self, x: &[f32], out: &mut [f32], at: Option<&mut [f32]>) {
        if self.is_2x2() {
            self.max_2x2(x, out, at)
        } else {
            self.max_general(x, out, at)
        }
    }

    fn max_2x2(&self, x: &[f32], out: &mut [f32], mut at: Option<&mut [f32]>) {
        let (w, ow) = (self.cols.len, self.cols.out);
        for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
            let r0 = &x[2 * oy * w..][..2 * ow];
            let r1 = &x[(2 * oy + 1) * w..][..2 * ow];
            let ats = at.as_mut().map(|a| &mut a[oy * ow..][..ow]);
            pool2x2::max_row(r0, r1, (2 * oy * w) as u32, w as u32, o, ats);
        }
    }

    fn max_general(&self, x: &[f32], out: &mut [f32], mut at: Option<&mut [f32]>) {
        for oy in 0..self.rows.out {
            let rw = self.rows.window(oy);
            for ox in 0..self.cols.out {
                let cw = self.cols.window(ox);
                let best = self.argmax(x, (rw.0, rw.1), (cw.0, cw.1));
                let o = oy * self.cols.out + ox;
                out[o] = best.map_or(f32::NEG_INFINITY, |i| x[i]);
                if let Some(at) = at.as_mut() {
                    at[o] = f32::from_bits(best.map_or(NO_INDEX, |i| i as u32));
                }
            }
        }
    }

    fn avg_2x2(&self, x: &[f32], out: &mut [f32]) {
        let (w, ow) = (self.cols.len, self.cols.out);
        for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
            let r0 = &x[2 * oy * w..][..2 * ow];
            let r1 = &x[(2 * oy + 1) * w..][..2 * ow];
            let quads = r0.chunks_exact(2).zip(r1.chunks_exact(2));
            for (o, (a, b)) in o.iter_mut().zip(quads) {
                *o = ((a[0] + a[1]) + (b[0] + b[1])) / 4.0;
            }
        }
    }

    fn avg_general(&self, x: &[f32], out: &mut [f32]) {
        let w = self.cols.len;
        for oy in 0..self.rows.out {
            let rw = self.rows.window(oy);
            for ox in 0..self.cols.out {
                let cw = self.cols.window(ox);
                let mut sum = 0.0;
                for h in rw.0..rw.1 {
                    sum += x[h * w + cw.0..h * w + cw.1].iter().sum::<f32>();
                }
                let divisor = self.divisor(rw, cw);
                out[oy * self.cols.out + ox] = if divisor > 0.0 { sum / divisor } else { 0.0 };
            }
        }
    }

    /// Writes one plane's input gradient `dx` (every element) of max pooling: each
    /// window's gradient `g` goes to its saved arg-max `at`.
    pub fn scatter_max_plane(&self, at: &[f32], g: &[f32], dx: &mut [f32]) {
        if !self.is_2x2() {
            dx.fill(0.0);
            for (&i, &gv) in at.iter().zip(g) {
                if let Some(d) = dx.get_mut(i.to_bits() as usize) {
                    *d += gv;
                }
            }
            return;
        }
        // Windows do not overlap: every element is written once, branch-free.
        let (w, oh, ow) = (self.cols.len, self.rows.out, self.cols.out);
        for oy in 0..oh {
            let (d0, d1) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
            let (gs, ats) = (&g[oy * ow..][..ow], &at[oy * ow..][..ow]);
            pool2x2::scatter_row(gs, ats, (2 * oy * w) as u32, w as u32, d0, d1);
            self.zero_leftovers(oy, dx);
        }
        dx[2 * oh * w..].fill(0.0);
    }

    /// Zeroes the column an odd width leaves out of output row `oy`'s windows.
    fn zero_leftovers(&self, oy: usize, dx: &mut [f32]) {
        let (w, ow) = (self.cols.len, self.cols.out);
        dx[2 * oy * w + 2 * ow..(2 * oy + 1) * w].fill(0.0);
        dx[(2 * oy + 1) * w + 2 * ow..(2 * oy + 2) * w].fill(0.0);
    }

    /// Writes one plane's input gradient `dx` (every element) of average pooling.
    pub fn avg_backward_plane(&self, g: &[f32], dx: &mut [f32]) {
        let (w, oh, ow) = (self.cols.len, self.rows.out, self.cols.out);
        if self.is_2x2() {
            for oy in 0..oh {
                let (d0, d1) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
                let quads = d0[..2 * ow]
                    .chunks_exact_mut(2)
                    .zip(d1[..2 * ow].chunks_exact_mut(2));
                for ((d0, d1), &gv) in quads.zip(&g[oy * ow..][..ow]) {
                    let v = gv / 4.0;
                    (d0[0], d0[1], d1[0], d1[1]) = (v, v, v, v);
                }
                self.zero_leftovers(oy, dx);
            }
            dx[2 * oh * w..].fill(0.0);
            return;
        }
        dx.fill(0.0);
        for oy in 0..oh {
            let rw = self.rows.window(oy);
            for ox in 0..ow {
                let cw = self.cols.window(ox);
                let v = g[oy * ow + ox] / self.divisor(rw, cw);
                for h in rw.0..rw.1 {
                    dx[h * w + cw.0..h * w + cw.1]
                        .iter_mut()
                        .for_each(|e| *e += v);
                }
            }
        }
    }
}

/// The arg-max of an empty window (only adaptive or padded windows can be empty).
const NO_INDEX: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, kind: Kind, ceil: bool) -> PoolGeom {
        let axis = |len: usize| Axis {
            len,
            out: if ceil { len.div_ceil(2) } else { len / 2 },
            k: 2,
            s: 2,
            p: 0,
            adaptive: false,
        };
        PoolGeom {
            planes: 1,
            rows: axis(h),
            cols: axis(w),
            kind,
        }
    }

    /// Max-pool backward by the definition: find each window's arg-max in the input.
    fn naive_max_backward(d: &PoolGeom, x: &[f32], g: &[f32]) -> Vec<f32> {
        let mut dx = vec![0.0; x.len()];
        for oy in 0..d.rows.out {
            let rw = d.rows.window(oy);
            for ox in 0..d.cols.out {
                let cw = d.cols.window(ox);
                if let Some(i) = d.argmax(x, (rw.0, rw.1), (cw.0, cw.1)) {
                    dx[i] += g[oy * d.cols.out + ox];
                }
            }
        }
        dx
    }

    #[test]
    fn the_2x2_path_matches_the_general_one_on_ties_nans_and_odd_sizes() {
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
        let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
        for (h, w) in [(4, 4), (5, 7), (2, 3), (6, 2)] {
            let x: Vec<f32> = (0..h * w)
                .map(|i| values[(i * 7 + h) % values.len()])
                .collect();
            let d = geom(h, w, Kind::Max, false);
            assert!(d.is_2x2());
            let n = d.out_plane();
            let g: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
            let (mut fast, mut slow) = (vec![9.0; n], vec![9.0; n]);
            let (mut at_fast, mut at_slow) = (vec![9.0; n], vec![9.0; n]);
            d.max_2x2(&x, &mut fast, Some(&mut at_fast));
            d.max_general(&x, &mut slow, Some(&mut at_slow));
            assert_eq!(bits(&fast), bits(&slow), "{h}x{w}");
            assert_eq!(bits(&at_fast), bits(&at_slow), "{h}x{w}");
            let mut dx = vec![9.0; h * w];
            d.scatter_max_plane(&at_fast, &g, &mut dx);
            assert_eq!(dx, naive_max_backward(&d, &x, &g), "{h}x{w}");

            let d = geom(
                h,
                w,
                Kind::Avg {
                    count_include_pad: true,
                },
                false,
            );
            d.avg_2x2(&x, &mut fast);
            d.avg_general(&x, &mut slow);
            assert_eq!(bits(&fast), bits(&slow), "{h}x{w}");
            let mut dx_fast = vec![9.0; h * w];
            d.avg_backward_plane(&g, &mut dx_fast);
            let mut want = vec![0.0; h * w];
            for oy in 0..d.rows.out {
                for ox in 0..d.cols.out {
                    for (dy, dxo) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        want[(2 * oy + dy) * w + 2 * ox + dxo] += g[oy * d.cols.out + ox] / 4.0;
                    }
                }
            }
            assert_eq!(dx_fast, want, "{h}x{w}");
            // ceil mode leaves a partial window on odd sizes: the general path runs.
            assert_eq!(
                geom(h, w, Kind::Max, true).is_2x2(),
                h % 2 == 0 && w % 2 == 0
            );
        }
    }

    #[test]
    fn max_picks_the_first_maximum_and_nan_wins() {
        let d = geom(2, 2, Kind::Max, false);
        let (mut out, mut at, mut dx) = ([0.0], [0.0], [0.0; 4]);
        d.max_plane(&[1.0, 2.0, 2.0, 0.0], &mut out, Some(&mut at));
        d.scatter_max_plane(&at, &[5.0], &mut dx);
        assert_eq!((out, dx), ([2.0], [0.0, 5.0, 0.0, 0.0]));
        d.max_plane(&[f32::NAN, 2.0, f32::NAN, 0.0], &mut out, Some(&mut at));
        d.scatter_max_plane(&at, &[5.0], &mut dx);
        assert!(out[0].is_nan());
        assert_eq!(dx, [0.0, 0.0, 5.0, 0.0]);
    }
}
