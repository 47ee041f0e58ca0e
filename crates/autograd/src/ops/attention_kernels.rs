//! The per-(batch, head) kernels of the fused attention (see `attention` and
//! `attention_packed`): the forward with its online softmax over key tiles, and the
//! tiled backward that recomputes the scores. Each works on one pair's contiguous
//! matrices and touches nothing shared, so the caller may run pairs on different threads.
//!
//! Under a causal mask a query row only looks at its live keys (`0..=i`): the scaling,
//! maximum, exponentials and sums skip the masked part of the diagonal tile, whose
//! probabilities are plain zeros. The row maximum and sum run in 8 independent lanes
//! (so the compiler vectorises them); their order is fixed by the row length alone.

use crate::ops::gemm::{gemm_into, MatRef};
use crate::ops::vecmath::exp_in_place;
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
fn key_end(g: &Geometry, r_end: usize) -> usize {
    if g.causal {
        g.s.min(r_end)
    } else {
        g.s
    }
}

/// The keys `c0 .. c0 + keys` of a tile that query `r` may see under the causal mask:
/// the first `live` of them (all of them without the mask).
#[inline]
fn live_keys(g: &Geometry, r: usize, c0: usize, keys: usize) -> usize {
    if g.causal {
        (r + 1).saturating_sub(c0).min(keys)
    } else {
        keys
    }
}

/// The largest element (−∞ for none), in 8 lanes. NaNs are skipped, as `f32::max` does.
#[inline]
fn max_of(x: &[f32]) -> f32 {
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

/// The sum of the elements, in 8 lanes then the tail.
#[inline]
fn sum_of(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += v;
        }
    }
    let pairs = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    let total = (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]);
    tail.iter().fold(total, |t, &v| t + v)
}

/// Raw scores of queries `q_rows` against keys `k_rows` into `dst` (rows × keys).
fn tile_scores(g: &Geometry, q: &[f32], k: &[f32], rows: usize, keys: usize, dst: &mut [f32]) {
    gemm_into(
        rows,
        keys,
        g.d,
        MatRef::rows(q, g.d),
        MatRef::transposed(k, g.d),
        &mut dst[..rows * keys],
        false,
    );
}

/// One pair's mask: the saved mask's geometry, its data, and the pair's base offset.
pub(crate) type PairMask<'a> = Option<(&'a MaskGeom, &'a [f32], usize)>;

