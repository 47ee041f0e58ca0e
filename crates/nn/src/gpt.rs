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
use tapegrad_autograd::{no_grad, or_panic, with_default_rng, Result, Tensor, TensorError};

use crate::{prefixed_parameters, Dropout, Embedding, LayerNorm, Linear, Module, TransformerBlock};

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

/// `x · Wᵀ + b` through a [`Linear`]'s tensors, as a `Result`.
fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    x.try_linear(&layer.weight, layer.bias.as_ref())
}

/// A GPT language model; see the module documentation for its layout and names.
pub struct Gpt {
    /// Token embedding `[vocab_size, n_embd]`.
    pub wte: Embedding,
    /// Position embedding `[context, n_embd]`.
    pub wpe: Embedding,
    /// The blocks.
    pub h: Vec<TransformerBlock>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm,
    /// Head to the vocabulary, no bias: `[vocab_size, n_embd]`.
    pub lm_head: Linear,
    emb_dropout: Dropout,
    config: GptConfig,
}

impl Gpt {
    /// A model initialised as GPT-2 from the default generator (see
    /// [`Gpt::new_with_rng`]).
    pub fn new(config: GptConfig) -> Result<Gpt> {
        with_default_rng(|rng| Gpt::new_with_rng(config, rng))
    }

    /// A model initialised as GPT-2, drawing from `rng`: linear weights and embeddings
    /// from N(0, 0.02), biases 0, LayerNorms (γ = 1, β = 0), and each residual branch's
    /// output projection (`attn.c_proj`, `mlp.c_proj`) from N(0, 0.02/√(2·n_layer)) so
    /// the residual stream's variance does not grow with depth.
    pub fn new_with_rng(config: GptConfig, rng: &mut impl Rng) -> Result<Gpt> {
        config.check()?;
        let GptConfig {
            vocab_size,
            context,
            n_layer,
            n_head,
            n_embd: e,
            dropout,
        } = config;
        let std = 0.02;
        let proj_std = std / (2.0 * n_layer.max(1) as f32).sqrt();
        let mut h = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            h.push(TransformerBlock::new_with_rng(e, n_head, dropout, rng)?);
        }
        // The blocks come with PyTorch's default initialisation; redraw it as GPT-2's.
        let mut redraw = |t: &Tensor, s: f32| -> Result<()> {
            let fresh = Tensor::normal(t.shape(), 0.0, s, rng)?;
            t.data_mut().copy_from_slice(&fresh.data());
            Ok(())
        };
        for block in &h {
            redraw(&block.attn.c_attn.weight, std)?;
            redraw(&block.attn.c_proj.weight, proj_std)?;
            redraw(&block.mlp.c_fc.weight, std)?;
            redraw(&block.mlp.c_proj.weight, proj_std)?;
            for layer in [
                &block.attn.c_attn,
                &block.attn.c_proj,
                &block.mlp.c_fc,
                &block.mlp.c_proj,
            ] {
                if let Some(b) = &layer.bias {
                    b.data_mut().fill(0.0);
                }
            }
        }
        let mut normal = |shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::normal(shape, 0.0, std, rng)?.with_requires_grad(true))
        };
        let wte = Embedding {
            weight: normal(&[vocab_size, e])?,
        };
        let wpe = Embedding {
            weight: normal(&[context, e])?,
        };
        let lm_head = Linear::from_tensors(normal(&[vocab_size, e])?, None)?;
        Ok(Gpt {
            wte,
            wpe,
            h,
            ln_f: LayerNorm::new(e),
            lm_head,
            emb_dropout: Dropout::new(dropout)?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GptConfig {
        &self.config
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
        // Positions 0..seq are the table's first rows: a narrow, without an id list.
        let pos = self.wpe.weight.try_narrow(0, 0, seq)?; // [seq, E], broadcast over the batch
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
