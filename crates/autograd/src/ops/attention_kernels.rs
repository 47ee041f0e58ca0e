//! The shared pieces of the fused attention (see `attention` and `attention_packed`):
//! the geometry and masks, the row helpers of the softmax, and `forward_one` /
//! `backward_one`, which run one (batch, head) pair of `scaled_dot_product_attention`
//! through the pair kernels of `attention_pair`. A pair touches nothing shared, so the
//! caller may run pairs on different threads.
//!
//! Under a causal mask a query row only looks at its live keys (`0..=i`): the scaling,
//! maximum, exponentials and sums skip the masked part of the diagonal tile, whose
//! probabilities are plain zeros. The row maximum and sum run in 8 independent lanes
//! (so the compiler vectorises them); their order is fixed by the row length alone.

use crate::ops::attention_pair::{
    backward_pair, backward_scratch_len, forward_pair, forward_scratch_len, PairGrads, Rows,
};
use crate::pool;

/// Query rows per tile.
pub(crate) const TILE_Q: usize = 64;
/// Key rows per tile: a score block is at most `TILE_Q × TILE_K` floats.
pub(crate) const TILE_K: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaskKind {
    Additive,
    Keep,
}

/// How a saved mask is read for batch `b`: element (r, c) is
/// `data[base[b] + r·row_stride + c·col_stride]`.
/// (Plain data, no tensor handle, so threads can share it.)
pub(crate) struct MaskGeom {
    pub(crate) kind: MaskKind,
    pub(crate) base: Vec<usize>,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// Sizes, and which matrix of each operand every (batch, head) pair reads.
pub(crate) struct Geometry {
    pub(crate) l: usize,
    pub(crate) s: usize,
    pub(crate) d: usize,
    pub(crate) dv: usize,
    pub(crate) q_index: Vec<usize>,
    pub(crate) k_index: Vec<usize>,
    pub(crate) v_index: Vec<usize>,
    pub(crate) causal: bool,
    pub(crate) scale: f32,
}

impl Geometry {
    pub(crate) fn batch(&self) -> usize {
        self.q_index.len()
    }
}

/// The scaled, masked score of query `r` and key `c` from its raw dot product.
#[inline]
fn masked_score(
    raw: f32,
    r: usize,
    c: usize,
    g: &Geometry,
    mask: Option<(&MaskGeom, &[f32], usize)>,
) -> f32 {
    if g.causal && c > r {
        return f32::NEG_INFINITY;
    }
    let x = raw * g.scale;
    match mask {
        None => x,
        Some((m, data, base)) => {
            let v = data[base + r * m.row_stride + c * m.col_stride];
            match m.kind {
                MaskKind::Additive => x + v,
                MaskKind::Keep if v != 0.0 => x,
                MaskKind::Keep => f32::NEG_INFINITY,
            }
        }
    }
}

/// Key tiles a query tile ending at row `r_end` (exclusive) looks at: with a causal
/// mask, no key after the tile's last query.
pub(super) fn key_end(g: &Geometry, r_end: usize) -> usize {
    if g.causal {
        g.s.min(r_end)
    } else {
        g.s
    }
}

/// The keys `c0 .. c0 + keys` of a tile that query `r` may see under the causal mask:
/// the first `live` of them (all of them without the mask).
#[inline]
pub(super) fn live_keys(g: &Geometry, r: usize, c0: usize, keys: usize) -> usize {
    if g.causal {
        (r + 1).saturating_sub(c0).min(keys)
    } else {
        keys
    }
}

/// The largest element (−∞ for none), in 8 lanes. NaNs are skipped, as `f32::max` does.
#[inline]
pub(super) fn max_of(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut m = tail.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for l in lanes {
        m = m.max(l);
    }
    m
}

/// Eight running sums added pairwise, the order [`sum_of`] and [`dot_of`] share.
#[inline]
fn combine_lanes(lanes: &[f32; 8]) -> f32 {
    let pairs = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3])
}