/// The largest score of a row of raw scores (−∞ when all are masked out), where a
/// score is the scaled raw value plus the mask. With a mask the row is rewritten to
/// hold the scores; without one it is left raw (see [`shift_row`]).
#[inline]
fn row_max(g: &Geometry, row: &mut [f32], r: usize, c0: usize, mask: PairMask<'_>) -> f32 {
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
fn shift_row(g: &Geometry, row: &mut [f32], masked: bool, m: f32) {
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
    let q = &q[g.q_index[b] * l * d..][..l * d];
    let k = &k[g.k_index[b] * s * d..][..s * d];
    let v = &v[g.v_index[b] * s * dv..][..s * dv];
    let mask = mask.map(|(m, data)| (m, data, m.base[b]));
    let mut scores = pool::for_overwrite(TILE_Q * TILE_K);
    forward_pair(g, (q, k, v), mask, out, lse, &mut scores);
    pool::give(scores);
}

/// Forward for one pair's contiguous `q` (L × D), `k` (S × D), `v` (S × Dv) into `out`
/// (L × Dv) and `lse` (L); `scores` is scratch of `TILE_Q · TILE_K` floats.
pub(crate) fn forward_pair(
    g: &Geometry,
    (q, k, v): (&[f32], &[f32], &[f32]),
    mask: PairMask<'_>,
    out: &mut [f32],
    lse: &mut [f32],
    scores: &mut [f32],
) {
    let (l, d, dv) = (g.l, g.d, g.dv);
    let mut run_max = [0.0f32; TILE_Q];
    let mut run_sum = [0.0f32; TILE_Q];
    for r0 in (0..l).step_by(TILE_Q) {
        let rows = TILE_Q.min(l - r0);
        let acc = &mut out[r0 * dv..(r0 + rows) * dv];
        acc.fill(0.0);
        run_max[..rows].fill(f32::NEG_INFINITY);
        run_sum[..rows].fill(0.0);
        let k_end = key_end(g, r0 + rows);
        for c0 in (0..k_end).step_by(TILE_K) {
            let keys = TILE_K.min(k_end - c0);
            tile_scores(g, &q[r0 * d..], &k[c0 * d..], rows, keys, scores);
            for i in 0..rows {
                let r = r0 + i;
                let (live, dead) =
                    scores[i * keys..(i + 1) * keys].split_at_mut(live_keys(g, r, c0, keys));
                // Masked keys get probability 0 (exp(−∞)).
                dead.fill(0.0);
                let tile_max = row_max(g, live, r, c0, mask);
                let new_max = run_max[i].max(tile_max);
                if new_max == f32::NEG_INFINITY {
                    // Every key so far is masked out: nothing to add yet.
                    live.fill(0.0);
                    continue;
                }
                let rescale = (run_max[i] - new_max).exp();
                shift_row(g, live, mask.is_some(), new_max);
                exp_in_place(live);
                // Over the whole row, masked zeros included, so that a causal mask and
                // the same mask given explicitly sum alike.
                let total = sum_of(&scores[i * keys..(i + 1) * keys]);
                run_sum[i] = run_sum[i] * rescale + total;
                run_max[i] = new_max;
                if rescale != 1.0 {
                    acc[i * dv..(i + 1) * dv]
                        .iter_mut()
                        .for_each(|a| *a *= rescale);
                }
            }
            gemm_into(
                rows,
                dv,
                keys,
                MatRef::rows(&scores[..rows * keys], keys),
                MatRef::rows(&v[c0 * dv..(c0 + keys) * dv], dv),
                acc,
                true,
            );
        }
        for i in 0..rows {
            // A row whose keys are all masked out gives zeros (as PyTorch's CPU kernel
            // does), and `lse = -inf` makes its backward zero too.
            if run_sum[i] > 0.0 {
                let inv = 1.0 / run_sum[i];
                acc[i * dv..(i + 1) * dv].iter_mut().for_each(|a| *a *= inv);
                lse[r0 + i] = run_max[i] + run_sum[i].ln();
            } else {
                lse[r0 + i] = f32::NEG_INFINITY;
            }
        }
    }
}

/// Scratch floats [`backward_pair`] needs for `l` query rows.
pub(crate) fn backward_scratch_len(l: usize) -> usize {
    2 * TILE_Q * TILE_K + l
}

/// Gradients of one (batch, head) pair into `dq` (L × D), `dk` (S × D), `dv_out` (S × Dv),
/// which start at zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_one(
    g: &Geometry,
    b: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    mask: Option<(&MaskGeom, &[f32])>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    grads: (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (l, s, d, dv) = (g.l, g.s, g.d, g.dv);
    let q = &q[g.q_index[b] * l * d..][..l * d];
    let k = &k[g.k_index[b] * s * d..][..s * d];
    let v = &v[g.v_index[b] * s * dv..][..s * dv];
    let out = &out[b * l * dv..][..l * dv];
    let dout = &dout[b * l * dv..][..l * dv];
    let lse = &lse[b * l..][..l];
    let mask = mask.map(|(m, data)| (m, data, m.base[b]));
    let mut scratch = pool::for_overwrite(backward_scratch_len(l));
    backward_pair(g, (q, k, v), mask, (out, lse, dout), grads, &mut scratch);
    pool::give(scratch);
}

/// Gradients of one pair's contiguous matrices (see [`forward_pair`]) into `dq`
/// (L × D), `dk` (S × D), `dv_out` (S × Dv), which start at zero; `scratch` holds at
/// least [`backward_scratch_len`] floats.
pub(crate) fn backward_pair(
    g: &Geometry,
    (q, k, v): (&[f32], &[f32], &[f32]),
    mask: PairMask<'_>,
    (out, lse, dout): (&[f32], &[f32], &[f32]),
    (dq, dk, dv_out): (&mut [f32], &mut [f32], &mut [f32]),
    scratch: &mut [f32],
) {
    let (l, d, dv) = (g.l, g.d, g.dv);
    let (p, rest) = scratch.split_at_mut(TILE_Q * TILE_K);
    let (dp, rest) = rest.split_at_mut(TILE_Q * TILE_K);
    let delta = &mut rest[..l];
    // rowsum(dO ∘ O) = Σ_j P_ij·dP_ij, the softmax backward's subtracted term.
    for (i, di) in delta.iter_mut().enumerate() {
        let (o, g) = (&out[i * dv..(i + 1) * dv], &dout[i * dv..(i + 1) * dv]);
        *di = o.iter().zip(g).map(|(a, b)| a * b).sum();
    }
    for r0 in (0..l).step_by(TILE_Q) {
        let rows = TILE_Q.min(l - r0);
        let k_end = key_end(g, r0 + rows);
        for c0 in (0..k_end).step_by(TILE_K) {
            let keys = TILE_K.min(k_end - c0);
            let (p, dp) = (&mut p[..rows * keys], &mut dp[..rows * keys]);
            tile_scores(g, &q[r0 * d..], &k[c0 * d..], rows, keys, p);
            for i in 0..rows {
                let r = r0 + i;
                let m = lse[r];
                let live = if m == f32::NEG_INFINITY {
                    // Every key of this row is masked out: no probability anywhere.
                    0
                } else {
                    live_keys(g, r, c0, keys)
                };
                let (row, dead) = p[i * keys..(i + 1) * keys].split_at_mut(live);
                dead.fill(0.0);
                // A masked score is −∞, whose exponential is 0.
                if mask.is_some() {
                    row_max(g, row, r, c0, mask);
                }
                shift_row(g, row, mask.is_some(), m);
                exp_in_place(row);
            }
            let dout_i = &dout[r0 * dv..(r0 + rows) * dv];
            // dV_j += Pᵀ · dO_i
            gemm_into(
                keys,
                dv,
                rows,
                MatRef::transposed(p, keys),
                MatRef::rows(dout_i, dv),
                &mut dv_out[c0 * dv..(c0 + keys) * dv],
                true,
            );
            // dP = dO_i · V_jᵀ
            gemm_into(
                rows,
                keys,
                dv,
                MatRef::rows(dout_i, dv),
                MatRef::transposed(&v[c0 * dv..(c0 + keys) * dv], dv),
                dp,
                false,
            );
            // dS = P ∘ (dP − delta) · scale, written over dp (0 where P is 0).
            for i in 0..rows {
                let r = r0 + i;
                let di = delta[r];
                let live = if lse[r] == f32::NEG_INFINITY {
                    0
                } else {
                    live_keys(g, r, c0, keys)
                };
                let (ds, dead) = dp[i * keys..(i + 1) * keys].split_at_mut(live);
                dead.fill(0.0);
                for (x, &pv) in ds.iter_mut().zip(&p[i * keys..i * keys + live]) {
                    *x = pv * (*x - di) * g.scale;
                }
            }
            // dQ_i += dS · K_j ; dK_j += dSᵀ · Q_i
            gemm_into(
                rows,
                d,
                keys,
                MatRef::rows(dp, keys),
                MatRef::rows(&k[c0 * d..(c0 + keys) * d], d),
                &mut dq[r0 * d..(r0 + rows) * d],
                true,
            );
            gemm_into(
                keys,
                d,
                rows,
                MatRef::transposed(dp, keys),
                MatRef::rows(&q[r0 * d..(r0 + rows) * d], d),
                &mut dk[c0 * d..(c0 + keys) * d],
                true,
            );
        }
    }
}
