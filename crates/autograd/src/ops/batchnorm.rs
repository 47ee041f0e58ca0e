//! Batch normalisation as one fused differentiable op, PyTorch's `F.batch_norm`: every
//! axis but the channel axis (1) is reduced, so one op serves `[N, C]`, `[N, C, L]` and
//! `[N, C, H, W]` inputs.
//!
//! In training mode it normalises by the batch statistics (biased variance) and updates
//! the running statistics in place (unbiased variance, as PyTorch); in eval mode it
//! uses the running statistics, which makes it an affine map per channel. The backward
//! rule is the closed form, not a chain of elementwise ops: see `docs/convolution.md`.

use crate::cpu::with_avx2_fma;
use crate::error::{or_panic, Result, TensorError};
use crate::parallel::{for_each_piece, for_each_piece2};
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

/// Lanes of the vectorised sums: their order is fixed, so results do not depend on the
/// machine or the thread count.
const LANES: usize = 8;

/// Σx in f64, over `LANES` interleaved partial sums.
fn sum_f64(x: &[f32]) -> f64 {
    with_avx2_fma(|| {
        let mut acc = [0.0f64; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v as f64;
            }
        }
        acc.iter().sum::<f64>() + tail
    })
}

/// Σ(x − m)² in f64, over `LANES` interleaved partial sums.
fn sq_dev_f64(x: &[f32], m: f64) -> f64 {
    with_avx2_fma(|| {
        let mut acc = [0.0f64; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail: f64 = (chunks.remainder().iter())
            .map(|&v| (v as f64 - m) * (v as f64 - m))
            .sum();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                let d = v as f64 - m;
                *a += d * d;
            }
        }
        acc.iter().sum::<f64>() + tail
    })
}

/// (Σg, Σg·(x − m)) over one plane, over `LANES` interleaved partial sums.
fn grad_sums(g: &[f32], x: &[f32], m: f32) -> (f32, f32) {
    with_avx2_fma(|| {
        let (mut sg, mut sgx) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (gc, xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
        let (mut tg, mut tgx) = (0.0, 0.0);
        for (&gv, &xv) in gc.remainder().iter().zip(xc.remainder()) {
            tg += gv;
            tgx += gv * (xv - m);
        }
        for (gs, xs) in gc.zip(xc) {
            for i in 0..LANES {
                sg[i] += gs[i];
                sgx[i] += gs[i] * (xs[i] - m);
            }
        }
        (sg.iter().sum::<f32>() + tg, sgx.iter().sum::<f32>() + tgx)
    })
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
        // training-mode correction terms. One task sums a whole channel.
        let mut sum_g = pool::zeros(c);
        let mut sum_gx = pool::zeros(c);
        let (xs, ws): (&[f32], Option<&[f32]>) = (&x, w.as_deref());
        let (sums_g, sums_gx) = ((&mut sum_g[..], 1), (&mut sum_gx[..], 1));
        for_each_piece2(sums_g, sums_gx, 2 * g.len(), |ch, sg, sgx| {
            let (m, s) = (mean[ch], invstd[ch]);
            for b in 0..n {
                let at = (b * c + ch) * inner;
                let (pg, pgx) = grad_sums(&g[at..at + inner], &xs[at..at + inner], m);
                sg[0] += pg;
                sgx[0] += pgx * s;
            }
        });
        if grads.wants(&self.input) {
            let count = (n * inner) as f32;
            let mut dx = pool::for_overwrite(self.input.numel());
            let (sum_g, sum_gx, training) = (&sum_g[..], &sum_gx[..], self.training);
            for_each_piece(&mut dx, inner, 3 * g.len(), |plane, dst| {
                let ch = plane % c;
                let at = plane * inner;
                let (m, s) = (mean[ch], invstd[ch]);
                let scale = ws.map_or(1.0, |w| w[ch]) * s;
                let (g, x) = (&g[at..at + inner], &xs[at..at + inner]);
                if training {
                    // dx = γ·s·(g − Σg/M − x̂·Σg·x̂/M)
                    let (mg, mgx) = (sum_g[ch] / count, sum_gx[ch] / count);
                    with_avx2_fma(|| {
                        for ((d, &gv), &xv) in dst.iter_mut().zip(g).zip(x) {
                            *d = scale * (gv - mg - (xv - m) * s * mgx);
                        }
                    });
                } else {
                    for (d, &gv) in dst.iter_mut().zip(g) {
                        *d = scale * gv;
                    }
                }
            });
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
                // deviations) avoid cancellation. One task sums a whole channel.
                let xs: &[f32] = &x;
                for_each_piece2((mean, 1), (invstd, 1), 2 * xs.len(), |ch, mean, sq| {
                    let plane = |b: usize| &xs[(b * c + ch) * inner..][..inner];
                    let sum: f64 = (0..n).map(|b| sum_f64(plane(b))).sum();
                    let m = sum / count as f64;
                    let dev: f64 = (0..n).map(|b| sq_dev_f64(plane(b), m)).sum();
                    mean[0] = m as f32;
                    sq[0] = dev as f32;
                });
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
            let (xs, ws, bs): (&[f32], Option<&[f32]>, Option<&[f32]>) =
                (&x, w.as_deref(), b.as_deref());
            for_each_piece(&mut out, inner, 2 * xs.len(), |plane, dst| {
                let ch = plane % c;
                let scale = ws.map_or(1.0, |w| w[ch]) * invstd[ch];
                let shift = bs.map_or(0.0, |b| b[ch]) - mean[ch] * scale;
                let src = &xs[plane * inner..][..inner];
                for (y, &v) in dst.iter_mut().zip(src) {
                    *y = v * scale + shift;
                }
            });
        }
        let out = Tensor::from_parts(out, self.0.shape.clone());
        let inputs = tape::present([Some(self), weight, bias]);
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
