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
//! The transforms run on 8 tiles at a time (one 8-lane vector per tile position),
//! in closures forced inline into `with_avx2_fma` (left out of line, LLVM compiled
//! them for SSE2 only);
//! every sum is in an order fixed by the code, and the 16 products each go to one
//! thread whole, so results do not depend on the thread count. The products read
//! every operand in place (strided views): `V` and `dM` are stored channel-major
//! (`[C, 16, N · T]`, `[O, 16, N · T]`, each channel padded by a cache line) so each
//! channel's transform writes one contiguous piece.

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

/// Whether `conv2d` with geometry `d` runs by Winograd: a 3 × 3, stride-1, undilated,
/// ungrouped convolution with padding 1 on every side (output as large as the input),
/// on planes small enough for the batched path and with enough input channels.
pub(crate) fn applies(d: &Geom) -> bool {
    (d.kh, d.kw, d.sh, d.sw, d.dh, d.dw, d.ph, d.pw, d.groups) == (3, 3, 1, 1, 1, 1, 1, 1, 1)
        && (d.oh, d.ow) == (d.h, d.w)
        && d.c >= MIN_CHANNELS
        && !by_sample(d)
        && enabled()
}

/// `TAPEGRAD_CONV_WINOGRAD=0` turns the Winograd path off (read once), so the
/// column-matrix path can be timed against it in the same build.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("TAPEGRAD_CONV_WINOGRAD").map_or(true, |v| v.trim() != "0"))
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
    /// Floats between channels of `V` and `dM` (`[C, 16, N · T]` with each channel
    /// padded by a cache line): without the pad, the rows a product packs together
    /// lie a power of two apart (32 KiB for the digits CNN) and evict each other from
    /// the same L1 sets.
    fn stride(&self) -> usize {
        XI * self.nt + 16
    }
    /// Width of a zero-padded input plane holding every tile's 4 × 4 patch.
    fn padded_w(&self) -> usize {
        2 * self.tw + 2
    }
    fn padded_len(&self) -> usize {
        (2 * self.th + 2) * self.padded_w()
    }
}

/// One value per tile position (ξ = 4 · i + j) and lane: `[(4 · i + j) · LANES + lane]`.
type Block = [f32; XI * LANES];
/// Tiles per block of the fused passes (see [`samples_per_block`]): 16 products of
/// 64 × 64 floats, 256 KiB, for the digits CNN.
const BLOCK_TILES: usize = 64;
/// A 2 × 2 output tile per lane: `[(2 · i + j) · LANES + lane]`.
type Small = [f32; 4 * LANES];

/// `Bᵀ x`: the input transform along one axis.
#[inline(always)]
fn bt(x: [f32; 4]) -> [f32; 4] {
    [x[0] - x[2], x[1] + x[2], x[2] - x[1], x[1] - x[3]]
}

/// `B x`: the adjoint of [`bt`].
#[inline(always)]
fn b(x: [f32; 4]) -> [f32; 4] {
    [x[0], x[1] - x[2] + x[3], x[1] + x[2] - x[0], -x[3]]
}

/// `Aᵀ x`: the output transform along one axis.
#[inline(always)]
fn at(x: [f32; 4]) -> [f32; 2] {
    [x[0] + x[1] + x[2], x[1] - x[2] - x[3]]
}

/// `A y`: the adjoint of [`at`].
#[inline(always)]
fn a(y: [f32; 2]) -> [f32; 4] {
    [y[0], y[0] + y[1], y[0] - y[1], -y[1]]
}

