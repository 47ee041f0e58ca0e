//! A pre-LayerNorm transformer block, GPT-2 style, with nanoGPT's parameter names:
//! `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`, where `attn` is causal multi-head
//! self-attention and `mlp` is Linear(E, 4E) → GELU → Linear(4E, E).
//!
//! State-dict names (those of nanoGPT's `Block`, so its checkpoints load by name):
//! `ln_1.{weight,bias}`, `attn.c_attn.{weight,bias}` (`[3E, E]`: query, key, value rows),
//! `attn.c_proj.{weight,bias}`, `ln_2.{weight,bias}`, `mlp.c_fc.{weight,bias}` (`[4E, E]`),
//! `mlp.c_proj.{weight,bias}` (`[E, 4E]`).

use rand::Rng;
use tapegrad_autograd::{or_panic, with_default_rng, GeluApprox, Result, Tensor, TensorError};

use crate::{prefixed_parameters, Dropout, LayerNorm, Linear, Module};

/// A `Linear` with PyTorch's default initialisation drawn from `rng`.
fn linear(in_features: usize, out_features: usize, rng: &mut impl Rng) -> Result<Linear> {
    Linear::new_with_rng(in_features, out_features, rng)
}

/// A dropout layer (its masks come from the default generator, see `manual_seed`).
fn dropout(p: f32) -> Result<Dropout> {
    Dropout::new(p)
}

/// Causal multi-head self-attention on `[B, T, E]`, nanoGPT's `CausalSelfAttention`:
/// `c_attn` projects to queries, keys and values at once, the fused
/// `qkv_attention` (causal `scaled_dot_product_attention` on the heads, read in place
/// from the packed projection) mixes the positions, `c_proj` projects
/// back, and dropout (training mode only) follows it. Dropout on the attention weights
/// themselves is not supported (the fused op never forms them).
pub struct CausalSelfAttention {
    /// `[E] → [3E]`: the query, key and value projections.
    pub c_attn: Linear,
    /// `[E] → [E]`: the output projection.
    pub c_proj: Linear,
    /// After `c_proj`.
    pub resid_dropout: Dropout,
    num_heads: usize,
}

impl CausalSelfAttention {
    /// Width `embed_dim` in `num_heads` heads, drawn from the default generator (see
    /// `manual_seed`); fails unless the heads divide the width.
    pub fn new(embed_dim: usize, num_heads: usize, dropout_p: f32) -> Result<CausalSelfAttention> {
        with_default_rng(|rng| {
            CausalSelfAttention::new_with_rng(embed_dim, num_heads, dropout_p, rng)
        })
    }

    /// Width `embed_dim` in `num_heads` heads; fails unless the heads divide the width.
    pub fn new_with_rng(
        embed_dim: usize,
        num_heads: usize,
        dropout_p: f32,
        rng: &mut impl Rng,
    ) -> Result<CausalSelfAttention> {
        if num_heads == 0 || embed_dim == 0 || embed_dim % num_heads != 0 {
            return Err(TensorError::InvalidArgument {
                op: "CausalSelfAttention",
                reason: format!(
                    "embed_dim {embed_dim} must be a positive multiple of num_heads {num_heads}"
                ),
            });
        }
        Ok(CausalSelfAttention {
            c_attn: linear(embed_dim, 3 * embed_dim, rng)?,
            c_proj: linear(embed_dim, embed_dim, rng)?,
            resid_dropout: dropout(dropout_p)?,
            num_heads,
        })
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// The attention of `x` `[B, T, E]`, or an error naming the layer and the shape.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let e = self.c_attn.in_features();
        let [b, t, width] = *x.shape() else {
            return Err(self.bad_input(x));
        };
        if width != e {
            return Err(self.bad_input(x));
        }
        let qkv = x.try_linear(&self.c_attn.weight, self.c_attn.bias.as_ref())?;
        // Split into q, k, v, into heads, attend and merge the heads, as one op.
        let y = qkv.try_qkv_attention(self.num_heads, true)?;
        debug_assert_eq!(y.shape(), [b, t, e]);
        let y = y.try_linear(&self.c_proj.weight, self.c_proj.bias.as_ref())?;
        Ok(self.resid_dropout.forward(&y))
    }

    fn bad_input(&self, x: &Tensor) -> TensorError {
        TensorError::InvalidArgument {
            op: "CausalSelfAttention",
            reason: format!(
                "expected input [B, T, {}], got {:?}",
                self.c_attn.in_features(),
                x.shape()
            ),
        }
    }
}

