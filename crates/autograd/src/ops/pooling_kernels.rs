//! The loops of 2-D pooling, one plane at a time: a general walk over any windows
//! (padding, ceil mode, adaptive) and a fast path for the common kernel 2, stride 2,
//! no padding, where every window is four whole elements.
//!
//! Max pooling saves no index buffer: backward finds each window's arg-max again from
//! the input with the same rule as forward (the first maximum; a NaN wins, the last
//! one as PyTorch's CPU kernel), which costs a read of the input but no memory per
//! step. Planes are independent, so `planes::for_each_chunk` deals them to threads
//! without changing a bit.

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

/// Whether `v` replaces `best` as a window's maximum: larger, or NaN.
#[inline(always)]
fn beats(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
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
        if self.is_2x2() {
            self.forward_2x2(x, out)
        } else {
            self.forward_general(x, out)
        }
    }

    /// Writes one plane's input gradient `dx` (every element) from the output
    /// gradient `g` of the plane and, for max pooling, its input `x`.
    pub fn backward_plane(&self, x: &[f32], g: &[f32], dx: &mut [f32]) {
        if self.is_2x2() {
            self.backward_2x2(x, g, dx)
        } else {
            self.backward_general(x, g, dx)
        }
    }

    fn forward_2x2(&self, x: &[f32], out: &mut [f32]) {
        let w = self.cols.len;
        {
            let ow = self.cols.out;
            for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
                let r0 = &x[2 * oy * w..][..2 * ow];
                let r1 = &x[(2 * oy + 1) * w..][..2 * ow];
                let quads = o.iter_mut().zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)));
                match self.kind {
                    Kind::Max => quads.for_each(|(o, (a, b))| {
                        let mut m = a[0];
                        for v in [a[1], b[0], b[1]] {
                            if beats(v, m) {
                                m = v;
                            }
                        }
                        *o = m;
                    }),
                    Kind::Avg { .. } => {
                        quads.for_each(|(o, (a, b))| *o = ((a[0] + a[1]) + (b[0] + b[1])) / 4.0)
                    }
                }
            }
        }
    }

    fn forward_general(&self, x: &[f32], out: &mut [f32]) {
        let w = self.cols.len;
        for oy in 0..self.rows.out {
            let rw = self.rows.window(oy);
            for ox in 0..self.cols.out {
                let cw = self.cols.window(ox);
                let (rows, cols) = ((rw.0, rw.1), (cw.0, cw.1));
                out[oy * self.cols.out + ox] = match self.kind {
                    Kind::Max => self
                        .argmax(x, rows, cols)
                        .map_or(f32::NEG_INFINITY, |i| x[i]),
                    Kind::Avg { .. } => {
                        let mut sum = 0.0;
                        for h in rows.0..rows.1 {
                            sum += x[h * w + cols.0..h * w + cols.1].iter().sum::<f32>();
                        }
                        let divisor = self.divisor(rw, cw);
                        if divisor > 0.0 {
                            sum / divisor
                        } else {
                            0.0
                        }
                    }
                };
            }
        }
    }

    fn backward_2x2(&self, x: &[f32], g: &[f32], dx: &mut [f32]) {
        let w = self.cols.len;
        {
            let (oh, ow) = (self.rows.out, self.cols.out);
            for oy in 0..oh {
                let (d0, d1) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
                let gs = &g[oy * ow..][..ow];
                let (d0, d1) = (&mut d0[..2 * ow], &mut d1[..2 * ow]);
                let quads = d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2)).zip(gs);
                match self.kind {
                    Kind::Max => {
                        let r0 = &x[2 * oy * w..][..2 * ow];
                        let r1 = &x[(2 * oy + 1) * w..][..2 * ow];
                        let xs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                        for (((d0, d1), &gv), (a, b)) in quads.zip(xs) {
                            let (mut at, mut m) = (0, a[0]);
                            for (i, v) in [(1, a[1]), (2, b[0]), (3, b[1])] {
                                if beats(v, m) {
                                    (at, m) = (i, v);
                                }
                            }
                            let pick = |i| if at == i { gv } else { 0.0 };
                            (d0[0], d0[1], d1[0], d1[1]) = (pick(0), pick(1), pick(2), pick(3));
                        }
                    }
                    Kind::Avg { .. } => {
                        for ((d0, d1), &gv) in quads {
                            let v = gv / 4.0;
                            (d0[0], d0[1], d1[0], d1[1]) = (v, v, v, v);
                        }
                    }
                }
                // A column left over by an odd width gets nothing.
                dx[2 * oy * w + 2 * ow..(2 * oy + 1) * w].fill(0.0);
                dx[(2 * oy + 1) * w + 2 * ow..(2 * oy + 2) * w].fill(0.0);
            }
            dx[2 * oh * w..].fill(0.0);
        }
    }

    fn backward_general(&self, x: &[f32], g: &[f32], dx: &mut [f32]) {
        let w = self.cols.len;
        dx.fill(0.0);
        for oy in 0..self.rows.out {
            let rw = self.rows.window(oy);
            for ox in 0..self.cols.out {
                let cw = self.cols.window(ox);
                let (rows, cols) = ((rw.0, rw.1), (cw.0, cw.1));
                let gv = g[oy * self.cols.out + ox];
                match self.kind {
                    Kind::Max => {
                        if let Some(i) = self.argmax(x, rows, cols) {
                            dx[i] += gv;
                        }
                    }
                    Kind::Avg { .. } => {
                        let v = gv / self.divisor(rw, cw);
                        for h in rows.0..rows.1 {
                            dx[h * w + cols.0..h * w + cols.1]
                                .iter_mut()
                                .for_each(|e| *e += v);
                        }
                    }
                }
            }
        }
    }
}

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
        for (h, w) in [(4, 4), (5, 7), (2, 3), (6, 2)] {
            let x: Vec<f32> = (0..h * w)
                .map(|i| values[(i * 7 + h) % values.len()])
                .collect();
            for kind in [
                Kind::Max,
                Kind::Avg {
                    count_include_pad: true,
                },
            ] {
                let d = geom(h, w, kind, false);
                assert!(d.is_2x2());
                let n = d.out_plane();
                let (mut fast, mut slow) = (vec![9.0; n], vec![9.0; n]);
                d.forward_2x2(&x, &mut fast);
                d.forward_general(&x, &mut slow);
                let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&slow), "{h}x{w} {kind:?}");
                let g: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
                let (mut fast, mut slow) = (vec![9.0; h * w], vec![9.0; h * w]);
                d.backward_2x2(&x, &g, &mut fast);
                d.backward_general(&x, &g, &mut slow);
                assert_eq!(fast, slow, "{h}x{w} {kind:?}");
            }
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
        let mut dx = [0.0; 4];
        d.backward_plane(&[1.0, 2.0, 2.0, 0.0], &[5.0], &mut dx);
        assert_eq!(dx, [0.0, 5.0, 0.0, 0.0]);
        d.backward_plane(&[f32::NAN, 2.0, f32::NAN, 0.0], &[5.0], &mut dx);
        assert_eq!(dx, [0.0, 0.0, 5.0, 0.0]);
        let mut out = [0.0];
        d.forward_plane(&[1.0, f32::NAN, 2.0, 0.0], &mut out);
        assert!(out[0].is_nan());
    }
}
