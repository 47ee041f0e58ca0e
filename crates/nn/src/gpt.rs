//! `Gpt`: a decoder-only transformer language model (GPT-2's shape, at any size):
//! token and position embeddings, `n_layer` pre-LayerNorm blocks of causal
//! self-attention and a GELU MLP, a final LayerNorm and a linear head to the vocabulary.
//!
//! Parameter names follow nanoGPT's (`wte`, `wpe`, `h.{i}.ln_1`, `h.{i}.attn.c_attn`,
//! `h.{i}.attn.c_proj`, `h.{i}.ln_2`, `h.{i}.mlp.c_fc`, `h.{i}.mlp.c_proj`, `ln_f`,
//! `lm_head`), without its `transformer.` prefix, so a PyTorch model with those module
//! names loads by state-dict name. The head is NOT tied to the token embedding: tying
//! would list one tensor under two names, and the head then gets its own weight decay.

use rand::Rng;
use tapegrad_autograd::{no_grad, or_panic, GeluApprox, Result, Tensor, TensorError};

use crate::{prefixed_parameters, Dropout, Embedding, LayerNorm, Linear, Module};

/// The size of a [`Gpt`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptConfig {
    /// Vocabulary size (rows of `wte`, outputs of `lm_head`).
    pub vocab_size: usize,
    /// Longest sequence (rows of the position table `wpe`).
    pub context: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block; must divide `n_embd`.
    pub n_head: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Dropout probability on the embeddings and on each block's two residual branches.
    pub dropout: f32,
}

impl GptConfig {
    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(TensorError::InvalidArgument { op: "Gpt", reason });
        if self.vocab_size == 0 || self.context == 0 || self.n_head == 0 || self.n_embd == 0 {
            return bad(format!("every size has to be at least 1, got {self:?}"));
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!(
                "the width n_embd = {} is not divisible by n_head = {}",
                self.n_embd, self.n_head
            ));
        }
        Ok(())
    }
}

/// Multi-head causal self-attention with one fused q/k/v projection (`c_attn`,
/// `[3·E, E]`, rows q then k then v) and an output projection (`c_proj`).
pub struct CausalSelfAttention {
    /// q, k, v projection: `[3·n_embd, n_embd]`.
    pub c_attn: Linear,
    /// Output projection: `[n_embd, n_embd]`.
    pub c_proj: Linear,
    n_head: usize,
    resid_dropout: Dropout,
}

impl CausalSelfAttention {
    /// Attention over `x` of shape `[B, T, E]`; position t attends to positions ≤ t.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let [b, t, e] = *x.shape() else {
            return Err(TensorError::InvalidArgument {
                op: "CausalSelfAttention",
                reason: format!("expected input [B, T, E], got shape {:?}", x.shape()),
            });
        };
        let (h, d) = (self.n_head, e / self.n_head);
        let qkv = linear(&self.c_attn, x)?; // [B, T, 3E]
                                            // [B, T, 3, H, D] -> [3, B, H, T, D] one axis swap at a time.
        let heads = |which: usize| -> Result<Tensor> {
            let idx: Vec<usize> = (which * e..(which + 1) * e).collect();
            qkv.try_index_select(2, &idx)?
                .try_reshape(&[b, t, h, d])?
                .try_transpose(1, 2)?
                .try_reshape(&[b * h, t, d])
        };
        let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
        let scores = q
            .try_matmul(&k.try_transpose(1, 2)?)?
            .mul_scalar(1.0 / (d as f32).sqrt());
        let att = scores.try_add(&causal_mask(t))?.try_softmax(2)?;
        let y = att
            .try_matmul(&v)? // [B·H, T, D]
            .try_reshape(&[b, h, t, d])?
            .try_transpose(1, 2)?
            .try_reshape(&[b, t, e])?;
        Ok(self.resid_dropout.forward(&linear(&self.c_proj, &y)?))
    }
}

/// `x · Wᵀ + b` through a [`Linear`]'s tensors, as a `Result`.
fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    x.try_linear(&layer.weight, layer.bias.as_ref())
}

/// `[t, t]`: 0 on and below the diagonal, −∞ above, added to scores before softmax.
fn causal_mask(t: usize) -> Tensor {
    let mut m = vec![0.0f32; t * t];
    for i in 0..t {
        for v in &mut m[i * t + i + 1..(i + 1) * t] {
            *v = f32::NEG_INFINITY;
        }
    }
    Tensor::from_vec(m, &[t, t]).expect("t·t values")
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

/// The block's MLP: `c_fc` (E → 4E), exact GELU, `c_proj` (4E → E), dropout.
pub struct Mlp {
    /// `[4·n_embd, n_embd]`.
    pub c_fc: Linear,
    /// `[n_embd, 4·n_embd]`.
    pub c_proj: Linear,
    dropout: Dropout,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        let hidden = self.c_fc.forward(x).gelu(GeluApprox::None);
        self.dropout.forward(&self.c_proj.forward(&hidden))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed_parameters(&[("c_fc", &self.c_fc), ("c_proj", &self.c_proj)])
    }

    fn set_training(&mut self, training: bool) {
        self.dropout.set_training(training);
    }
}

