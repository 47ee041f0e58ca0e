//! Batch normalisation as one fused differentiable op, PyTorch's `F.batch_norm`: every
//! axis but the channel axis (1) is reduced, so one op serves `[N, C]`, `[N, C, L]` and
//! `[N, C, H, W]` inputs.
//!
//! In training mode it normalises by the batch statistics (biased variance) and updates
//! the running statistics in place (unbiased variance, as PyTorch); in eval mode it
//! uses the running statistics, which makes it an affine map per channel. The backward
//! rule is the closed form, not a chain of elementwise ops: see `docs/convolution.md`.

use crate::error::{or_panic, Result, TensorError};
use crate::pool;
use crate::shape::Shape;
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// What batch norm saves: its input and parameters, and per channel the mean and
/// 1/√(var + ε) it normalised with (`[2, C]`).
pub(crate) struct BatchNormRecord {
    input: Tensor,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    stats: Tensor,
    training: bool,
}

/// (batch, channels, inner) of a `[N, C, ...]` input.
fn layout(x: &[usize]) -> (usize, usize, usize) {
    (x[0], x[1], x[2..].iter().product())
}

impl BatchNormRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        let (n, c, inner) = layout(self.input.shape());
        let x = self.input.data();
        let stats = self.stats.data();
        let (mean, invstd) = stats.split_at(c);
        let w = self.weight.as_ref().map(|w| w.data());
        // Per channel: Σg and Σg·x̂, which give the parameter gradients and the
        // training-mode correction terms.
        let mut sum_g = pool::zeros(c);
        let mut sum_gx = pool::zeros(c);
        for b in 0..n {
            for ch in 0..c {
                let at = (b * c + ch) * inner;
                let (m, s) = (mean[ch], invstd[ch]);
                let (mut sg, mut sgx) = (0.0, 0.0);
                for (&gv, &xv) in g[at..at + inner].iter().zip(&x[at..at + inner]) {
                    sg += gv;
                    sgx += gv * (xv - m) * s;
                }
                sum_g[ch] += sg;
                sum_gx[ch] += sgx;
            }
        }
        if grads.wants(&self.input) {
            let count = (n * inner) as f32;
            let mut dx = pool::for_overwrite(self.input.numel());
            for b in 0..n {
                for ch in 0..c {
                    let at = (b * c + ch) * inner;
                    let (m, s) = (mean[ch], invstd[ch]);
                    let scale = w.as_ref().map_or(1.0, |w| w[ch]) * s;
                    let dst = &mut dx[at..at + inner];
                    if self.training {
                        // dx = γ·s·(g − Σg/M − x̂·Σg·x̂/M)
                        let (mg, mgx) = (sum_g[ch] / count, sum_gx[ch] / count);
                        for ((d, &gv), &xv) in dst.iter_mut().zip(&g[at..]).zip(&x[at..]) {
                            *d = scale * (gv - mg - (xv - m) * s * mgx);
                        }
                    } else {
                        for (d, &gv) in dst.iter_mut().zip(&g[at..]) {
                            *d = scale * gv;
                        }
                    }
                }
            }
            grads.add(&self.input, dx);
        }
        drop((x, stats, w));
        match self.weight.as_ref().filter(|t| grads.wants(t)) {
            Some(t) => grads.add(t, sum_gx),
            None => pool::give(sum_gx),
        }
        match self.bias.as_ref().filter(|t| grads.wants(t)) {
            Some(t) => grads.add(t, sum_g),
            None => pool::give(sum_g),
        }
    }
}

fn check_channel_tensor(name: &str, t: Option<&Tensor>, c: usize, x: &[usize]) -> Result<()> {
    match t {
        Some(t) if t.shape() != [c] => Err(TensorError::InvalidArgument {
            op: "batch_norm",
            reason: format!(
                "{name} must have shape [{c}] for input {x:?} (channels on axis 1), got {:?}",
                t.shape()
            ),
        }),
        _ => Ok(()),
    }
}

