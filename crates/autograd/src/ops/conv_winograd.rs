//! 3 × 3 "same" convolutions of small planes by Winograd's F(2 × 2, 3 × 3) algorithm
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): the
//! forward pass and both gradients in 16 products of 2.25 times fewer multiply-adds
//! than the column-matrix products of `conv_kernels` (the digits CNN's second
//! convolution: 3 × 16.8 M instead of 3 × 37.7 M).
//!
//! The output is cut into 2 × 2 tiles, each computed from the 4 × 4 input patch around
//! it: `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` for a 3 × 3 filter `g` and patch `d`. Summed
//! over the input channels, each of the 16 positions ξ of the 4 × 4 transformed tiles
//! is one product `M[ξ] = U[ξ] · V[ξ]` of the transformed weights `U[ξ]` (`[O, C]`)
//! and the transformed patches `V[ξ]` (`[C, N · T]`, T tiles per plane). Backward
//! runs the adjoint of the same linear maps, so the gradients are exact for the
//! forward that was computed: `dM = A dY Aᵀ`, `dV[ξ] = U[ξ]ᵀ · dM[ξ]` then
//! `dX = Σ B dV Bᵀ` (the patches overlap by two pixels), and `dU[ξ] = dM[ξ] · V[ξ]ᵀ`
//! then `dW = Gᵀ dU G`. `V` is kept from the forward pass for the weight gradient.
//!
//! The transforms run on 8 tiles at a time (one 8-lane vector per tile position);
//! every sum is in an order fixed by the code, and the 16 products each go to one
//! thread whole, so results do not depend on the thread count. The products read
//! every operand in place (strided views): `V` and `dM` are stored channel-major
//! (`[C, 16, N · T]`, `[O, 16, N · T]`) so each channel's transform writes one
//! contiguous piece.

use crate::ops::conv_kernels::Geom;
use crate::ops::conv_samples::by_sample;
use crate::ops::gemm::{gemm_into, MatRef};
use crate::parallel::for_each_piece;
use crate::pool;

/// Positions of a transformed 4 × 4 tile.
const XI: usize = 16;
/// Tiles transformed together, one per vector lane.
const LANES: usize = 8;
/// Input channels below which the products are too shallow to pay for the transforms
/// (the digits CNN's first convolution, one channel, keeps the column-matrix path).
const MIN_CHANNELS: usize = 8;

type Lanes = [f32; LANES];

/// Whether `conv2d` with geometry `d` runs by Winograd: a 3 × 3, stride-1, undilated,
/// ungrouped convolution with padding 1 on every side (output as large as the input),
/// on planes small enough for the batched path and with enough input channels.
pub(crate) fn applies(d: &Geom) -> bool {
    (d.kh, d.kw, d.sh, d.sw, d.dh, d.dw, d.ph, d.pw, d.groups) == (3, 3, 1, 1, 1, 1, 1, 1, 1)
        && (d.oh, d.ow) == (d.h, d.w)
        && d.c >= MIN_CHANNELS
        && !by_sample(d)
}

/// The 2 × 2 tiling of one output plane.
#[derive(Clone, Copy)]
struct Tiles {
    /// Tile rows and columns.
    th: usize,
    tw: usize,
    /// Tiles per plane.
    t: usize,
    /// Tiles of the batch: the length of a row of `V[ξ]` and `M[ξ]`.
    nt: usize,
}

impl Tiles {
    fn of(d: &Geom) -> Tiles {
        let (th, tw) = (d.oh.div_ceil(2), d.ow.div_ceil(2));
        Tiles {
            th,
            tw,
            t: th * tw,
            nt: d.n * th * tw,
        }
    }
    /// Width of a zero-padded input plane holding every tile's 4 × 4 patch.
    fn padded_w(&self) -> usize {
        2 * self.tw + 2
    }
    fn padded_len(&self) -> usize {
        (2 * self.th + 2) * self.padded_w()
    }
}

#[inline(always)]
fn add(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] + b[l])
}

#[inline(always)]
fn sub(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] - b[l])
}

/// `Bᵀ x` along one axis: the input transform.
#[inline(always)]
fn bt(x: [&Lanes; 4]) -> [Lanes; 4] {
    [
        sub(x[0], x[2]),
        add(x[1], x[2]),
        sub(x[2], x[1]),
        sub(x[1], x[3]),
    ]
}

