//! `MultiheadAttention`, with `torch.nn.MultiheadAttention`'s parameters, names and
//! layout, so its weights load from a PyTorch state dict by name. The attention itself
//! is the fused `Tensor::scaled_dot_product_attention`.

use rand::Rng;
use tapegrad_autograd::{or_panic, AttnMask, Result, Tensor, TensorError};

use crate::init::xavier_uniform;
use crate::{Linear, Module};

/// Multi-head attention: `out_proj(concat_h(attention(q W_qʰ, k W_kʰ, v W_vʰ)))`.
///
/// Parameters, by their PyTorch names: `in_proj_weight` `[3E, E]` (the query, key and
/// value projections stacked in that order), `in_proj_bias` `[3E]`, `out_proj.weight`
/// `[E, E]` and `out_proj.bias` `[E]`. Inputs are `[N, L, E]` with `batch_first`, else
/// `[L, N, E]` (PyTorch's default), or unbatched `[L, E]`. Initialised as PyTorch:
/// Xavier-uniform `in_proj_weight`, zero biases, `out_proj.weight` as a `Linear`'s.
///
/// Not supported: dropout on the attention weights, `need_weights` (the weights are
/// never formed; see the fused op), `kdim`/`vdim` other than `E`, `add_bias_kv`,
/// `add_zero_attn`, and a separate `key_padding_mask` (pass it as a `[N, 1, 1, S]`
/// mask).
pub struct MultiheadAttention {
    /// `[3E, E]`: rows `0..E` project queries, `E..2E` keys, `2E..3E` values.
    pub in_proj_weight: Tensor,
    /// `[3E]`, when the layer has biases.
    pub in_proj_bias: Option<Tensor>,
    /// The output projection, `[E, E]`.
    pub out_proj: Linear,
    /// Whether inputs are `[N, L, E]` (true) or `[L, N, E]` (false, PyTorch's default).
    pub batch_first: bool,
    num_heads: usize,
}

/// The error for a width the heads do not divide, or a zero one.
fn check_heads(layer: &'static str, embed_dim: usize, num_heads: usize) -> Result<()> {
    if num_heads == 0 || embed_dim == 0 || embed_dim % num_heads != 0 {
        return Err(TensorError::InvalidArgument {
            op: layer,
            reason: format!(
                "embed_dim {embed_dim} must be a positive multiple of num_heads {num_heads}"
            ),
        });
    }
    Ok(())
}

impl MultiheadAttention {
    /// `E = embed_dim` split into `num_heads` heads, with biases, PyTorch's
    /// initialisation drawn from `rng`. Fails unless `num_heads` divides `embed_dim`.
    pub fn new_with_rng(
        embed_dim: usize,
        num_heads: usize,
        batch_first: bool,
        rng: &mut impl Rng,
    ) -> Result<MultiheadAttention> {
        check_heads("MultiheadAttention", embed_dim, num_heads)?;
        let e = embed_dim;
        let in_proj_weight = xavier_uniform(&[3 * e, e], 1.0, rng)?;
        // A Linear's default init for the output weight, then a zero bias (PyTorch's
        // _reset_parameters zeroes it).
        let bound = 1.0 / (e as f32).sqrt();
        let out_weight = Tensor::uniform(&[e, e], -bound, bound, rng)?;
        MultiheadAttention::from_tensors(
            num_heads,
            batch_first,
            in_proj_weight,
            Some(Tensor::zeros(&[3 * e])),
            out_weight,
            Some(Tensor::zeros(&[e])),
        )
    }

    /// A layer around existing tensors (e.g. loaded from PyTorch); all become trainable.
    /// Fails when the shapes do not fit `[3E, E]`, `[3E]`, `[E, E]`, `[E]` or the heads do
    /// not divide `E`.
    pub fn from_tensors(
        num_heads: usize,
        batch_first: bool,
        in_proj_weight: Tensor,
        in_proj_bias: Option<Tensor>,
        out_proj_weight: Tensor,
        out_proj_bias: Option<Tensor>,
    ) -> Result<MultiheadAttention> {
        let e = out_proj_weight.shape().first().copied().unwrap_or(0);
        check_heads("MultiheadAttention", e, num_heads)?;
        let bad = |what: &str, t: &Tensor, want: Vec<usize>| TensorError::InvalidArgument {
            op: "MultiheadAttention",
            reason: format!(
                "{what} must have shape {want:?} for embed_dim {e}, got {:?}",
                t.shape()
            ),
        };
        if in_proj_weight.shape() != [3 * e, e] {
            return Err(bad("in_proj_weight", &in_proj_weight, vec![3 * e, e]));
        }
        if let Some(b) = &in_proj_bias {
            if b.shape() != [3 * e] {
                return Err(bad("in_proj_bias", b, vec![3 * e]));
            }
            b.set_requires_grad(true)?;
        }
        in_proj_weight.set_requires_grad(true)?;
        let out_proj = Linear::from_tensors(out_proj_weight, out_proj_bias)?;
        Ok(MultiheadAttention {
            in_proj_weight,
            in_proj_bias,
            out_proj,
            batch_first,
            num_heads,
        })
    }

    /// Width of the model, E.
    pub fn embed_dim(&self) -> usize {
        self.in_proj_weight.shape()[1]
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Projects `x` by rows `part·E .. (part+1)·E` of the stacked input projection.
    fn project(&self, x: &Tensor, part: usize) -> Result<Tensor> {
        let e = self.embed_dim();
        let w = self.in_proj_weight.try_narrow(0, part * e, e)?;
        let b = match &self.in_proj_bias {
            Some(b) => Some(b.try_narrow(0, part * e, e)?),
            None => None,
        };
        x.try_linear(&w, b.as_ref())
    }

    /// `[N, T, E]` → `[N, H, T, E/H]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (n, t, e) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        x.try_reshape(&[n, t, self.num_heads, e / self.num_heads])?
            .try_permute(&[0, 2, 1, 3])
    }