impl Tensor {
    /// Batch normalisation of `[N, C, ...]` over every axis but 1, PyTorch's
    /// `F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)`.
    ///
    /// Training mode normalises with the batch mean and biased variance and, when the
    /// running statistics are given, updates them in place:
    /// `running = (1 − momentum)·running + momentum·batch`, with the unbiased variance.
    /// Eval mode normalises with the running statistics (required then).
    #[allow(clippy::too_many_arguments)]
    pub fn try_batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Tensor> {
        let shape = self.shape();
        let bad = |reason: String| TensorError::InvalidArgument {
            op: "batch_norm",
            reason,
        };
        if shape.len() < 2 {
            return Err(bad(format!(
                "expected an input [N, C, ...] of rank 2 or more, got shape {shape:?}"
            )));
        }
        let (n, c, inner) = layout(shape);
        check_channel_tensor("running_mean", running_mean, c, shape)?;
        check_channel_tensor("running_var", running_var, c, shape)?;
        check_channel_tensor("weight", weight, c, shape)?;
        check_channel_tensor("bias", bias, c, shape)?;
        let count = n * inner;
        let mut stats = pool::zeros(2 * c);
        {
            let x = self.data();
            let (mean, invstd) = stats.split_at_mut(c);
            if training {
                if count <= 1 {
                    return Err(bad(format!(
                        "expected more than 1 value per channel when training, got input {shape:?}"
                    )));
                }
                // Sums in f64 like PyTorch's CPU kernel; two passes (mean, then squared
                // deviations) avoid cancellation.
                let plane = |b: usize, ch: usize| &x[(b * c + ch) * inner..][..inner];
                for ch in 0..c {
                    let sum: f64 = (0..n)
                        .map(|b| plane(b, ch).iter().map(|&v| v as f64).sum::<f64>())
                        .sum();
                    let m = sum / count as f64;
                    let sq: f64 = (0..n)
                        .map(|b| {
                            plane(b, ch)
                                .iter()
                                .map(|&v| (v as f64 - m) * (v as f64 - m))
                                .sum::<f64>()
                        })
                        .sum();
                    mean[ch] = m as f32;
                    invstd[ch] = sq as f32;
                }
                let unbias = count as f32 / (count - 1) as f32;
                if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                    let (mut rm, mut rv) = (rm.data_mut(), rv.data_mut());
                    for ch in 0..c {
                        let var = invstd[ch] / count as f32;
                        rm[ch] = (1.0 - momentum) * rm[ch] + momentum * mean[ch];
                        rv[ch] = (1.0 - momentum) * rv[ch] + momentum * var * unbias;
                    }
                }
                invstd
                    .iter_mut()
                    .for_each(|s| *s = 1.0 / (*s / count as f32 + eps).sqrt());
            } else {
                let (Some(rm), Some(rv)) = (running_mean, running_var) else {
                    return Err(bad("eval mode needs running_mean and running_var".into()));
                };
                mean.copy_from_slice(&rm.data());
                for (s, v) in invstd.iter_mut().zip(rv.data().iter()) {
                    *s = 1.0 / (v + eps).sqrt();
                }
            }
        }
        let mut out = pool::for_overwrite(self.numel());
        {
            let x = self.data();
            let (mean, invstd) = stats.split_at(c);
            let (w, b) = (weight.map(|t| t.data()), bias.map(|t| t.data()));
            for bi in 0..n {
                for ch in 0..c {
                    let scale = w.as_ref().map_or(1.0, |w| w[ch]) * invstd[ch];
                    let shift = b.as_ref().map_or(0.0, |b| b[ch]) - mean[ch] * scale;
                    let at = (bi * c + ch) * inner;
                    for (y, &v) in out[at..at + inner].iter_mut().zip(&x[at..at + inner]) {
                        *y = v * scale + shift;
                    }
                }
            }
        }
        let out = Tensor::from_parts(out, self.0.shape.clone());
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let mut stats = Some(stats);
        let out = tape::record(out, &inputs, || {
            Op::BatchNorm(BatchNormRecord {
                input: self.clone(),
                weight: weight.cloned(),
                bias: bias.cloned(),
                stats: Tensor::from_parts(
                    stats.take().expect("recorded once"),
                    Shape::from_slice(&[2 * c]),
                ),
                training,
            })
        });
        if let Some(s) = stats {
            pool::give(s);
        }
        Ok(out)
    }

    /// [`Tensor::try_batch_norm`], panicking with the error's message.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Tensor {
        or_panic(self.try_batch_norm(
            running_mean,
            running_var,
            weight,
            bias,
            training,
            momentum,
            eps,
        ))
    }
}