/// `B x` along one axis: the adjoint of [`bt`].
#[inline(always)]
fn b(x: [&Lanes; 4]) -> [Lanes; 4] {
    let neg3 = x[3].map(|v| -v);
    [
        x[0].to_owned(),
        add(&sub(x[1], x[2]), x[3]),
        sub(&add(x[1], x[2]), x[0]),
        neg3,
    ]
}

/// `Aᵀ x` along one axis: the output transform.
#[inline(always)]
fn at(x: [&Lanes; 4]) -> [Lanes; 2] {
    [add(&add(x[0], x[1]), x[2]), sub(&sub(x[1], x[2]), x[3])]
}

/// `A y` along one axis: the adjoint of [`at`].
#[inline(always)]
fn a(y: [&Lanes; 2]) -> [Lanes; 4] {
    [
        y[0].to_owned(),
        add(y[0], y[1]),
        sub(y[0], y[1]),
        y[1].map(|v| -v),
    ]
}

/// A 4 × 4 tile of lanes `t[i][j]` through `f` along i, then along j.
#[inline(always)]
fn both_axes_4(t: &[[Lanes; 4]; 4], f: impl Fn([&Lanes; 4]) -> [Lanes; 4]) -> [[Lanes; 4]; 4] {
    let mut e = [[[0.0; LANES]; 4]; 4];
    for j in 0..4 {
        let col = f([&t[0][j], &t[1][j], &t[2][j], &t[3][j]]);
        for (i, v) in col.into_iter().enumerate() {
            e[i][j] = v;
        }
    }
    e.map(|row| f([&row[0], &row[1], &row[2], &row[3]]))
}

/// Copies `plane` (`h × w`) into `dst` (`pw` wide) at row `off`, column `off`; the rest
/// of `dst` is left as it was (zero).
fn pad_into(plane: &[f32], h: usize, w: usize, off: usize, pw: usize, dst: &mut [f32]) {
    for (r, row) in plane.chunks_exact(w).take(h).enumerate() {
        dst[(r + off) * pw + off..][..w].copy_from_slice(row);
    }
}

/// `U[ξ][o][c] = (G g Gᵀ)[ξ]` for each filter `g = w[o][c]`: `[16, O, C]`.
fn transform_weights(w: &[f32], d: &Geom) -> Vec<f32> {
    let oc = d.o * d.c;
    let mut u = pool::for_overwrite(XI * oc);
    for (f, g) in w.chunks_exact(9).enumerate() {
        // G g (4 × 3), then (G g) Gᵀ (4 × 4).
        let gm = |r: [f32; 3]| {
            [
                r[0],
                0.5 * (r[0] + r[1] + r[2]),
                0.5 * (r[0] - r[1] + r[2]),
                r[2],
            ]
        };
        let cols: [[f32; 4]; 3] = std::array::from_fn(|j| gm([g[j], g[3 + j], g[6 + j]]));
        for i in 0..4 {
            let row = gm([cols[0][i], cols[1][i], cols[2][i]]);
            for (j, v) in row.into_iter().enumerate() {
                u[(i * 4 + j) * oc + f] = v;
            }
        }
    }
    u
}