/// `f` along i, then along j, of each lane's 4 × 4 tile (`f` is [`bt`] or [`b`]).
#[inline(always)]
fn both_axes(src: &Block, dst: &mut Block, f: impl Fn([f32; 4]) -> [f32; 4]) {
    const L: usize = LANES;
    let mut e = [0.0; XI * LANES];
    for j in 0..4 {
        for l in 0..L {
            let y = f([
                src[j * L + l],
                src[(4 + j) * L + l],
                src[(8 + j) * L + l],
                src[(12 + j) * L + l],
            ]);
            for (i, v) in y.into_iter().enumerate() {
                e[(4 * i + j) * L + l] = v;
            }
        }
    }
    for i in 0..4 {
        for l in 0..L {
            let y = f([
                e[4 * i * L + l],
                e[(4 * i + 1) * L + l],
                e[(4 * i + 2) * L + l],
                e[(4 * i + 3) * L + l],
            ]);
            for (j, v) in y.into_iter().enumerate() {
                dst[(4 * i + j) * L + l] = v;
            }
        }
    }
}

/// [`at`] along i, then along j: each lane's 4 × 4 tile to its 2 × 2 output.
#[inline(always)]
fn output_axes(src: &Block, dst: &mut Small) {
    const L: usize = LANES;
    let mut e = [0.0; 8 * LANES];
    for j in 0..4 {
        for l in 0..L {
            let y = at([
                src[j * L + l],
                src[(4 + j) * L + l],
                src[(8 + j) * L + l],
                src[(12 + j) * L + l],
            ]);
            for (i, v) in y.into_iter().enumerate() {
                e[(4 * i + j) * L + l] = v;
            }
        }
    }
    for i in 0..2 {
        for l in 0..L {
            let y = at([
                e[4 * i * L + l],
                e[(4 * i + 1) * L + l],
                e[(4 * i + 2) * L + l],
                e[(4 * i + 3) * L + l],
            ]);
            for (j, v) in y.into_iter().enumerate() {
                dst[(2 * i + j) * L + l] = v;
            }
        }
    }
}

/// [`a`] along i, then along j: each lane's 2 × 2 output gradient to its 4 × 4 tile.
#[inline(always)]
fn output_grad_axes(src: &Small, dst: &mut Block) {
    const L: usize = LANES;
    let mut e = [0.0; 8 * LANES];
    for j in 0..2 {
        for l in 0..L {
            let y = a([src[j * L + l], src[(2 + j) * L + l]]);
            for (i, v) in y.into_iter().enumerate() {
                e[(2 * i + j) * L + l] = v;
            }
        }
    }
    for i in 0..4 {
        for l in 0..L {
            let y = a([e[2 * i * L + l], e[(2 * i + 1) * L + l]]);
            for (j, v) in y.into_iter().enumerate() {
                dst[(4 * i + j) * L + l] = v;
            }
        }
    }
}

/// Runs `f` on `len` zeroed floats: on the stack when they fit (every plane
/// [`applies`] admits), else from the pool.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // Two sizes, so an 8 × 8 plane (100 floats padded) does not zero 576.
    const SMALL: usize = 128;
    const STACK: usize = 576;
    if len <= SMALL {
        return f(&mut [0.0; SMALL][..len]);
    }
    if len <= STACK {
        return f(&mut [0.0; STACK][..len]);
    }
    let mut buf = pool::zeros(len);
    let out = f(&mut buf);
    pool::give(buf);
    out
}