impl Module for CausalSelfAttention {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(self.try_forward(x))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed_parameters(&[("c_attn", &self.c_attn), ("c_proj", &self.c_proj)])
    }

    fn set_training(&mut self, training: bool) {
        self.resid_dropout.set_training(training);
    }
}

/// The block's feed-forward part, nanoGPT's `MLP`: `c_fc` (E → 4E), exact GELU, `c_proj`
/// (4E → E), dropout.
pub struct Mlp {
    /// `[E] → [4E]`.
    pub c_fc: Linear,
    /// `[4E] → [E]`.
    pub c_proj: Linear,
    /// After `c_proj`.
    pub dropout: Dropout,
}

impl Mlp {
    /// Width `embed_dim`, hidden width `4 · embed_dim`, drawn from the default generator.
    pub fn new(embed_dim: usize, dropout_p: f32) -> Result<Mlp> {
        with_default_rng(|rng| Mlp::new_with_rng(embed_dim, dropout_p, rng))
    }

    /// Width `embed_dim`, hidden width `4 · embed_dim`.
    pub fn new_with_rng(embed_dim: usize, dropout_p: f32, rng: &mut impl Rng) -> Result<Mlp> {
        Ok(Mlp {
            c_fc: linear(embed_dim, 4 * embed_dim, rng)?,
            c_proj: linear(4 * embed_dim, embed_dim, rng)?,
            dropout: dropout(dropout_p)?,
        })
    }

    /// The feed-forward map, or an error naming the shapes.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = x
            .try_linear(&self.c_fc.weight, self.c_fc.bias.as_ref())?
            .gelu(GeluApprox::None);
        let y = hidden.try_linear(&self.c_proj.weight, self.c_proj.bias.as_ref())?;
        Ok(self.dropout.forward(&y))
    }
}

impl Module for Mlp {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(self.try_forward(x))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed_parameters(&[("c_fc", &self.c_fc), ("c_proj", &self.c_proj)])
    }

    fn set_training(&mut self, training: bool) {
        self.dropout.set_training(training);
    }
}

/// The pre-LayerNorm transformer block on `[B, T, E]` (nanoGPT's `Block`).
pub struct TransformerBlock {
    /// Before the attention.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: CausalSelfAttention,
    /// Before the feed-forward part.
    pub ln_2: LayerNorm,
    /// The feed-forward part.
    pub mlp: Mlp,
}

impl TransformerBlock {
    /// [`TransformerBlock::new_with_rng`] drawing from the default generator (see
    /// `manual_seed`).
    pub fn new(embed_dim: usize, num_heads: usize, dropout_p: f32) -> Result<TransformerBlock> {
        with_default_rng(|rng| TransformerBlock::new_with_rng(embed_dim, num_heads, dropout_p, rng))
    }

    /// A block of width `embed_dim` with `num_heads` heads and dropout `dropout_p` on both
    /// residual branches (active in training mode only; masks from the default generator,
    /// as every `Dropout`'s). Linear layers get PyTorch's default initialisation from `rng` (a GPT usually re-initialises them, e.g.
    /// N(0, 0.02)); LayerNorms start at γ = 1, β = 0. Fails unless the heads divide the
    /// width or when `dropout_p` is outside [0, 1].
    pub fn new_with_rng(
        embed_dim: usize,
        num_heads: usize,
        dropout_p: f32,
        rng: &mut impl Rng,
    ) -> Result<TransformerBlock> {
        Ok(TransformerBlock {
            ln_1: LayerNorm::new(embed_dim),
            attn: CausalSelfAttention::new_with_rng(embed_dim, num_heads, dropout_p, rng)?,
            ln_2: LayerNorm::new(embed_dim),
            mlp: Mlp::new_with_rng(embed_dim, dropout_p, rng)?,
        })
    }

    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`, or an error naming the shapes.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.try_add(&self.attn.try_forward(&self.ln_1.try_forward(x)?)?)?;
        x.try_add(&self.mlp.try_forward(&self.ln_2.try_forward(&x)?)?)
    }
}

impl Module for TransformerBlock {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(self.try_forward(x))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed_parameters(&[
            ("ln_1", &self.ln_1),
            ("attn", &self.attn),
            ("ln_2", &self.ln_2),
            ("mlp", &self.mlp),
        ])
    }

    fn set_training(&mut self, training: bool) {
        self.attn.set_training(training);
        self.mlp.set_training(training);
    }
}