/// `dW = Gᵀ dU G` for each filter, from `dU` (`[16, O, C]`): `[O, C, 3, 3]`.
fn weight_grad_from(du: &[f32], d: &Geom) -> Vec<f32> {
    let oc = d.o * d.c;
    let mut dw = pool::for_overwrite(oc * 9);
    for (f, dst) in dw.chunks_exact_mut(9).enumerate() {
        let gt = |r: [f32; 4]| {
            [
                r[0] + 0.5 * (r[1] + r[2]),
                0.5 * (r[1] - r[2]),
                0.5 * (r[1] + r[2]) + r[3],
            ]
        };
        // Gᵀ along rows of each column j, then along the columns.
        let cols: [[f32; 3]; 4] =
            std::array::from_fn(|j| gt(std::array::from_fn(|i| du[(i * 4 + j) * oc + f])));
        for r in 0..3 {
            let row = gt([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
            dst[r * 3..][..3].copy_from_slice(&row);
        }
    }
    dw
}

/// Tile `t`'s (row, column) of tiles.
#[inline(always)]
fn tile_at(tl: &Tiles, t: usize) -> (usize, usize) {
    (t / tl.tw, t % tl.tw)
}

/// `V = Bᵀ d B` of every tile of the batch: `[C, 16, N · T]`.
fn transform_input(x: &[f32], d: &Geom, tl: &Tiles) -> Vec<f32> {
    let (nt, hw, pw) = (tl.nt, d.h * d.w, tl.padded_w());
    let mut v = pool::for_overwrite(d.c * XI * nt);
    for_each_piece(&mut v, XI * nt, 2 * v_len(d, tl), |c, vc| {
        let mut pad = pool::zeros(tl.padded_len());
        crate::cpu::with_avx2_fma(|| {
            for n in 0..d.n {
                let plane = &x[(n * d.c + c) * hw..][..hw];
                pad_into(plane, d.h, d.w, 1, pw, &mut pad);
                for t0 in (0..tl.t).step_by(LANES) {
                    let mut p = [[[0.0; LANES]; 4]; 4];
                    for l in 0..LANES.min(tl.t - t0) {
                        let (ti, tj) = tile_at(tl, t0 + l);
                        for (i, row) in p.iter_mut().enumerate() {
                            let src = &pad[(2 * ti + i) * pw + 2 * tj..][..4];
                            for j in 0..4 {
                                row[j][l] = src[j];
                            }
                        }
                    }
                    let vt = both_axes_4(&p, bt);
                    let lanes = LANES.min(tl.t - t0);
                    for (xi, v) in vt.iter().flatten().enumerate() {
                        vc[xi * nt + n * tl.t + t0..][..lanes].copy_from_slice(&v[..lanes]);
                    }
                }
            }
        });
        pool::give(pad);
    });
    v
}

fn v_len(d: &Geom, tl: &Tiles) -> usize {
    d.c * XI * tl.nt
}

/// The output `[n, o, oh, ow]` of the convolution of `x` by `w` (+ bias), and the
/// transformed input `V` for the weight gradient.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    d: &Geom,
) -> (Vec<f32>, Vec<f32>) {
    let tl = Tiles::of(d);
    let (o, c, nt) = (d.o, d.c, tl.nt);
    let u = transform_weights(w, d);
    let v = transform_input(x, d, &tl);
    let mut m = pool::for_overwrite(XI * o * nt);
    for_each_piece(&mut m, o * nt, XI * o * nt * c, |xi, mx| {
        gemm_into(
            o,
            nt,
            c,
            MatRef::rows(&u[xi * o * c..][..o * c], c),
            MatRef {
                data: &v[xi * nt..],
                row_stride: XI * nt,
                col_stride: 1,
            },
            mx,
            false,
        );
    });
    pool::give(u);
    let mut out = pool::for_overwrite(d.n * o * d.p());
    let ow = d.ow;
    for_each_piece(&mut out, d.p(), 2 * m.len(), |plane, dst| {
        let (n, oc) = (plane / o, plane % o);
        let bv = bias.map_or(0.0, |b| b[oc]);
        crate::cpu::with_avx2_fma(|| {
            for t0 in (0..tl.t).step_by(LANES) {
                let lanes = LANES.min(tl.t - t0);
                let mut mt = [[[0.0; LANES]; 4]; 4];
                for (xi, dst) in mt.iter_mut().flatten().enumerate() {
                    dst[..lanes].copy_from_slice(&m[(xi * o + oc) * nt + n * tl.t + t0..][..lanes]);
                }
                // Aᵀ along i (4 → 2 rows), then along j.
                let rows: [[Lanes; 4]; 2] = {
                    let mut r = [[[0.0; LANES]; 4]; 2];
                    for j in 0..4 {
                        let [r0, r1] = at([&mt[0][j], &mt[1][j], &mt[2][j], &mt[3][j]]);
                        (r[0][j], r[1][j]) = (r0, r1);
                    }
                    r
                };
                let y = rows.map(|r| at([&r[0], &r[1], &r[2], &r[3]]));
                for l in 0..lanes {
                    let (ti, tj) = tile_at(&tl, t0 + l);
                    for (ai, yr) in y.iter().enumerate() {
                        let r = 2 * ti + ai;
                        if r >= d.oh {
                            continue;
                        }
                        for (bcol, yv) in yr.iter().enumerate() {
                            let col = 2 * tj + bcol;
                            if col < ow {
                                dst[r * ow + col] = yv[l] + bv;
                            }
                        }
                    }
                }
            }
        });
    });
    pool::give(m);
    (out, v)
}

/// `dM = A dY Aᵀ` of every tile: `[O, 16, N · T]`.
fn transform_output_grad(g: &[f32], d: &Geom, tl: &Tiles) -> Vec<f32> {
    let (nt, p) = (tl.nt, d.p());
    // dY zero-padded to whole tiles.
    let gw = 2 * tl.tw;
    let mut dm = pool::for_overwrite(d.o * XI * nt);
    for_each_piece(&mut dm, XI * nt, 2 * d.o * XI * nt, |o, dmo| {
        let mut pad = pool::zeros(2 * tl.th * gw);
        crate::cpu::with_avx2_fma(|| {
            for n in 0..d.n {
                pad_into(&g[(n * d.o + o) * p..][..p], d.oh, d.ow, 0, gw, &mut pad);
                for t0 in (0..tl.t).step_by(LANES) {
                    let lanes = LANES.min(tl.t - t0);
                    let mut y = [[[0.0; LANES]; 2]; 2];
                    for l in 0..lanes {
                        let (ti, tj) = tile_at(tl, t0 + l);
                        for (a, row) in y.iter_mut().enumerate() {
                            let src = &pad[(2 * ti + a) * gw + 2 * tj..][..2];
                            row[0][l] = src[0];
                            row[1][l] = src[1];
                        }
                    }
                    // A along i (2 → 4 rows), then along j.
                    let mut e = [[[0.0; LANES]; 2]; 4];
                    for j in 0..2 {
                        for (i, v) in a([&y[0][j], &y[1][j]]).into_iter().enumerate() {
                            e[i][j] = v;
                        }
                    }
                    for (i, row) in e.iter().enumerate() {
                        for (j, v) in a([&row[0], &row[1]]).iter().enumerate() {
                            dmo[(i * 4 + j) * nt + n * tl.t + t0..][..lanes]
                                .copy_from_slice(&v[..lanes]);
                        }
                    }
                }
            }
        });
        pool::give(pad);
    });
    dm
}

/// The gradients reaching the input (`[n, c, h, w]`, when `want_dx`) and the weight
/// (`[o, c, 3, 3]`, when `want_dw`) from the output gradient `g` (`[n, o, oh, ow]`)
/// and the transformed input `v` that [`forward`] returned.
pub(crate) fn backward(
    v: &[f32],
    w: &[f32],
    g: &[f32],
    d: &Geom,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let tl = Tiles::of(d);
    let (o, c, nt) = (d.o, d.c, tl.nt);
    let dm = transform_output_grad(g, d, &tl);
    let dm_xi = |xi: usize| MatRef {
        data: &dm[xi * nt..],
        row_stride: XI * nt,
        col_stride: 1,
    };
    let dx = want_dx.then(|| {
        let u = transform_weights(w, d);
        let mut dv = pool::for_overwrite(XI * c * nt);
        for_each_piece(&mut dv, c * nt, XI * o * nt * c, |xi, dvx| {
            gemm_into(
                c,
                nt,
                o,
                MatRef::transposed(&u[xi * o * c..][..o * c], c),
                dm_xi(xi),
                dvx,
                false,
            );
        });
        pool::give(u);
        let dx = input_grad_from(&dv, d, &tl);
        pool::give(dv);
        dx
    });
    let dw = want_dw.then(|| {
        let mut du = pool::for_overwrite(XI * o * c);
        for_each_piece(&mut du, o * c, XI * o * nt * c, |xi, dux| {
            gemm_into(
                o,
                c,
                nt,
                dm_xi(xi),
                MatRef {
                    data: &v[xi * nt..],
                    row_stride: 1,
                    col_stride: XI * nt,
                },
                dux,
                false,
            );
        });
        let dw = weight_grad_from(&du, d);
        pool::give(du);
        dw
    });
    pool::give(dm);
    (dx, dw)
}

/// `dX = Σ B dV Bᵀ` over the (overlapping) patches of each plane, from `dV`
/// (`[16, C, N · T]`).
fn input_grad_from(dv: &[f32], d: &Geom, tl: &Tiles) -> Vec<f32> {
    let (c, nt, hw, pw) = (d.c, tl.nt, d.h * d.w, tl.padded_w());
    let mut dx = pool::for_overwrite(d.n * c * hw);
    for_each_piece(&mut dx, hw, 2 * dv.len(), |plane, dst| {
        let (n, ch) = (plane / c, plane % c);
        let mut pad = pool::zeros(tl.padded_len());
        crate::cpu::with_avx2_fma(|| {
            for t0 in (0..tl.t).step_by(LANES) {
                let lanes = LANES.min(tl.t - t0);
                let mut vt = [[[0.0; LANES]; 4]; 4];
                for (xi, dst) in vt.iter_mut().flatten().enumerate() {
                    dst[..lanes]
                        .copy_from_slice(&dv[(xi * c + ch) * nt + n * tl.t + t0..][..lanes]);
                }
                let p = both_axes_4(&vt, b);
                // Tiles in order, each adding its patch: a fixed order of the sums.
                for l in 0..lanes {
                    let (ti, tj) = tile_at(tl, t0 + l);
                    for (i, row) in p.iter().enumerate() {
                        let to = &mut pad[(2 * ti + i) * pw + 2 * tj..][..4];
                        for j in 0..4 {
                            to[j] += row[j][l];
                        }
                    }
                }
            }
        });
        for (r, row) in dst.chunks_exact_mut(d.w).enumerate() {
            row.copy_from_slice(&pad[(r + 1) * pw + 1..][..d.w]);
        }
        pool::give(pad);
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv_kernels::{
        conv_forward, conv_input_grad, conv_weight_grad, to_channel_major,
    };

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// Winograd gives what the column-matrix kernels give: forward, both gradients,
    /// even and odd planes, a plane smaller than a tile, a tile count that is not a
    /// multiple of the lanes.
    #[test]
    fn matches_the_column_matrix_kernels() {
        for (n, c, o, h, w) in [
            (3, 8, 5, 8, 8),
            (2, 9, 4, 7, 5),
            (2, 8, 3, 1, 1),
            (1, 8, 2, 6, 10),
        ] {
            let d = Geom {
                n,
                c,
                h,
                w,
                o,
                oh: h,
                ow: w,
                kh: 3,
                kw: 3,
                sh: 1,
                sw: 1,
                ph: 1,
                pw: 1,
                dh: 1,
                dw: 1,
                groups: 1,
            };
            assert!(applies(&d));
            let wave = |len: usize, f: f32| {
                (0..len)
                    .map(|i| (i as f32 * f).sin() * 2.0)
                    .collect::<Vec<f32>>()
            };
            let x = wave(n * c * h * w, 0.37);
            let wt = wave(o * c * 9, 0.91);
            let bias = wave(o, 1.3);
            let g = wave(n * o * h * w, 0.53);
            let (want, col) = conv_forward(&x, &wt, Some(&bias), &d);
            let (got, v) = forward(&x, &wt, Some(&bias), &d);
            close(&got, &want, "forward");
            let g_cm = to_channel_major(&g, n, o, d.p());
            let (dx, dw) = backward(&v, &wt, &g, &d, true, true);
            close(&dx.unwrap(), &conv_input_grad(&g_cm, &wt, &d), "dx");
            close(&dw.unwrap(), &conv_weight_grad(&col, &g_cm, &d), "dw");
            let (dx, dw) = backward(&v, &wt, &g, &d, false, true);
            assert!(dx.is_none() && dw.is_some());
        }
    }

    #[test]
    fn applies_only_to_small_same_3x3_convolutions() {
        let d = Geom {
            n: 2,
            c: 32,
            h: 8,
            w: 8,
            o: 64,
            oh: 8,
            ow: 8,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            ph: 1,
            pw: 1,
            dh: 1,
            dw: 1,
            groups: 1,
        };
        assert!(applies(&d));
        assert!(!applies(&Geom { c: 1, ..d }));
        assert!(!applies(&Geom { sh: 2, oh: 4, ..d }));
        assert!(!applies(&Geom { groups: 2, ..d }));
        assert!(!applies(&Geom {
            h: 16,
            w: 16,
            oh: 16,
            ow: 16,
            ..d
        }));
    }
}