/// Copies `plane` (`h × w`) into `dst` (`pw` wide) at row `off`, column `off`; the rest
/// of `dst` is left as it was (zero).
#[inline(always)]
fn pad_into(plane: &[f32], h: usize, w: usize, off: usize, pw: usize, dst: &mut [f32]) {
    for (r, row) in plane.chunks_exact(w).take(h).enumerate() {
        copy_row(&mut dst[(r + off) * pw + off..][..w], row);
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

/// The (row, column) of tiles `t0 .. t0 + LANES` (one division per chunk, not per
/// tile: a division costs as much as a tile's transform).
#[inline(always)]
fn chunk_tiles(tl: &Tiles, t0: usize) -> [(usize, usize); LANES] {
    let (mut ti, mut tj) = (t0 / tl.tw, t0 % tl.tw);
    let mut out = [(0, 0); LANES];
    for at in out.iter_mut() {
        *at = (ti, tj);
        tj += 1;
        if tj == tl.tw {
            (ti, tj) = (ti + 1, 0);
        }
    }
    out
}

/// The offset of the top-left corner of the patch of tiles `t0 .. t0 + lanes` in a
/// padded plane `width` wide (0 for the lanes past `lanes`).
#[inline(always)]
fn lane_offsets(tl: &Tiles, t0: usize, lanes: usize, width: usize) -> [usize; LANES] {
    let tiles = chunk_tiles(tl, t0);
    let mut out = [0; LANES];
    for (at, (ti, tj)) in out.iter_mut().zip(tiles).take(lanes) {
        *at = 2 * ti * width + 2 * tj;
    }
    out
}

/// `src[at[l]]` for each lane, built in registers (storing the lanes one by one and
/// loading them as a vector would stall on store forwarding).
#[inline(always)]
fn gather(src: &[f32], at: &[usize; LANES]) -> [f32; LANES] {
    [
        src[at[0]], src[at[1]], src[at[2]], src[at[3]], src[at[4]], src[at[5]], src[at[6]],
        src[at[7]],
    ]
}

/// `dst = src` for a short row, in fixed 8-float moves rather than a `memcpy` call.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(LANES);
    let mut s = src[..d.len() * LANES].chunks_exact(LANES);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    let tail = d.into_remainder();
    let lanes = tail.len();
    if lanes > 0 {
        copy_lanes(tail, &src[src.len() - lanes..], lanes);
    }
}

/// `dst[..lanes] = src[..lanes]` for `lanes <= LANES`, without a call to `memcpy`
/// for the full chunks (a call per 8 floats was an eighth of the step).
#[inline(always)]
fn copy_lanes(dst: &mut [f32], src: &[f32], lanes: usize) {
    if lanes == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        copy_tail(dst, src, lanes);
    }
}

/// The short last chunk of [`copy_lanes`], out of line so that LLVM does not merge
/// both branches into one `memcpy` of `lanes` floats.
#[inline(never)]
fn copy_tail(dst: &mut [f32], src: &[f32], lanes: usize) {
    dst[..lanes].copy_from_slice(&src[..lanes]);
}

