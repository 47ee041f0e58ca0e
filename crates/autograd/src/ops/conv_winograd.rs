//! 3 × 3 "same" convolutions of small planes by Winograd's F(2 × 2, 3 × 3) algorithm
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): the
//! forward pass and both gradients in 16 products of 2.25 times fewer multiply-adds
//! than the column-matrix products of `conv_kernels` (the digits CNN's second
//! convolution: 3 × 16.8 M instead of 3 × 37.7 M).
//!
//! The output is cut into 2 × 2 tiles, each computed from the 4 × 4 input patch around
//! it: `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` for a 3 × 3 filter `g` and patch `d`. Summed
//! over the input channels, each of the 16 positions ξ of the 4 × 4 transformed tiles
//! is one product `Mᵀ[ξ] = Vᵀ[ξ] · Uᵀ[ξ]` of the transformed patches `Vᵀ[ξ]`
//! (`[tiles, C]`) and the transformed weights `U[ξ]` (`[O, C]`). Backward runs the
//! adjoint of the same linear maps, so the gradients are exact for the forward that
//! was computed: `dM = A dY Aᵀ`, `dVᵀ[ξ] = dMᵀ[ξ] · U[ξ]` then `dX = Σ B dV Bᵀ` (the
//! patches overlap by two pixels), and `dU[ξ] = dM[ξ] · Vᵀ[ξ]` then `dW = Gᵀ dU G`.
//!
//! Everything runs block by block of a few samples (about 64 tiles), so that a block's
//! transformed values never leave the L2 cache: transform the block, run its 16
//! products (the no-pack kernel of `attention_gemm`, reading every operand in place),
//! transform back. The transforms hold eight channels of one tile in a vector
//! (`conv_winograd_lanes`), so a tile is whole-vector arithmetic with no gathers, and
//! `Vᵀ`, `dMᵀ` are tile-major (`[16, tiles, C]`) as the products read them. Backward
//! recomputes a block's `Vᵀ` from the input rather than keeping 16 / 4.5 times the
//! input from the forward pass. The weight gradient sums the blocks of each of
//! [`DW_CHUNKS`] fixed runs of samples in order, then the runs in order; a block or a
//! run goes to one thread whole, so results do not depend on the thread count.

use crate::ops::attention_gemm::{self as small, Live};
use crate::ops::conv_kernels::Geom;
use crate::ops::conv_samples::by_sample;
use crate::ops::gemm::MatRef;
use crate::parallel::{for_each_piece, for_each_piece2};
use crate::pool;

#[path = "conv_winograd_math.rs"]
mod math;
use math::*;

#[path = "conv_winograd_lanes.rs"]
mod lanes;
use lanes::{
    as_lanes, from_lanes, input_grad_tile, input_tile, output_grad_tile, output_tile, to_lanes, L,
};

/// Positions of a transformed 4 × 4 tile.
const XI: usize = 16;
/// Input channels below which the products are too shallow to pay for the transforms
/// (the digits CNN's first convolution, one channel, keeps the column-matrix path).
const MIN_CHANNELS: usize = 8;
/// Tiles per block (see [`Block`]): a block's transformed values stay in L2.
const BLOCK_TILES: usize = 64;
/// Runs of samples whose weight-gradient sums are kept apart (and run in parallel):
/// fixed, so that the order of the sums never depends on the thread count.
const DW_CHUNKS: usize = 2;

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

/// The 2 × 2 tiling of a plane, and the blocks of samples that run together.
#[derive(Clone, Copy)]
struct Tiles {
    /// Tile rows and columns.
    th: usize,
    tw: usize,
    /// Tiles per plane.
    t: usize,
    /// Samples per block.
    sb: usize,
    /// Input and output channels rounded up to whole vectors: the row lengths of
    /// `Vᵀ[ξ]` and `Mᵀ[ξ]`.
    cp: usize,
    op: usize,
}

impl Tiles {
    fn of(d: &Geom) -> Tiles {
        let (th, tw) = (d.oh.div_ceil(2), d.ow.div_ceil(2));
        let t = th * tw;
        Tiles {
            th,
            tw,
            t,
            sb: (BLOCK_TILES / t.max(1)).max(1),
            cp: d.c.next_multiple_of(8),
            op: d.o.next_multiple_of(8),
        }
    }
    /// Width of a zero-padded input plane holding every tile's 4 × 4 patch.
    fn padded_w(&self) -> usize {
        2 * self.tw + 2
    }
    fn padded_len(&self) -> usize {
        (2 * self.th + 2) * self.padded_w()
    }
    /// Floats between the ξ of a block of `rows` tiles with `width` floats a tile:
    /// padded by a cache line, or the 16 values of one tile lie a power of two apart
    /// and evict each other from the same L1 sets.
    fn xi_stride(rows: usize, width: usize) -> usize {
        rows * width + 16
    }
}

