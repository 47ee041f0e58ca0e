//! Multi-head self-attention read straight from a packed query/key/value projection.
//!
//! A GPT block projects `x` `[B, T, E]` to `qkv` `[B, T, 3E]` with one product, then
//! (nanoGPT, PyTorch's `MultiheadAttention`) splits it into `q`, `k`, `v`, views each as
//! `[B, H, T, D]`, runs the attention and merges the heads back to `[B, T, E]`. Written
//! from the separate ops, that is three narrow copies, three permute copies and one
//! more for the merge, each with its own backward copy and zero-filled gradient buffer.
//! [`Tensor::try_qkv_attention`] is the same computation as one op: it reads each
//! (batch, head) pair's `T × D` columns in place (rows `3E` apart), runs the fused
//! attention kernels of `attention_pair`, and writes the head's output into its
//! columns of `[B, T, E]`; the backward writes the three gradients straight into
//! their columns of one `[B, T, 3E]` buffer, each element exactly once.
//!
//! When the tape records and the keys fit one tile (T ≤ 64, a GPT's context here), the
//! forward saves each pair's probabilities (`[B, H, T, T]`, 1 MiB for w3's layer) and
//! the backward reads them instead of recomputing `Q·Kᵀ` and its exponentials.
//!
//! Threads split the batch (each batch element owns a contiguous block of the output
//! and of the gradient); a pair's arithmetic is the same whatever thread runs it, so
//! results do not depend on the thread count.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::attention_kernels::Geometry;
use crate::ops::attention_pair::{
    backward_pair, backward_scratch_len, forward_pair, forward_scratch_len, saves_probs, PairGrads,
    Rows,
};
use crate::parallel::{for_each_piece, for_each_piece2, for_each_piece3};
use crate::pool;
use crate::shape::Shape;
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// The sizes of one call: `t` positions, `e` channels in `heads` heads of width `d`.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    e: usize,
    heads: usize,
    d: usize,
}

impl Dims {
    /// The kernels' geometry for one (batch, head) pair of `T × D` matrices.
    fn geometry(self, causal: bool) -> Geometry {
        Geometry {
            l: self.t,
            s: self.t,
            d: self.d,
            dv: self.d,
            // Unused: the pair's slices are gathered here, not indexed by the kernels.
            q_index: Vec::new(),
            k_index: Vec::new(),
            v_index: Vec::new(),
            causal,
            scale: 1.0 / (self.d as f32).sqrt(),
        }
    }

    /// Multiply-adds of the whole op for `n` batch elements (for the thread decision).
    fn work(self, n: usize) -> usize {
        n * self.heads * self.t * self.t * 2 * self.d
    }
}

/// The query, key and value columns of head `h` in one batch element's `qkv` (T × 3E).
fn head_inputs(dims: Dims, qkv: &[f32], h: usize) -> (Rows<'_>, Rows<'_>, Rows<'_>) {
    let Dims { e, d, .. } = dims;
    let at = |col: usize| Rows::new(&qkv[col..], 3 * e);
    (at(h * d), at(e + h * d), at(2 * e + h * d))
}

/// Reads one float of every cache line of `data`, in order, and throws the bits away.
/// A batch element's blocks (`qkv`, `out`, `dout`, the probabilities, `dqkv`) are each
/// contiguous and together fit the core's L2 cache, but every head walks them as a
/// column of rows `E` or `3E` apart: one or two lines a row, a stride the hardware
/// prefetcher follows poorly across pages, so in a training step (operands cold, out
/// of a layer's other ops) the products stall on each new row. Streamed once in order
/// first, the blocks come in at full bandwidth for all the element's heads (the blocks
/// written too: their lines are then in the cache when the stores come). Integer
/// reads: no arithmetic on whatever an output block holds. Results are unchanged.
fn warm(data: &[f32]) {
    let mut lanes = [0u32; 8];
    for chunk in data.chunks(128) {
        for (l, x) in lanes.iter_mut().zip(chunk.iter().step_by(16)) {
            *l ^= x.to_bits();
        }
    }
    std::hint::black_box(lanes);
}