/// `V = Bᵀ d B` of every tile of the batch: `[C, 16, N · T]`.
fn transform_input(x: &[f32], d: &Geom, tl: &Tiles) -> Vec<f32> {
    let (nt, hw, pw) = (tl.nt, d.h * d.w, tl.padded_w());
    let mut v = pool::for_overwrite(d.c * tl.stride());
    for_each_piece(&mut v, tl.stride(), 2 * d.c * tl.stride(), |c, vc| {
        with_scratch(tl.padded_len(), |pad| {
            crate::cpu::with_avx2_fma(
                #[inline(always)]
                || {
                    for n in 0..d.n {
                        let plane = &x[(n * d.c + c) * hw..][..hw];
                        pad_into(plane, d.h, d.w, 1, pw, pad);
                        for t0 in (0..tl.t).step_by(LANES) {
                            let lanes = LANES.min(tl.t - t0);
                            let mut p = [0.0; XI * LANES];
                            let at = lane_offsets(tl, t0, lanes, pw);
                            for i in 0..4 {
                                for j in 0..4 {
                                    p[(4 * i + j) * LANES..][..LANES]
                                        .copy_from_slice(&gather(&pad[i * pw + j..], &at));
                                }
                            }
                            let mut vt = [0.0; XI * LANES];
                            both_axes(&p, &mut vt, bt);
                            for (xi, v) in vt.chunks_exact(LANES).enumerate() {
                                copy_lanes(&mut vc[xi * nt + n * tl.t + t0..], v, lanes);
                            }
                        }
                    }
                },
            )
        });
    });
    v
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
    let (sb, plane) = (samples_per_block(&tl), o * d.p());
    let mut out = pool::for_overwrite(d.n * plane);
    // Block by block of samples: the 16 products of a block, then its output
    // transform while the products are still in cache.
    for_each_piece(&mut out, sb * plane, XI * o * nt * c, |blk, out| {
        let (n0, ns) = (blk * sb, out.len() / plane);
        let cols = ns * tl.t;
        // Products a cache line apart, for the same reason as `Tiles::stride`.
        let ms = o * cols + 16;
        let mut m = pool::for_overwrite(XI * ms);
        for xi in 0..XI {
            gemm_into(
                o,
                cols,
                c,
                MatRef::rows(&u[xi * o * c..][..o * c], c),
                MatRef {
                    data: &v[xi * nt + n0 * tl.t..],
                    row_stride: tl.stride(),
                    col_stride: 1,
                },
                &mut m[xi * ms..][..o * cols],
                false,
            );
        }
        let ow = d.ow;
        for (pl, dst) in out.chunks_exact_mut(d.p()).enumerate() {
            let (nl, oc) = (pl / o, pl % o);
            let bv = bias.map_or(0.0, |b| b[oc]);
            crate::cpu::with_avx2_fma(
                #[inline(always)]
                || {
                    for t0 in (0..tl.t).step_by(LANES) {
                        let lanes = LANES.min(tl.t - t0);
                        let mut mt = [0.0; XI * LANES];
                        for (xi, dst) in mt.chunks_exact_mut(LANES).enumerate() {
                            copy_lanes(dst, &m[xi * ms + oc * cols + nl * tl.t + t0..], lanes);
                        }
                        let mut y = [0.0; 4 * LANES];
                        output_axes(&mt, &mut y);
                        let at = chunk_tiles(&tl, t0);
                        if d.oh % 2 == 0 && ow % 2 == 0 {
                            // Every tile whole: no test per element.
                            for (l, &(ti, tj)) in at.iter().enumerate().take(lanes) {
                                let top = &mut dst[2 * ti * ow + 2 * tj..][..ow + 2];
                                top[0] = y[l] + bv;
                                top[1] = y[LANES + l] + bv;
                                top[ow] = y[2 * LANES + l] + bv;
                                top[ow + 1] = y[3 * LANES + l] + bv;
                            }
                            continue;
                        }
                        for l in 0..lanes {
                            let (ti, tj) = at[l];
                            for ai in 0..2 {
                                let r = 2 * ti + ai;
                                if r >= d.oh {
                                    continue;
                                }
                                for bj in 0..2 {
                                    let col = 2 * tj + bj;
                                    if col < ow {
                                        dst[r * ow + col] = y[(2 * ai + bj) * LANES + l] + bv;
                                    }
                                }
                            }
                        }
                    }
                },
            );
        }
        pool::give(m);
    });
    pool::give(u);
    (out, v)
}