/// The transformed values of one block of samples: `Vᵀ` (or `dVᵀ`), `[16, tiles, cp]`,
/// and `Mᵀ` (or `dMᵀ`), `[16, tiles, op]`, with their ξ strides; pooled buffers.
struct Block {
    n0: usize,
    ns: usize,
    rows: usize,
    vs: usize,
    ms: usize,
    v: Vec<f32>,
    m: Vec<f32>,
}

impl Block {
    /// Buffers for blocks of up to `tl.sb` samples.
    fn new(tl: &Tiles) -> Block {
        let rows = tl.sb * tl.t;
        let (vs, ms) = (Tiles::xi_stride(rows, tl.cp), Tiles::xi_stride(rows, tl.op));
        Block {
            n0: 0,
            ns: 0,
            rows,
            vs,
            ms,
            v: pool::for_overwrite(XI * vs),
            m: pool::for_overwrite(XI * ms),
        }
    }
    /// The block of samples `n0 .. n0 + ns` (ns ≤ `tl.sb`).
    fn at(&mut self, tl: &Tiles, n0: usize, ns: usize) {
        (self.n0, self.ns, self.rows) = (n0, ns, ns * tl.t);
    }
    fn give(self) {
        pool::give(self.v);
        pool::give(self.m);
    }
}

/// The output `[n, o, oh, ow]` of the convolution of `x` by `w` (+ bias).
pub(crate) fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: &Geom) -> Vec<f32> {
    let tl = Tiles::of(d);
    let (o, c, chw) = (d.o, d.c, d.c * d.h * d.w);
    let ut = transform_weights(w, d, true);
    let plane = o * d.p();
    let mut out = pool::for_overwrite(d.n * plane);
    let work = XI * o * d.n * tl.t * c;
    for_each_piece(&mut out, tl.sb * plane, work, |blk, out| {
        let mut bl = Block::new(&tl);
        let n0 = blk * tl.sb;
        bl.at(&tl, n0, out.len() / plane);
        input_tiles(&x[n0 * chw..][..bl.ns * chw], d, &tl, &mut bl);
        for xi in 0..XI {
            small::product(
                (bl.rows, o, c),
                MatRef {
                    data: &bl.v[xi * bl.vs..],
                    row_stride: tl.cp,
                    col_stride: 1,
                },
                (&ut[xi * c * o..][..c * o], o),
                (&mut bl.m[xi * bl.ms..][..bl.ms - 16], tl.op),
                false,
                Live::All,
            );
        }
        output_tiles(&bl, bias, d, &tl, out);
        bl.give();
    });
    pool::give(ut);
    out
}

