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
//! every operand in place (strided views); the forward and input-gradient products
//! (`k` = 32 or 64 channels, 64 tiles a block) go through the no-pack kernel of
//! `attention_gemm`, where packing cost as much as a third of their time, and the
//! weight gradient's (`k` = every tile of the batch) through the blocked GEMM: `V` and `dM` are stored channel-major
//! (`[C, 16, N · T]`, `[O, 16, N · T]`, each channel padded by a cache line) so each
//! channel's transform writes one contiguous piece.

use crate::ops::attention_gemm::{self as small, Live};
use crate::ops::conv_kernels::Geom;
use crate::ops::conv_samples::by_sample;
use crate::ops::gemm::{gemm_into, MatRef};
use crate::parallel::for_each_piece;
use crate::pool;

#[path = "conv_winograd_math.rs"]
mod math;
use math::*;

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

/// Tiles per block of the fused passes (see [`samples_per_block`]): 16 products of
/// 64 × 64 floats, 256 KiB, for the digits CNN.
const BLOCK_TILES: usize = 64;

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
            small::product(
                (o, cols, c),
                MatRef::rows(&u[xi * o * c..][..o * c], c),
                (&v[xi * nt + n0 * tl.t..], tl.stride()),
                (&mut m[xi * ms..][..o * cols], cols),
                false,
                Live::All,
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
            small::product(
                (c, cols, o),
                MatRef::transposed(&u[xi * o * c..][..o * c], c),
                (&dm[xi * nt + n0 * tl.t..], tl.stride()),
                (&mut dv[xi * vs..][..c * cols], cols),
                false,
                Live::All,
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
#[path = "conv_winograd_tests.rs"]
mod tests;
