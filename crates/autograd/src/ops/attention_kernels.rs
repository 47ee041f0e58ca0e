//! The per-(batch, head) kernels of the fused attention (see `attention`): the forward
//! with its online softmax over key tiles, and the tiled backward that recomputes the
//! scores. Each works on one pair's contiguous matrices and touches nothing shared, so
//! the caller may run pairs on different threads.

use crate::ops::gemm::{gemm_into, MatRef};
use crate::ops::vecmath::exp_in_place;

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
    let mut scores = vec![0.0f32; TILE_Q * TILE_K];
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
            tile_scores(g, &q[r0 * d..], &k[c0 * d..], rows, keys, &mut scores);
            for i in 0..rows {
                let row = &mut scores[i * keys..(i + 1) * keys];
                let mut tile_max = f32::NEG_INFINITY;
                for (j, x) in row.iter_mut().enumerate() {
                    *x = masked_score(*x, r0 + i, c0 + j, g, mask);
                    tile_max = tile_max.max(*x);
                }
                let new_max = run_max[i].max(tile_max);
                if new_max == f32::NEG_INFINITY {
                    // Every key so far is masked out: nothing to add yet.
                    row.fill(0.0);
                    continue;
                }
                let rescale = (run_max[i] - new_max).exp();
                row.iter_mut().for_each(|x| *x -= new_max);
                exp_in_place(row);
                let total = row.iter().fold(0.0f32, |t, &x| t + x);
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
    (dq, dk, dv_out): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (l, s, d, dv) = (g.l, g.s, g.d, g.dv);
    let q = &q[g.q_index[b] * l * d..][..l * d];
    let k = &k[g.k_index[b] * s * d..][..s * d];
    let v = &v[g.v_index[b] * s * dv..][..s * dv];
    let out = &out[b * l * dv..][..l * dv];
    let dout = &dout[b * l * dv..][..l * dv];
    let lse = &lse[b * l..][..l];
    let mask = mask.map(|(m, data)| (m, data, m.base[b]));
    // rowsum(dO ∘ O) = Σ_j P_ij·dP_ij, the softmax backward's subtracted term.
    let delta: Vec<f32> = (0..l)
        .map(|i| {
            let (o, g) = (&out[i * dv..(i + 1) * dv], &dout[i * dv..(i + 1) * dv]);
            o.iter().zip(g).map(|(a, b)| a * b).sum()
        })
        .collect();
    let mut p = vec![0.0f32; TILE_Q * TILE_K];
    let mut dp = vec![0.0f32; TILE_Q * TILE_K];
    for r0 in (0..l).step_by(TILE_Q) {
        let rows = TILE_Q.min(l - r0);
        let k_end = key_end(g, r0 + rows);
        for c0 in (0..k_end).step_by(TILE_K) {
            let keys = TILE_K.min(k_end - c0);
            let (p, dp) = (&mut p[..rows * keys], &mut dp[..rows * keys]);
            tile_scores(g, &q[r0 * d..], &k[c0 * d..], rows, keys, p);
            for i in 0..rows {
                let row = &mut p[i * keys..(i + 1) * keys];
                let m = lse[r0 + i];
                if m == f32::NEG_INFINITY {
                    // Every key of this row is masked out: no probability anywhere.
                    row.fill(0.0);
                    continue;
                }
                for (j, x) in row.iter_mut().enumerate() {
                    // A masked score is −∞, whose exponential is 0.
                    *x = masked_score(*x, r0 + i, c0 + j, g, mask) - m;
                }
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
            // dS = P ∘ (dP − delta) · scale, written over dp.
            for i in 0..rows {
                let di = delta[r0 + i];
                for (x, &pv) in dp[i * keys..(i + 1) * keys]
                    .iter_mut()
                    .zip(&p[i * keys..(i + 1) * keys])
                {
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
