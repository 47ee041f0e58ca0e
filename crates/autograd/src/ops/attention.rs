//! Fused scaled dot-product attention, `softmax(Q·Kᵀ/√d + mask)·V`, with its own backward.
//!
//! The op never materialises the `[L, S]` matrix of scores of a (batch, head) pair:
//! the forward walks the keys in tiles of [`TILE_K`] for a tile of [`TILE_Q`] queries,
//! keeping a running maximum `m`, a running sum `l` and a running output per query row
//! (the online softmax of FlashAttention). It saves only the output and one number per
//! query row, the log-sum-exp `m + ln l`. The backward recomputes each tile's scores
//! from Q and K, gets the probabilities as `exp(s − lse)`, and forms
//! `dV += Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))`, `dQ += dS·K/√d`,
//! `dK += dSᵀ·Q/√d` tile by tile. Each tile product goes through `gemm_into`.
//!
//! (batch, head) pairs are independent and are split between threads (up to
//! [`crate::num_threads`]); each pair's arithmetic runs in the same order whatever
//! the thread count, so results do not depend on it.

use rayon::prelude::*;

use crate::error::{or_panic, Result, TensorError};
use crate::ops::gemm::{gemm_into, num_threads, MatRef};
use crate::pool;
use crate::shape::{broadcast_shapes, broadcast_strides, for_each_offset2, numel, Shape};
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// Query rows per tile.
const TILE_Q: usize = 64;
/// Key rows per tile: a score block is at most `TILE_Q × TILE_K` floats.
const TILE_K: usize = 64;
/// Below this many multiply-adds in all, threads cost more than they save.
const PARALLEL_MIN: usize = 1 << 18;