/// `dM = A dY Aᵀ` of every tile: `[O, 16, N · T]`.
fn transform_output_grad(g: &[f32], d: &Geom, tl: &Tiles) -> Vec<f32> {
    let (nt, p) = (tl.nt, d.p());
    // dY zero-padded to whole tiles.
    let gw = 2 * tl.tw;
    let mut dm = pool::for_overwrite(d.o * tl.stride());
    for_each_piece(&mut dm, tl.stride(), 2 * d.o * tl.stride(), |o, dmo| {
        with_scratch(2 * tl.th * gw, |pad| {
            crate::cpu::with_avx2_fma(
                #[inline(always)]
                || {
                    for n in 0..d.n {
                        pad_into(&g[(n * d.o + o) * p..][..p], d.oh, d.ow, 0, gw, pad);
                        for t0 in (0..tl.t).step_by(LANES) {
                            let lanes = LANES.min(tl.t - t0);
                            let mut y = [0.0; 4 * LANES];
                            let at = lane_offsets(tl, t0, lanes, gw);
                            for i in 0..2 {
                                for j in 0..2 {
                                    y[(2 * i + j) * LANES..][..LANES]
                                        .copy_from_slice(&gather(&pad[i * gw + j..], &at));
                                }
                            }
                            let mut e = [0.0; XI * LANES];
                            output_grad_axes(&y, &mut e);
                            for (xi, v) in e.chunks_exact(LANES).enumerate() {
                                copy_lanes(&mut dmo[xi * nt + n * tl.t + t0..], v, lanes);
                            }
                        }
                    }
                },
            )
        });
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
        row_stride: tl.stride(),
        col_stride: 1,
    };
    let dx = want_dx.then(|| {
        let u = transform_weights(w, d);
        let dx = input_grad_from(&u, &dm, d, &tl);
        pool::give(u);
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
                    col_stride: tl.stride(),
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

/// The input gradient: `dV[ξ] = U[ξ]ᵀ · dM[ξ]`, then `dX = Σ B dV Bᵀ` over the
/// (overlapping) patches of each plane; block by block of samples, so that a block's
/// `dV` is still in cache for its transform.
fn input_grad_from(u: &[f32], dm: &[f32], d: &Geom, tl: &Tiles) -> Vec<f32> {
    let (o, c, nt, hw, pw) = (d.o, d.c, tl.nt, d.h * d.w, tl.padded_w());
    let (sb, plane) = (samples_per_block(tl), c * hw);
    let mut dx = pool::for_overwrite(d.n * plane);
    for_each_piece(&mut dx, sb * plane, XI * o * nt * c, |blk, dx| {
        let (n0, ns) = (blk * sb, dx.len() / plane);
        let cols = ns * tl.t;
        let vs = c * cols + 16;
        let mut dv = pool::for_overwrite(XI * vs);
        for xi in 0..XI {
            gemm_into(
                c,
                cols,
                o,
                MatRef::transposed(&u[xi * o * c..][..o * c], c),
                MatRef {
                    data: &dm[xi * nt + n0 * tl.t..],
                    row_stride: tl.stride(),
                    col_stride: 1,
                },
                &mut dv[xi * vs..][..c * cols],
                false,
            );
        }
        for (pl, dst) in dx.chunks_exact_mut(hw).enumerate() {
            let (nl, ch) = (pl / c, pl % c);
            with_scratch(tl.padded_len(), |pad| {
                crate::cpu::with_avx2_fma(
                    #[inline(always)]
                    || {
                        for t0 in (0..tl.t).step_by(LANES) {
                            let lanes = LANES.min(tl.t - t0);
                            let mut vt = [0.0; XI * LANES];
                            for (xi, dst) in vt.chunks_exact_mut(LANES).enumerate() {
                                copy_lanes(dst, &dv[xi * vs + ch * cols + nl * tl.t + t0..], lanes);
                            }
                            let mut p = [0.0; XI * LANES];
                            both_axes(&vt, &mut p, b);
                            // Tiles in order, each adding its patch: a fixed order of the sums.
                            let at = chunk_tiles(tl, t0);
                            for l in 0..lanes {
                                let (ti, tj) = at[l];
                                for i in 0..4 {
                                    let to = &mut pad[(2 * ti + i) * pw + 2 * tj..][..4];
                                    for (j, t) in to.iter_mut().enumerate() {
                                        *t += p[(4 * i + j) * LANES + l];
                                    }
                                }
                            }
                        }
                    },
                );
                for (r, row) in dst.chunks_exact_mut(d.w).enumerate() {
                    copy_row(row, &pad[(r + 1) * pw + 1..][..d.w]);
                }
            });
        }
        pool::give(dv);
    });
    dx
}

/// Samples per block of the fused product-and-transform passes: about
/// [`BLOCK_TILES`] tiles, so a block's 16 products stay in the L2 cache.
fn samples_per_block(tl: &Tiles) -> usize {
    (BLOCK_TILES / tl.t.max(1)).max(1)
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