/// Forward for one batch element: `qkv` (T × 3E) into `out` (T × E) and `lse` (H × T),
/// and the probabilities into `probs` (H × T × T) when given.
fn forward_batch(
    dims: Dims,
    g: &Geometry,
    qkv: &[f32],
    (out, lse): (&mut [f32], &mut [f32]),
    mut probs: Option<&mut [f32]>,
) {
    let Dims { t, e, heads, d } = dims;
    let mut scratch = pool::for_overwrite(forward_scratch_len(g));
    // The inputs, and the output (written along the heads' strided rows).
    warm(qkv);
    warm(out);
    for h in 0..heads {
        let inputs = head_inputs(dims, qkv, h);
        let lse = &mut lse[h * t..(h + 1) * t];
        let probs = probs
            .as_deref_mut()
            .map(|p| &mut p[h * t * t..(h + 1) * t * t]);
        let out = (&mut out[h * d..], e);
        forward_pair(g, inputs, None, out, lse, probs, &mut scratch);
    }
    pool::give(scratch);
}

/// Backward for one batch element: from `qkv` (T × 3E), the saved output `out` (T × E),
/// `lse` (H × T), the saved probabilities (H × T × T, or empty) and the output's
/// gradient `dout` (T × E), writes every element of `dqkv` (T × 3E).
fn backward_batch(
    dims: Dims,
    g: &Geometry,
    (qkv, out, lse, dout): (&[f32], &[f32], &[f32], &[f32]),
    probs: &[f32],
    dqkv: &mut [f32],
) {
    let Dims { t, e, heads, d } = dims;
    let mut scratch = pool::for_overwrite(backward_scratch_len(g));
    // The inputs, and the gradient (written along the heads' strided rows).
    for part in [qkv, out, dout, probs, &*dqkv] {
        warm(part);
    }
    for h in 0..heads {
        let saved = (
            Rows::new(&out[h * d..], e),
            &lse[h * t..(h + 1) * t],
            Rows::new(&dout[h * d..], e),
        );
        let grads = PairGrads::Packed {
            data: &mut *dqkv,
            ld: 3 * e,
            offsets: [h * d, e + h * d, 2 * e + h * d],
        };
        let inputs = head_inputs(dims, qkv, h);
        let probs = (!probs.is_empty()).then(|| &probs[h * t * t..(h + 1) * t * t]);
        backward_pair(g, inputs, None, saved, probs, grads, &mut scratch);
    }
    pool::give(scratch);
}

pub(crate) struct QkvAttentionRecord {
    qkv: Tensor,
    output: Tensor,
    lse: Vec<f32>,
    /// The probabilities `[B, H, T, T]`, or empty when the forward did not save them.
    probs: Vec<f32>,
    dims: Dims,
    causal: bool,
}

impl Drop for QkvAttentionRecord {
    /// The saved log-sum-exps go back to the pool (a plain `Vec` would be freed, and the
    /// next step would allocate a buffer of its size again).
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.lse));
        if !self.probs.is_empty() {
            pool::give(std::mem::take(&mut self.probs));
        }
    }
}

impl QkvAttentionRecord {
    pub(crate) fn backward(&self, g_out: &[f32], grads: &mut Grads) {
        if !grads.wants(&self.qkv) {
            return;
        }
        let dims = self.dims;
        let geom = dims.geometry(self.causal);
        let n = self.qkv.numel() / (dims.t * 3 * dims.e).max(1);
        let mut dqkv = pool::for_overwrite(self.qkv.numel());
        {
            let (qkv_ref, out_ref) = (self.qkv.data(), self.output.data());
            // Plain slices (not `Ref`s) so that threads can share them.
            let (qkv, out, lse, probs) = (&*qkv_ref, &*out_ref, &self.lse[..], &self.probs[..]);
            let (te, te3, ht) = (dims.t * dims.e, dims.t * 3 * dims.e, dims.heads * dims.t);
            let htt = if probs.is_empty() { 0 } else { ht * dims.t };
            let geom = &geom;
            for_each_piece(&mut dqkv, te3, 2 * dims.work(n), |i, dqkv| {
                let inputs = (
                    &qkv[i * te3..(i + 1) * te3],
                    &out[i * te..(i + 1) * te],
                    &lse[i * ht..(i + 1) * ht],
                    &g_out[i * te..(i + 1) * te],
                );
                let probs = &probs[i * htt..(i + 1) * htt];
                backward_batch(dims, geom, inputs, probs, dqkv);
            });
        }
        grads.add(&self.qkv, dqkv);
    }
}

