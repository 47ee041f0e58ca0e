//! The arithmetic of `conv_winograd`: the F(2 × 2, 3 × 3) transforms of tiles, eight
//! at a time (one vector lane per tile), and the small copies and gathers around them,
//! written so that LLVM keeps them in vector registers without `memcpy` calls.

use super::{Tiles, LANES, XI};
use crate::ops::conv_kernels::Geom;
use crate::pool;

/// One value per tile position (ξ = 4 · i + j) and lane: `[(4 · i + j) · LANES + lane]`.
pub(super) type Block = [f32; XI * LANES];
/// A 2 × 2 output tile per lane: `[(2 · i + j) · LANES + lane]`.
pub(super) type Small = [f32; 4 * LANES];

/// `Bᵀ x`: the input transform along one axis.
#[inline(always)]
pub(super) fn bt(x: [f32; 4]) -> [f32; 4] {
    [x[0] - x[2], x[1] + x[2], x[2] - x[1], x[1] - x[3]]
}

/// `B x`: the adjoint of [`bt`].
#[inline(always)]
pub(super) fn b(x: [f32; 4]) -> [f32; 4] {
    [x[0], x[1] - x[2] + x[3], x[1] + x[2] - x[0], -x[3]]
}

/// `Aᵀ x`: the output transform along one axis.
#[inline(always)]
pub(super) fn at(x: [f32; 4]) -> [f32; 2] {
    [x[0] + x[1] + x[2], x[1] - x[2] - x[3]]
}

/// `A y`: the adjoint of [`at`].
#[inline(always)]
pub(super) fn a(y: [f32; 2]) -> [f32; 4] {
    [y[0], y[0] + y[1], y[0] - y[1], -y[1]]
}

/// `f` along i, then along j, of each lane's 4 × 4 tile (`f` is [`bt`] or [`b`]).
#[inline(always)]
pub(super) fn both_axes(src: &Block, dst: &mut Block, f: impl Fn([f32; 4]) -> [f32; 4]) {
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
pub(super) fn output_axes(src: &Block, dst: &mut Small) {
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
pub(super) fn output_grad_axes(src: &Small, dst: &mut Block) {
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
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
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
pub(super) fn pad_into(plane: &[f32], h: usize, w: usize, off: usize, pw: usize, dst: &mut [f32]) {
    for (r, row) in plane.chunks_exact(w).take(h).enumerate() {
        copy_row(&mut dst[(r + off) * pw + off..][..w], row);
    }
}

/// `U[ξ][o][c] = (G g Gᵀ)[ξ]` for each filter `g = w[o][c]`: `[16, O, C]`.
pub(super) fn transform_weights(w: &[f32], d: &Geom) -> Vec<f32> {
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
pub(super) fn weight_grad_from(du: &[f32], d: &Geom) -> Vec<f32> {
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
pub(super) fn chunk_tiles(tl: &Tiles, t0: usize) -> [(usize, usize); LANES] {
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
pub(super) fn lane_offsets(tl: &Tiles, t0: usize, lanes: usize, width: usize) -> [usize; LANES] {
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
pub(super) fn gather(src: &[f32], at: &[usize; LANES]) -> [f32; LANES] {
    [
        src[at[0]], src[at[1]], src[at[2]], src[at[3]], src[at[4]], src[at[5]], src[at[6]],
        src[at[7]],
    ]
}

/// `dst = src` for a short row, in fixed 8-float moves rather than a `memcpy` call.
#[inline(always)]
pub(super) fn copy_row(dst: &mut [f32], src: &[f32]) {
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
pub(super) fn copy_lanes(dst: &mut [f32], src: &[f32], lanes: usize) {
    if lanes == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        copy_tail(dst, src, lanes);
    }
}

/// The short last chunk of [`copy_lanes`], out of line so that LLVM does not merge
/// both branches into one `memcpy` of `lanes` floats.
#[inline(never)]
pub(super) fn copy_tail(dst: &mut [f32], src: &[f32], lanes: usize) {
    dst[..lanes].copy_from_slice(&src[..lanes]);
}