/// The gradients reaching the input (`[n, c, h, w]`, when `want_dx`) and the weight
/// (`[o, c, 3, 3]`, when `want_dw`) from the output gradient `g` (`[n, o, oh, ow]`)
/// and the forward pass's input `x` and weight `w`.
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    d: &Geom,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let tl = Tiles::of(d);
    let (o, c, chw) = (d.o, d.c, d.c * d.h * d.w);
    // Runs of whole blocks: `spc` samples each.
    let blocks = d.n.div_ceil(tl.sb);
    let spc = blocks.div_ceil(DW_CHUNKS.min(blocks).max(1)) * tl.sb;
    let chunks = d.n.div_ceil(spc);
    let du_len = XI * o * c;
    let u = want_dx.then(|| transform_weights(w, d, false));
    let mut dx = if want_dx {
        pool::for_overwrite(d.n * chw)
    } else {
        Vec::new()
    };
    let mut parts = if want_dw {
        pool::zeros(chunks * du_len)
    } else {
        Vec::new()
    };
    let run = |ch: usize, mut dx: Option<&mut [f32]>, mut du: Option<&mut [f32]>| {
        let mut bl = Block::new(&tl);
        let end = d.n.min((ch + 1) * spc);
        for n0 in (ch * spc..end).step_by(tl.sb) {
            bl.at(&tl, n0, tl.sb.min(end - n0));
            let gp = o * d.p();
            output_grad_tiles(&g[n0 * gp..][..bl.ns * gp], d, &tl, &mut bl);
            if let Some(du) = du.as_deref_mut() {
                input_tiles(&x[n0 * chw..][..bl.ns * chw], d, &tl, &mut bl);
                for xi in 0..XI {
                    small::product(
                        (o, c, bl.rows),
                        MatRef {
                            data: &bl.m[xi * bl.ms..],
                            row_stride: 1,
                            col_stride: tl.op,
                        },
                        (&bl.v[xi * bl.vs..][..bl.vs - 16], tl.cp),
                        (&mut du[xi * o * c..][..o * c], c),
                        true,
                        Live::All,
                    );
                }
            }
            if let (Some(dx), Some(u)) = (dx.as_deref_mut(), u.as_deref()) {
                for xi in 0..XI {
                    small::product(
                        (bl.rows, c, o),
                        MatRef {
                            data: &bl.m[xi * bl.ms..],
                            row_stride: tl.op,
                            col_stride: 1,
                        },
                        (&u[xi * o * c..][..o * c], c),
                        (&mut bl.v[xi * bl.vs..][..bl.vs - 16], tl.cp),
                        false,
                        Live::All,
                    );
                }
                let at = (n0 - ch * spc) * chw;
                input_grad_tiles(&bl, d, &tl, &mut dx[at..][..bl.ns * chw]);
            }
        }
        bl.give();
    };
    let work = 2 * XI * o * d.n * tl.t * c;
    match (want_dx, want_dw) {
        (true, true) => for_each_piece2(
            (&mut dx, spc * chw),
            (&mut parts, du_len),
            work,
            |ch, dx, du| run(ch, Some(dx), Some(du)),
        ),
        (true, false) => for_each_piece(&mut dx, spc * chw, work, |ch, dx| run(ch, Some(dx), None)),
        (false, true) => for_each_piece(&mut parts, du_len, work, |ch, du| run(ch, None, Some(du))),
        (false, false) => {}
    }
    if let Some(u) = u {
        pool::give(u);
    }
    let dw = want_dw.then(|| {
        let (du, rest) = parts.split_at_mut(du_len);
        for part in rest.chunks_exact(du_len) {
            du.iter_mut().zip(part).for_each(|(s, &p)| *s += p);
        }
        let dw = weight_grad_from(du, d);
        pool::give(parts);
        dw
    });
    (want_dx.then_some(dx), dw)
}

/// `Vᵀ` of the block's samples (`x` holds just those): `[16, tiles, cp]`.
fn input_tiles(x: &[f32], d: &Geom, tl: &Tiles, bl: &mut Block) {
    let (c, hw, pw) = (d.c, d.h * d.w, tl.padded_w());
    let mut pad = pool::zeros(8 * tl.padded_len());
    let pad_l = as_lanes(&mut pad);
    let (v, vs, cp) = (&mut bl.v, bl.vs, tl.cp);
    crate::cpu::with_avx2_fma(
        #[inline(always)]
        || {
            for nl in 0..bl.ns {
                for c0 in (0..c).step_by(8) {
                    let count = 8.min(c - c0);
                    to_lanes(
                        (&x[(nl * c + c0) * hw..], hw, count),
                        (d.h, d.w),
                        pad_l,
                        (pw, 1),
                    );
                    for t in 0..tl.t {
                        let (ti, tj) = (t / tl.tw, t % tl.tw);
                        let vt = input_tile(pad_l, 2 * ti * pw + 2 * tj, pw);
                        let at = (nl * tl.t + t) * cp + c0;
                        for (xi, e) in vt.iter().enumerate() {
                            store(v, xi * vs + at, e);
                        }
                    }
                }
            }
        },
    );
    pool::give(pad);
}