    /// Attention of `query` `[N, L, E]` (batch first; `[L, N, E]` otherwise; or `[L, E]`)
    /// over `key` and `value` `[N, S, E]`, giving the query's shape.
    ///
    /// `attn_mask` broadcasts to `[N, H, L, S]`; as in PyTorch it may also be `[L, S]` or
    /// `[N·H, L, S]`. Mind the bool convention: PyTorch's MultiheadAttention masks the
    /// positions that are `True`, while tapegrad's [`AttnMask::Keep`] keeps the non-zero
    /// ones (as PyTorch's `scaled_dot_product_attention` does), so a PyTorch bool mask `m`
    /// becomes `AttnMask::Keep(&(1.0 - m))`. `is_causal` applies the causal mask (PyTorch
    /// needs the mask passed too; here it is enough on its own).
    pub fn try_forward_qkv(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        attn_mask: Option<AttnMask<'_>>,
        is_causal: bool,
    ) -> Result<Tensor> {
        let e = self.embed_dim();
        let shapes_ok = [query, key, value].iter().all(|t| {
            (t.rank() == 3 || t.rank() == 2)
                && t.rank() == query.rank()
                && t.shape()[t.rank() - 1] == e
        });
        let batch_of = |t: &Tensor| match (t.rank(), self.batch_first) {
            (2, _) => 1,
            (_, true) => t.shape()[0],
            (_, false) => t.shape()[1],
        };
        let seq_of = |t: &Tensor| match (t.rank(), self.batch_first) {
            (3, true) => t.shape()[1],
            _ => t.shape()[0],
        };
        if !shapes_ok
            || batch_of(key) != batch_of(query)
            || batch_of(value) != batch_of(query)
            || seq_of(key) != seq_of(value)
        {
            return Err(TensorError::InvalidArgument {
                op: "MultiheadAttention",
                reason: format!(
                    "query {:?}, key {:?} and value {:?} do not fit embed_dim {e} ({}; key and \
                     value need the same length)",
                    query.shape(),
                    key.shape(),
                    value.shape(),
                    if self.batch_first {
                        "[N, L, E] with batch_first"
                    } else {
                        "[L, N, E]"
                    }
                ),
            });
        }
        // Everything below works on [N, T, E].
        let to_batch_first = |t: &Tensor| -> Result<Tensor> {
            match (t.rank(), self.batch_first) {
                (2, _) => t.try_unsqueeze(0),
                (_, true) => Ok(t.clone()),
                (_, false) => t.try_transpose(0, 1),
            }
        };
        let q = to_batch_first(query)?;
        let self_attention = query.same_storage(key) && key.same_storage(value);
        let (q, k, v) = if self_attention {
            // One product for all three projections.
            let qkv = q.try_linear(&self.in_proj_weight, self.in_proj_bias.as_ref())?;
            let parts = qkv.try_chunk(3, 2)?;
            (parts[0].clone(), parts[1].clone(), parts[2].clone())
        } else {
            let (k, v) = (to_batch_first(key)?, to_batch_first(value)?);
            (
                self.project(&q, 0)?,
                self.project(&k, 1)?,
                self.project(&v, 2)?,
            )
        };
        let (n, l, s) = (q.shape()[0], q.shape()[1], k.shape()[1]);
        let (q, k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        // PyTorch's [N·H, L, S] mask form, viewed as [N, H, L, S].
        let reshaped;
        let attn_mask = match attn_mask {
            Some(AttnMask::Additive(m) | AttnMask::Keep(m))
                if m.rank() == 3 && m.shape()[0] == n * self.num_heads && n > 1 =>
            {
                reshaped = m.try_reshape(&[n, self.num_heads, m.shape()[1], m.shape()[2]])?;
                Some(match attn_mask {
                    Some(AttnMask::Additive(_)) => AttnMask::Additive(&reshaped),
                    _ => AttnMask::Keep(&reshaped),
                })
            }
            other => other,
        };
        let heads = q
            .try_scaled_dot_product_attention(&k, &v, attn_mask, is_causal)
            .map_err(|err| TensorError::InvalidArgument {
                op: "MultiheadAttention",
                reason: format!(
                    "query length {l}, key length {s}, {} heads: {err}",
                    self.num_heads
                ),
            })?;
        let merged = heads.try_permute(&[0, 2, 1, 3])?.try_reshape(&[n, l, e])?;
        let out = merged.try_linear(&self.out_proj.weight, self.out_proj.bias.as_ref())?;
        match (query.rank(), self.batch_first) {
            (2, _) => out.try_squeeze(0),
            (_, true) => Ok(out),
            (_, false) => out.try_transpose(0, 1),
        }
    }

    /// [`MultiheadAttention::try_forward_qkv`]; panics with the shapes when they do not fit.
    #[track_caller]
    pub fn forward_qkv(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        attn_mask: Option<AttnMask<'_>>,
        is_causal: bool,
    ) -> Tensor {
        or_panic(self.try_forward_qkv(query, key, value, attn_mask, is_causal))
    }
}

impl Module for MultiheadAttention {
    /// Self-attention without a mask: `forward_qkv(x, x, x, None, false)`.
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_qkv(x, x, x, None, false)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = vec![("in_proj_weight".to_string(), self.in_proj_weight.clone())];
        if let Some(b) = &self.in_proj_bias {
            params.push(("in_proj_bias".to_string(), b.clone()));
        }
        params.extend(crate::prefixed_parameters(&[("out_proj", &self.out_proj)]));
        params
    }
}