/// A pre-LayerNorm block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
pub struct Block {
    /// Before attention.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: CausalSelfAttention,
    /// Before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl Block {
    /// The block on `[B, T, E]`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.try_add(&self.attn.try_forward(&self.ln_1.try_forward(x)?)?)?;
        x.try_add(&self.mlp.forward(&self.ln_2.try_forward(&x)?))
    }
}

impl Module for Block {
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

/// A GPT language model; see the module documentation for its layout and names.
pub struct Gpt {
    /// Token embedding `[vocab_size, n_embd]`.
    pub wte: Embedding,
    /// Position embedding `[context, n_embd]`.
    pub wpe: Embedding,
    /// The blocks.
    pub h: Vec<Block>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm,
    /// Head to the vocabulary, no bias: `[vocab_size, n_embd]`.
    pub lm_head: Linear,
    emb_dropout: Dropout,
    config: GptConfig,
}

impl Gpt {
    /// A model initialised as GPT-2: weights and embeddings from N(0, 0.02), biases 0,
    /// LayerNorms (1, 0), and each residual branch's output projection from
    /// N(0, 0.02/√(2·n_layer)) so the residual stream's variance does not grow with depth.
    /// Dropout layers are seeded from `rng` too (see [`Gpt::reseed_dropout`]).
    pub fn new_with_rng(config: GptConfig, rng: &mut impl Rng) -> Result<Gpt> {
        config.check()?;
        let GptConfig {
            vocab_size,
            context,
            n_layer,
            n_embd: e,
            ..
        } = config;
        let std = 0.02;
        let proj_std = std / (2.0 * n_layer.max(1) as f32).sqrt();
        let mut normal = |shape: &[usize], s: f32| -> Result<Tensor> {
            Ok(Tensor::normal(shape, 0.0, s, rng)?.with_requires_grad(true))
        };
        let mut linear = |inf: usize, outf: usize, s: f32, bias: bool| -> Result<Linear> {
            Linear::from_tensors(
                normal(&[outf, inf], s)?,
                bias.then(|| Tensor::zeros(&[outf])),
            )
        };
        let dropout = |seed: u64| Dropout::new(config.dropout, seed);
        let mut h = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let seed = 2 * i as u64 + 1;
            h.push(Block {
                ln_1: LayerNorm::new(e),
                attn: CausalSelfAttention {
                    c_attn: linear(e, 3 * e, std, true)?,
                    c_proj: linear(e, e, proj_std, true)?,
                    n_head: config.n_head,
                    resid_dropout: dropout(seed)?,
                },
                ln_2: LayerNorm::new(e),
                mlp: Mlp {
                    c_fc: linear(e, 4 * e, std, true)?,
                    c_proj: linear(4 * e, e, proj_std, true)?,
                    dropout: dropout(seed + 1)?,
                },
            });
        }
        // An embedding table is initialised like a bias-free linear layer's weight.
        let wte = Embedding {
            weight: linear(e, vocab_size, std, false)?.weight,
        };
        let wpe = Embedding {
            weight: linear(e, context, std, false)?.weight,
        };
        let lm_head = linear(e, vocab_size, std, false)?;
        Ok(Gpt {
            wte,
            wpe,
            h,
            ln_f: LayerNorm::new(e),
            lm_head,
            emb_dropout: dropout(0)?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// Restarts every dropout layer's generator from `seed` (each layer from its own
    /// stream). A training loop that reseeds with a function of the step draws the same
    /// masks after a resume as without one.
    pub fn reseed_dropout(&self, seed: u64) {
        self.emb_dropout
            .reseed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for (i, block) in self.h.iter().enumerate() {
            let s = seed
                .wrapping_add(2 * i as u64 + 1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            block.attn.resid_dropout.reseed(s);
            block.mlp.dropout.reseed(s ^ 0xD1B5_4A32_D192_ED03);
        }
    }

    /// Logits `[batch, seq, vocab_size]` for `ids`, row-major `[batch, seq]`. A sequence
    /// longer than the position table or an id outside the vocabulary is an error naming
    /// the layer and the values.
    pub fn try_forward_ids(&self, ids: &[usize], batch: usize, seq: usize) -> Result<Tensor> {
        let GptConfig {
            vocab_size,
            context,
            n_embd,
            ..
        } = self.config;
        if ids.len() != batch * seq {
            return Err(TensorError::InvalidArgument {
                op: "Gpt",
                reason: format!(
                    "{} token ids cannot be a batch of {batch} sequences of {seq}",
                    ids.len()
                ),
            });
        }
        if seq > context {
            return Err(TensorError::InvalidArgument {
                op: "Gpt (wpe)",
                reason: format!(
                    "a sequence of {seq} tokens is longer than the position table of \
                     {context} positions"
                ),
            });
        }
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id >= vocab_size) {
            return Err(TensorError::InvalidArgument {
                op: "Gpt (wte)",
                reason: format!(
                    "token id {id} (sequence {}, position {}) is outside the vocabulary of \
                     {vocab_size} ids",
                    i / seq.max(1),
                    i % seq.max(1)
                ),
            });
        }
        let tok = self.wte.lookup(ids)?.try_reshape(&[batch, seq, n_embd])?;
        let positions: Vec<usize> = (0..seq).collect();
        let pos = self.wpe.lookup(&positions)?; // [seq, E], broadcast over the batch
        let mut x = self.emb_dropout.forward(&tok.try_add(&pos)?);
        for block in &self.h {
            x = block.try_forward(&x)?;
        }
        linear(&self.lm_head, &self.ln_f.try_forward(&x)?)
    }

    /// Ids from a `[batch, seq]` tensor of whole numbers, then [`Gpt::try_forward_ids`].
    pub fn try_forward(&self, ids: &Tensor) -> Result<Tensor> {
        let [batch, seq] = *ids.shape() else {
            return Err(TensorError::InvalidArgument {
                op: "Gpt",
                reason: format!(
                    "expected token ids of shape [batch, seq], got {:?}",
                    ids.shape()
                ),
            });
        };
        let ids_vec = ids
            .data()
            .iter()
            .map(|&v| {
                if v >= 0.0 && v.fract() == 0.0 {
                    Ok(v as usize)
                } else {
                    Err(TensorError::InvalidArgument {
                        op: "Gpt (wte)",
                        reason: format!("token ids must be non-negative whole numbers, got {v}"),
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.try_forward_ids(&ids_vec, batch, seq)
    }

    /// The parameters split for decoupled weight decay: weight matrices of the linear
    /// layers (decayed) and everything else, i.e. biases, LayerNorm γ/β and the two
    /// embeddings (not decayed). Together they are every parameter exactly once.
    pub fn decay_groups(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        let (decay, no_decay): (Vec<_>, Vec<_>) =
            self.named_parameters().into_iter().partition(|(name, p)| {
                p.rank() >= 2 && !name.starts_with("wte") && !name.starts_with("wpe")
            });
        (
            decay.into_iter().map(|(_, p)| p).collect(),
            no_decay.into_iter().map(|(_, p)| p).collect(),
        )
    }

    /// Appends `n` tokens to `prompt`, each sampled from the softmax of the last
    /// position's logits divided by `temperature`, restricted to the `top_k` most likely
    /// ids when given. The model sees at most its last `context` tokens. Run in eval mode
    /// for deterministic logits; the draws come from `rng`.
    pub fn generate(
        &self,
        prompt: &[usize],
        n: usize,
        temperature: f32,
        top_k: Option<usize>,
        rng: &mut impl Rng,
    ) -> Result<Vec<usize>> {
        if prompt.is_empty() || temperature <= 0.0 || temperature.is_nan() {
            return Err(TensorError::InvalidArgument {
                op: "Gpt::generate",
                reason: format!(
                    "needs a non-empty prompt and a positive temperature, got {} tokens and \
                     temperature {temperature}",
                    prompt.len()
                ),
            });
        }
        let vocab = self.config.vocab_size;
        let mut ids = prompt.to_vec();
        for _ in 0..n {
            let start = ids.len().saturating_sub(self.config.context);
            let window = &ids[start..];
            let logits = no_grad(|| self.try_forward_ids(window, 1, window.len()))?;
            let data = logits.data();
            let last = &data[(window.len() - 1) * vocab..window.len() * vocab];
            let mut scaled: Vec<f32> = last.iter().map(|&l| l / temperature).collect();
            if let Some(k) = top_k.filter(|&k| k > 0 && k < vocab) {
                let mut sorted = scaled.clone();
                sorted.sort_unstable_by(|a, b| b.total_cmp(a));
                let kth = sorted[k - 1];
                for s in &mut scaled {
                    if *s < kth {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let probs: Vec<f64> = scaled.iter().map(|&s| f64::from((s - max).exp())).collect();
            let total: f64 = probs.iter().sum();
            let mut u = rng.random::<f64>() * total;
            let mut next = vocab - 1;
            for (i, p) in probs.iter().enumerate() {
                if u < *p {
                    next = i;
                    break;
                }
                u -= p;
            }
            ids.push(next);
        }
        Ok(ids)
    }
}

impl Module for Gpt {
    #[track_caller]
    fn forward(&self, ids: &Tensor) -> Tensor {
        or_panic(self.try_forward(ids))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = prefixed_parameters(&[("wte", &self.wte), ("wpe", &self.wpe)]);
        for (i, block) in self.h.iter().enumerate() {
            params.extend(prefixed_parameters(&[(&format!("h.{i}"), block)]));
        }
        params.extend(prefixed_parameters(&[
            ("ln_f", &self.ln_f),
            ("lm_head", &self.lm_head),
        ]));
        params
    }

    fn set_training(&mut self, training: bool) {
        self.emb_dropout.set_training(training);
        for block in &mut self.h {
            block.set_training(training);
        }
    }
}
