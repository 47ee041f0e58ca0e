//! Fused scaled dot-product attention, `softmax(Q·Kᵀ/√d + mask)·V`, with its own backward.
//!
//! The op never materialises the `[L, S]` matrix of scores of a (batch, head) pair:
//! the forward walks the keys in tiles of `TILE_K` (64) for a tile of `TILE_Q` (64) queries,
//! keeping a running maximum `m`, a running sum `l` and a running output per query row
//! (the online softmax of FlashAttention). It saves only the output and one number per
//! query row, the log-sum-exp `m + ln l`. The backward recomputes each tile's scores
//! from Q and K, gets the probabilities as `exp(s − lse)`, and forms
//! `dV += Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))`, `dQ += dS·K/√d`,
//! `dK += dSᵀ·Q/√d` tile by tile (`attention_pair`). The tile products go through the
//! small no-pack kernel of `attention_gemm`, which skips the dead triangle of a causal
//! mask's diagonal tiles.
//!
//! (batch, head) pairs are independent and are split between threads (up to
//! [`crate::num_threads`]); each pair's arithmetic runs in the same order whatever
//! the thread count, so results do not depend on it.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::attention_kernels::{backward_one, forward_one, Geometry, MaskGeom, MaskKind};
use crate::parallel::{for_each_piece2, for_each_piece3};
use crate::pool;
use crate::shape::{broadcast_shapes, broadcast_strides, for_each_offset2, numel, Shape};
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

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

/// The multiply-adds of the whole op, for deciding whether to split the (batch, head)
/// pairs across threads (0: too little to be worth it), or `None` when a matrix is
/// empty and the pairs must run one by one (they cannot be cut into equal pieces).
fn parallel_work(g: &Geometry) -> Option<usize> {
    let sizes_ok = g.l > 0 && g.s > 0 && g.d > 0 && g.dv > 0;
    let work = g.batch() * g.l * g.s * (g.d + g.dv);
    sizes_ok.then_some(if work >= PARALLEL_MIN { work } else { 0 })
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

impl Drop for AttentionRecord {
    /// The saved log-sum-exps go back to the pool (a plain `Vec` would be freed, and the
    /// next step would allocate a buffer of its size again).
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.lse));
    }
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
        match parallel_work(geom) {
            Some(work) => {
                let pieces = ((&mut dq[..], l * d), (&mut dk[..], s * d));
                for_each_piece3(pieces.0, pieces.1, (&mut dvv, s * dv), work, one);
            }
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
    ///
    /// ```
    /// use tapegrad_autograd::{AttnMask, Tensor};
    ///
    /// let q = Tensor::ones(&[2, 4, 3, 8]); // [B, H, T, D]
    /// let causal = q.scaled_dot_product_attention(&q, &q, None, true);
    /// assert_eq!(causal.shape(), &[2, 4, 3, 8]);
    /// // The same with an explicit "may attend" mask, PyTorch's bool mask as 0/1.
    /// let keep = Tensor::ones(&[3, 3]).tril(0);
    /// let masked = q.scaled_dot_product_attention(&q, &q, Some(AttnMask::Keep(&keep)), false);
    /// assert_eq!(masked.to_vec(), causal.to_vec());
    /// ```
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
            match parallel_work(geom) {
                Some(work) => for_each_piece2((&mut out, l * dv), (&mut lse, l), work, one),
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