/// The block's outputs (`out`, its samples' `[ns, o, oh, ow]`) from its `Mᵀ`, + bias.
fn output_tiles(bl: &Block, bias: Option<&[f32]>, d: &Geom, tl: &Tiles, out: &mut [f32]) {
    let (o, p, yw) = (d.o, d.p(), 2 * tl.tw);
    let mut y = pool::for_overwrite(8 * 2 * tl.th * yw);
    let y_l = as_lanes(&mut y);
    let (m, ms, op) = (&bl.m, bl.ms, tl.op);
    crate::cpu::with_avx2_fma(
        #[inline(always)]
        || {
            for nl in 0..bl.ns {
                for o0 in (0..o).step_by(8) {
                    let count = 8.min(o - o0);
                    let bv: L = std::array::from_fn(|l| {
                        bias.filter(|_| l < count).map_or(0.0, |b| b[o0 + l])
                    });
                    for t in 0..tl.t {
                        let (ti, tj) = (t / tl.tw, t % tl.tw);
                        let at = (nl * tl.t + t) * op + o0;
                        let mt: [L; XI] = std::array::from_fn(|xi| load(m, xi * ms + at));
                        let r = output_tile(&mt);
                        for (k, r) in r.iter().enumerate() {
                            let dst = &mut y_l[(2 * ti + k / 2) * yw + 2 * tj + k % 2];
                            for l in 0..8 {
                                dst[l] = r[l] + bv[l];
                            }
                        }
                    }
                    from_lanes(
                        y_l,
                        (yw, 0),
                        (d.oh, d.ow),
                        (&mut out[(nl * o + o0) * p..], p, count),
                    );
                }
            }
        },
    );
    pool::give(y);
}

/// `dMᵀ` of the block's samples (`g` holds just their output gradients).
fn output_grad_tiles(g: &[f32], d: &Geom, tl: &Tiles, bl: &mut Block) {
    let (o, p, gw) = (d.o, d.p(), 2 * tl.tw);
    // Zero past the plane's edge (odd sizes), which `to_lanes` never writes.
    let mut gb = pool::zeros(8 * 2 * tl.th * gw);
    let g_l = as_lanes(&mut gb);
    let (m, ms, op) = (&mut bl.m, bl.ms, tl.op);
    crate::cpu::with_avx2_fma(
        #[inline(always)]
        || {
            for nl in 0..bl.ns {
                for o0 in (0..o).step_by(8) {
                    let count = 8.min(o - o0);
                    to_lanes(
                        (&g[(nl * o + o0) * p..], p, count),
                        (d.oh, d.ow),
                        g_l,
                        (gw, 0),
                    );
                    for t in 0..tl.t {
                        let (ti, tj) = (t / tl.tw, t % tl.tw);
                        let y: [L; 4] =
                            std::array::from_fn(|k| g_l[(2 * ti + k / 2) * gw + 2 * tj + k % 2]);
                        let e = output_grad_tile(&y);
                        let at = (nl * tl.t + t) * op + o0;
                        for (xi, e) in e.iter().enumerate() {
                            store(m, xi * ms + at, e);
                        }
                    }
                }
            }
        },
    );
    pool::give(gb);
}

/// The block's input gradient (`dx`, its samples' `[ns, c, h, w]`) from its `dVᵀ`:
/// each tile's patch added in tile order (a fixed order of the sums).
fn input_grad_tiles(bl: &Block, d: &Geom, tl: &Tiles, dx: &mut [f32]) {
    let (c, hw, pw) = (d.c, d.h * d.w, tl.padded_w());
    let mut acc = pool::for_overwrite(8 * tl.padded_len());
    let (v, vs, cp) = (&bl.v, bl.vs, tl.cp);
    crate::cpu::with_avx2_fma(
        #[inline(always)]
        || {
            for nl in 0..bl.ns {
                for c0 in (0..c).step_by(8) {
                    let count = 8.min(c - c0);
                    acc.fill(0.0);
                    let acc_l = as_lanes(&mut acc);
                    for t in 0..tl.t {
                        let (ti, tj) = (t / tl.tw, t % tl.tw);
                        let at = (nl * tl.t + t) * cp + c0;
                        let dv: [L; XI] = std::array::from_fn(|xi| load(v, xi * vs + at));
                        let p = input_grad_tile(&dv);
                        let at0 = 2 * ti * pw + 2 * tj;
                        for (k, p) in p.iter().enumerate() {
                            let dst = &mut acc_l[at0 + (k / 4) * pw + k % 4];
                            for l in 0..8 {
                                dst[l] += p[l];
                            }
                        }
                    }
                    from_lanes(
                        acc_l,
                        (pw, 1),
                        (d.h, d.w),
                        (&mut dx[(nl * c + c0) * hw..], hw, count),
                    );
                }
            }
        },
    );
    pool::give(acc);
}

/// The 8 floats at `at`.
#[inline(always)]
fn load(s: &[f32], at: usize) -> L {
    s[at..at + 8].try_into().expect("8 floats")
}

/// `s[at .. at + 8] = v`.
#[inline(always)]
fn store(s: &mut [f32], at: usize, v: &L) {
    s[at..at + 8].copy_from_slice(v);
}

#[cfg(test)]
#[path = "conv_winograd_tests.rs"]
mod tests;