/// The sum of the elements, in 8 lanes then the tail.
#[inline]
pub(super) fn sum_of(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += v;
        }
    }
    let total = combine_lanes(&lanes);
    tail.iter().fold(total, |t, &v| t + v)
}

/// `Σ a_i·b_i` in 8 lanes, then the tail (the pairwise order of [`sum_of`]): a plain
/// running sum is one chain of dependent adds the compiler may not reorder.
#[inline]
pub(super) fn dot_of(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, &u), &v) in lanes.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    let total = combine_lanes(&lanes);
    ta.iter().zip(tb).fold(total, |t, (&u, &v)| t + u * v)
}

/// One pair's mask: the saved mask's geometry, its data, and the pair's base offset.
pub(crate) type PairMask<'a> = Option<(&'a MaskGeom, &'a [f32], usize)>;

/// The largest score of a row of raw scores (−∞ when all are masked out), where a
/// score is the scaled raw value plus the mask. With a mask the row is rewritten to
/// hold the scores; without one it is left raw (see [`shift_row`]).
#[inline]
pub(super) fn row_max(
    g: &Geometry,
    row: &mut [f32],
    r: usize,
    c0: usize,
    mask: PairMask<'_>,
) -> f32 {
    if mask.is_none() {
        // The largest scaled score is the largest raw one scaled: the scale is positive
        // and rounding is monotonic. Each score is then formed once, by `shift_row`.
        return max_of(row) * g.scale;
    }
    for (j, x) in row.iter_mut().enumerate() {
        *x = masked_score(*x, r, c0 + j, g, mask);
    }
    max_of(row)
}

/// `score − m` for a row [`row_max`] has seen (raw without a mask, scores with one).
#[inline]
pub(super) fn shift_row(g: &Geometry, row: &mut [f32], masked: bool, m: f32) {
    if masked {
        row.iter_mut().for_each(|x| *x -= m);
    } else {
        let scale = g.scale;
        row.iter_mut().for_each(|x| *x = *x * scale - m);
    }
}

/// Forward for one (batch, head) pair: `out` (L × Dv) and `lse` (L).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_one(
    g: &Geometry,
    b: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<(&MaskGeom, &[f32])>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let (l, s, d, dv) = (g.l, g.s, g.d, g.dv);
    let q = Rows::new(&q[g.q_index[b] * l * d..][..l * d], d);
    let k = Rows::new(&k[g.k_index[b] * s * d..][..s * d], d);
    let v = Rows::new(&v[g.v_index[b] * s * dv..][..s * dv], dv);
    let mask = mask.map(|(m, data)| (m, data, m.base[b]));
    let mut scratch = pool::for_overwrite(forward_scratch_len(g));
    forward_pair(g, (q, k, v), mask, (out, dv), lse, None, &mut scratch);
    pool::give(scratch);
}

/// Gradients of one (batch, head) pair into `dq` (L × D), `dk` (S × D), `dv_out` (S × Dv);
/// every element is written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_one(
    g: &Geometry,
    b: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    mask: Option<(&MaskGeom, &[f32])>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    (dq, dk, dv_out): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (l, s, d, dv) = (g.l, g.s, g.d, g.dv);
    let q = Rows::new(&q[g.q_index[b] * l * d..][..l * d], d);
    let k = Rows::new(&k[g.k_index[b] * s * d..][..s * d], d);
    let v = Rows::new(&v[g.v_index[b] * s * dv..][..s * dv], dv);
    let out = Rows::new(&out[b * l * dv..][..l * dv], dv);
    let dout = Rows::new(&dout[b * l * dv..][..l * dv], dv);
    let lse = &lse[b * l..][..l];
    let mask = mask.map(|(m, data)| (m, data, m.base[b]));
    let mut scratch = pool::for_overwrite(backward_scratch_len(g));
    let grads = PairGrads::Separate([dq, dk, dv_out]);
    backward_pair(
        g,
        (q, k, v),
        mask,
        (out, lse, dout),
        None,
        grads,
        &mut scratch,
    );
    pool::give(scratch);
}