/// An attention mask, in PyTorch's two kinds. PyTorch tells them apart by dtype (a
/// bool `attn_mask` keeps the positions that are `True`; a float one is added to the
/// scores); tapegrad has one element type, so the kind is this enum's variant.
///
/// Either kind broadcasts to the scores' shape `[..., L, S]` and takes no gradient.
#[derive(Clone, Copy, Debug)]
pub enum AttnMask<'a> {
    /// Added to the scaled scores before the softmax: 0 keeps a position, `-inf` drops
    /// it (PyTorch's float mask).
    Additive(&'a Tensor),
    /// PyTorch's bool mask written as 0/1: a non-zero element means the query may
    /// attend to that key; zero drops the position.
    Keep(&'a Tensor),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MaskKind {
    Additive,
    Keep,
}

/// How a saved mask is read for batch `b`: element (r, c) is
/// `data[base[b] + r·row_stride + c·col_stride]`.
/// (Plain data, no tensor handle, so threads can share it.)
struct MaskGeom {
    kind: MaskKind,
    base: Vec<usize>,
    row_stride: usize,
    col_stride: usize,
}

/// Sizes, and which matrix of each operand every (batch, head) pair reads.
struct Geometry {
    l: usize,
    s: usize,
    d: usize,
    dv: usize,
    q_index: Vec<usize>,
    k_index: Vec<usize>,
    v_index: Vec<usize>,
    causal: bool,
    scale: f32,
}

impl Geometry {
    fn batch(&self) -> usize {
        self.q_index.len()
    }
}

/// For every index of `batch_shape`, the index of the matrix an operand with batch axes
/// `own` (which broadcast to `batch_shape`) holds there.
fn matrix_index(own: &[usize], batch_shape: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(numel(batch_shape));
    if batch_shape.is_empty() {
        out.push(0);
        return out;
    }
    let strides = broadcast_strides(own, batch_shape);
    let zeros: Shape = smallvec::smallvec![0; batch_shape.len()];
    for_each_offset2(batch_shape, &strides, &zeros, |i, _| out.push(i));
    out
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
fn forward_one(
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
                let mut total = 0.0;
                for x in row.iter_mut() {
                    *x = (*x - new_max).exp();
                    total += *x;
                }
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
fn backward_one(
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
                for (j, x) in row.iter_mut().enumerate() {
                    let sc = masked_score(*x, r0 + i, c0 + j, g, mask);
                    *x = if m == f32::NEG_INFINITY || sc == f32::NEG_INFINITY {
                        0.0
                    } else {
                        (sc - m).exp()
                    };
                }
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

/// How many (batch, head) pairs each thread takes, or `None` to stay on this thread.
fn batches_per_thread(g: &Geometry) -> Option<usize> {
    let threads = num_threads();
    let work = g.batch() * g.l * g.s * (g.d + g.dv);
    let sizes_ok = g.l > 0 && g.s > 0 && g.d > 0 && g.dv > 0;
    (threads > 1 && g.batch() > 1 && work >= PARALLEL_MIN && sizes_ok)
        .then(|| g.batch().div_ceil(threads))
}

/// Sums per-pair gradients `full` (batch × `len`) into the operand's own matrices.
fn reduce_to_operand(full: Vec<f32>, index: &[usize], count: usize, len: usize) -> Vec<f32> {
    if count == index.len() && index.iter().enumerate().all(|(i, &j)| i == j) {
        return full;
    }
    let mut out = pool::zeros(count * len);
    for (b, &j) in index.iter().enumerate() {
        for (o, &x) in out[j * len..(j + 1) * len]
            .iter_mut()
            .zip(&full[b * len..(b + 1) * len])
        {
            *o += x;
        }
    }
    pool::give(full);
    out
}

pub(crate) struct AttentionRecord {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Option<(Tensor, MaskGeom)>,
    output: Tensor,
    lse: Vec<f32>,
    geom: Geometry,
}

impl AttentionRecord {
    pub(crate) fn backward(&self, g_out: &[f32], grads: &mut Grads) {
        let geom = &self.geom;
        let (l, s, d, dv) = (geom.l, geom.s, geom.d, geom.dv);
        let batch = geom.batch();
        let (q_ref, k_ref, v_ref) = (self.q.data(), self.k.data(), self.v.data());
        let out_ref = self.output.data();
        let mask_ref = self.mask.as_ref().map(|(t, _)| t.data());
        // Plain slices (not `Ref`s) so that threads can share them.
        let (q, k, v, out) = (&*q_ref, &*k_ref, &*v_ref, &*out_ref);
        let lse = &self.lse[..];
        let mask = self.mask.as_ref().map(|(_, m)| m).zip(mask_ref.as_deref());
        let mut dq = pool::zeros(batch * l * d);
        let mut dk = pool::zeros(batch * s * d);
        let mut dvv = pool::zeros(batch * s * dv);
        let one = |b: usize, dq: &mut [f32], dk: &mut [f32], dvv: &mut [f32]| {
            backward_one(geom, b, (q, k, v), mask, out, lse, g_out, (dq, dk, dvv));
        };
        match batches_per_thread(geom) {
            Some(per) => dq
                .par_chunks_mut(per * l * d)
                .zip(dk.par_chunks_mut(per * s * d))
                .zip(dvv.par_chunks_mut(per * s * dv))
                .enumerate()
                .for_each(|(c, ((dq, dk), dvv))| {
                    for i in 0..dq.len() / (l * d) {
                        one(
                            c * per + i,
                            &mut dq[i * l * d..(i + 1) * l * d],
                            &mut dk[i * s * d..(i + 1) * s * d],
                            &mut dvv[i * s * dv..(i + 1) * s * dv],
                        );
                    }
                }),
            None => {
                for b in 0..batch {
                    one(
                        b,
                        &mut dq[b * l * d..(b + 1) * l * d],
                        &mut dk[b * s * d..(b + 1) * s * d],
                        &mut dvv[b * s * dv..(b + 1) * s * dv],
                    );
                }
            }
        }
        drop((q_ref, k_ref, v_ref, out_ref, mask_ref));
        let parts = [
            (&self.q, dq, &geom.q_index, l * d),
            (&self.k, dk, &geom.k_index, s * d),
            (&self.v, dvv, &geom.v_index, s * dv),
        ];
        for (t, full, index, len) in parts {
            if grads.wants(t) {
                let count = t.numel() / len.max(1);
                grads.add(t, reduce_to_operand(full, index, count, len));
            } else {
                pool::give(full);
            }
        }
    }
}

impl Tensor {
    /// PyTorch's `F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=...)` as one
    /// fused op: `softmax(Q·Kᵀ/√D + mask)·V` for `self` = Q `[..., L, D]`, `k` `[..., S, D]`,
    /// `v` `[..., S, Dv]`, giving `[..., L, Dv]`; the leading axes broadcast.
    ///
    /// `is_causal` lets query `i` attend to keys `0..=i` only (PyTorch's top-left aligned
    /// causal mask, `ones(L, S).tril()`). `mask` (see [`AttnMask`]) broadcasts to
    /// `[..., L, S]`. Unlike PyTorch, which refuses `attn_mask` with `is_causal=True`,
    /// both may be given: a position must pass both. A query whose keys are all masked
    /// out gets zeros, as from PyTorch's CPU kernel. No dropout; masks take no gradient.
    ///
    /// Memory: beyond its output the op saves one f32 per query row; the scores exist
    /// only as one 64 × 64 tile per (batch, head) pair being worked on.
    pub fn try_scaled_dot_product_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        mask: Option<AttnMask<'_>>,
        is_causal: bool,
    ) -> Result<Tensor> {
        const OP: &str = "scaled_dot_product_attention";
        let q = self;
        let bad = |lhs: &Tensor, rhs: &Tensor, detail| TensorError::ShapeMismatch {
            op: OP,
            lhs: lhs.shape().to_vec(),
            rhs: rhs.shape().to_vec(),
            detail,
        };
        if q.rank() < 2 || k.rank() < 2 || v.rank() < 2 {
            return Err(TensorError::InvalidArgument {
                op: OP,
                reason: format!(
                    "q, k and v need at least 2 axes ([..., T, D]), got {:?}, {:?} and {:?}",
                    q.shape(),
                    k.shape(),
                    v.shape()
                ),
            });
        }
        let (rq, rk, rv) = (q.rank() - 2, k.rank() - 2, v.rank() - 2);
        let (l, d) = (q.shape()[rq], q.shape()[rq + 1]);
        let (s, dk) = (k.shape()[rk], k.shape()[rk + 1]);
        let (sv, dv) = (v.shape()[rv], v.shape()[rv + 1]);
        if d != dk {
            return Err(bad(
                q,
                k,
                "query {} and key {} differ in their last axis (the head width)",
            ));
        }
        if s != sv {
            return Err(bad(
                k,
                v,
                "key {} and value {} differ in their sequence axis",
            ));
        }
        let batch_shape = broadcast_shapes(&q.shape()[..rq], &k.shape()[..rk])
            .and_then(|qk| broadcast_shapes(&qk, &v.shape()[..rv]))
            .ok_or_else(|| TensorError::InvalidArgument {
                op: OP,
                reason: format!(
                    "the batch axes of q {:?}, k {:?} and v {:?} do not broadcast together",
                    q.shape(),
                    k.shape(),
                    v.shape()
                ),
            })?;
        let geom = Geometry {
            l,
            s,
            d,
            dv,
            q_index: matrix_index(&q.shape()[..rq], &batch_shape),
            k_index: matrix_index(&k.shape()[..rk], &batch_shape),
            v_index: matrix_index(&v.shape()[..rv], &batch_shape),
            causal: is_causal,
            scale: 1.0 / (d as f32).sqrt(),
        };
        let mut scores_shape = batch_shape.clone();
        scores_shape.extend_from_slice(&[l, s]);
        let mask = match mask {
            None => None,
            Some(m) => {
                let (t, kind) = match m {
                    AttnMask::Additive(t) => (t, MaskKind::Additive),
                    AttnMask::Keep(t) => (t, MaskKind::Keep),
                };
                let fits =
                    broadcast_shapes(t.shape(), &scores_shape).is_some_and(|sh| sh == scores_shape);
                if !fits {
                    return Err(TensorError::ShapeMismatch {
                        op: OP,
                        lhs: t.shape().to_vec(),
                        rhs: scores_shape.to_vec(),
                        detail: "the mask {} does not broadcast to the attention scores' shape {} \
                                 ([..., L, S])",
                    });
                }
                let strides = broadcast_strides(t.shape(), &scores_shape);
                let nb = batch_shape.len();
                let base = if nb == 0 {
                    vec![0]
                } else {
                    let zeros: Shape = smallvec::smallvec![0; nb];
                    let mut base = Vec::with_capacity(geom.batch());
                    for_each_offset2(&batch_shape, &strides[..nb], &zeros, |i, _| base.push(i));
                    base
                };
                Some((
                    t.clone(),
                    MaskGeom {
                        kind,
                        base,
                        row_stride: strides[nb],
                        col_stride: strides[nb + 1],
                    },
                ))
            }
        };

        let batch = geom.batch();
        let mut out = pool::zeros(batch * l * dv);
        let mut lse = pool::for_overwrite(batch * l);
        {
            let (q_ref, k_ref, v_ref) = (q.data(), k.data(), v.data());
            let mask_data = mask.as_ref().map(|(t, _)| t.data());
            // Plain slices (not `Ref`s) so that threads can share them.
            let (qd, kd, vd) = (&*q_ref, &*k_ref, &*v_ref);
            let mask_ref = mask.as_ref().map(|(_, m)| m).zip(mask_data.as_deref());
            let geom = &geom;
            let one = |b: usize, out: &mut [f32], lse: &mut [f32]| {
                forward_one(geom, b, qd, kd, vd, mask_ref, out, lse);
            };
            match batches_per_thread(geom) {
                Some(per) => out
                    .par_chunks_mut(per * l * dv)
                    .zip(lse.par_chunks_mut(per * l))
                    .enumerate()
                    .for_each(|(c, (out, lse))| {
                        for i in 0..lse.len() / l {
                            one(
                                c * per + i,
                                &mut out[i * l * dv..(i + 1) * l * dv],
                                &mut lse[i * l..(i + 1) * l],
                            );
                        }
                    }),
                None => {
                    for b in 0..batch {
                        one(
                            b,
                            &mut out[b * l * dv..(b + 1) * l * dv],
                            &mut lse[b * l..(b + 1) * l],
                        );
                    }
                }
            }
        }
        let mut out_shape = batch_shape;
        out_shape.extend_from_slice(&[l, dv]);
        let out = Tensor::from_parts(out, out_shape);
        let saved = out.clone();
        let mut lse = Some(lse);
        let out = tape::record(out, &[q, k, v], || {
            Op::Attention(AttentionRecord {
                q: q.clone(),
                k: k.clone(),
                v: v.clone(),
                mask,
                output: saved,
                lse: lse.take().expect("recorded once"),
                geom,
            })
        });
        if let Some(lse) = lse {
            pool::give(lse);
        }
        Ok(out)
    }

    /// Fused attention; panics with the shapes when they do not fit (see
    /// [`Tensor::try_scaled_dot_product_attention`]).
    #[track_caller]
    pub fn scaled_dot_product_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        mask: Option<AttnMask<'_>>,
        is_causal: bool,
    ) -> Tensor {
        or_panic(self.try_scaled_dot_product_attention(k, v, mask, is_causal))
    }
}