impl Tensor {
    /// Multi-head attention of a packed projection `self` = `[..., T, 3E]` (queries,
    /// keys and values side by side on the last axis, as a GPT's `c_attn` or PyTorch's
    /// `in_proj` makes them) with `num_heads` heads of width `D = E / num_heads`, giving
    /// `[..., T, E]` with the heads merged. The same as PyTorch's
    ///
    /// ```text
    /// q, k, v = qkv.split(E, dim=-1)                    # each [B, T, E]
    /// heads = lambda x: x.view(B, T, H, D).transpose(1, 2)
    /// y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=...)
    /// y.transpose(1, 2).reshape(B, T, E)
    /// ```
    ///
    /// as one op, without the copies of the split, the head views and the merge (see
    /// the module docs); [`Tensor::try_scaled_dot_product_attention`] for the masks this
    /// op does not take. Fails unless `num_heads` is positive and divides `E`, and the
    /// last axis is `3E` with `E > 0`.
    ///
    /// ```
    /// use tapegrad_autograd::Tensor;
    ///
    /// let qkv = Tensor::ones(&[2, 5, 3 * 8]); // [B, T, 3E], E = 8
    /// let y = qkv.qkv_attention(2, true);
    /// assert_eq!(y.shape(), &[2, 5, 8]);
    /// ```
    pub fn try_qkv_attention(&self, num_heads: usize, is_causal: bool) -> Result<Tensor> {
        const OP: &str = "qkv_attention";
        let shape = self.shape();
        let (lead, last) = match shape.len() {
            0 | 1 => (&[][..], None),
            r => (&shape[..r - 2], Some((shape[r - 2], shape[r - 1]))),
        };
        let ok =
            last.filter(|&(_, c)| c % 3 == 0 && c > 0 && num_heads > 0 && (c / 3) % num_heads == 0);
        let Some((t, c)) = ok else {
            return Err(TensorError::InvalidArgument {
                op: OP,
                reason: format!(
                    "expected [..., T, 3E] with E a positive multiple of num_heads \
                     {num_heads}, got {shape:?}"
                ),
            });
        };
        let e = c / 3;
        let dims = Dims {
            t,
            e,
            heads: num_heads,
            d: e / num_heads,
        };
        let n: usize = lead.iter().product();
        let geom = dims.geometry(is_causal);
        let mut out = pool::for_overwrite(n * t * e);
        let mut lse = pool::for_overwrite(n * num_heads * t);
        // Probabilities are saved for a backward only (and only over one key tile).
        let save = t > 0 && saves_probs(&geom) && tape::should_record(&[self]);
        let mut probs = if save {
            pool::for_overwrite(n * num_heads * t * t)
        } else {
            Vec::new()
        };
        if t > 0 {
            let qkv_ref = self.data();
            let qkv = &*qkv_ref;
            let (te3, geom) = (t * c, &geom);
            let pieces = ((&mut out[..], t * e), (&mut lse[..], num_heads * t));
            if save {
                let probs = (&mut probs[..], num_heads * t * t);
                for_each_piece3(pieces.0, pieces.1, probs, dims.work(n), |i, out, lse, p| {
                    forward_batch(
                        dims,
                        geom,
                        &qkv[i * te3..(i + 1) * te3],
                        (out, lse),
                        Some(p),
                    );
                });
            } else {
                for_each_piece2(pieces.0, pieces.1, dims.work(n), |i, out, lse| {
                    forward_batch(dims, geom, &qkv[i * te3..(i + 1) * te3], (out, lse), None);
                });
            }
        }
        let mut out_shape = Shape::from_slice(lead);
        out_shape.extend_from_slice(&[t, e]);
        let out = Tensor::from_parts(out, out_shape);
        let saved = out.clone();
        let mut lse = Some((lse, probs));
        let out = tape::record(out, &[self], || {
            let (lse, probs) = lse.take().expect("recorded once");
            Op::QkvAttention(QkvAttentionRecord {
                qkv: self.clone(),
                output: saved,
                lse,
                probs,
                dims,
                causal: is_causal,
            })
        });
        if let Some((lse, probs)) = lse {
            pool::give(lse);
            if !probs.is_empty() {
                pool::give(probs);
            }
        }
        Ok(out)
    }

    /// [`Tensor::try_qkv_attention`]; panics when the shape does not fit the heads.
    #[track_caller]
    pub fn qkv_attention(&self, num_heads: usize, is_causal: bool) -> Tensor {
        or_panic(self.try_qkv_attention(num_heads, is_causal))
    }
}
