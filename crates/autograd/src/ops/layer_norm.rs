//! Layer normalisation over the last axis as one fused differentiable op, PyTorch's
//! `F.layer_norm(x, [d], weight, bias, eps)`.
//!
//! Composed of elementwise ops, a layer norm costs nine broadcasting passes forward and
//! as many backward; fused, the forward reads each row twice (mean, then variance and
//! output) and saves per row the mean and 1/√(var + ε), and the backward computes the
//! input gradient row by row in closed form:
//!
//! ```text
//! x̂ = (x − μ)·r,  g' = g·γ,  dx = r·(g' − mean(g') − x̂·mean(g'·x̂))
//! dγ = Σ_rows g·x̂,  dβ = Σ_rows g
//! ```
//!
//! Rows are split across threads in fixed blocks of [`ROWS_PER_BLOCK`]; the parameter
//! gradients are summed per block and the blocks combined in order, so the result does
//! not depend on the thread count.

#[cfg(target_arch = "x86_64")]
use crate::cpu::has_avx2_fma;

#[cfg(target_arch = "x86_64")]
#[path = "layer_norm_avx2.rs"]
mod avx2;
use crate::error::{or_panic, Result, TensorError};
use crate::parallel::{for_each_piece, for_each_piece2};
use crate::pool;
use crate::shape::Shape;
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// Rows per block of the backward's parameter-gradient partial sums (and of the work
/// handed to one thread).
const ROWS_PER_BLOCK: usize = 32;

/// What layer norm saves: its input and parameters, and per row the mean and
/// 1/√(var + ε) (`[2 · rows]`, the pair of each row side by side).
pub(crate) struct LayerNormRecord {
    input: Tensor,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    stats: Tensor,
}

/// Eight running sums combined in a fixed order (pairwise across the two halves).
#[inline(always)]
pub(super) fn combine(acc: &[f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Σ x over a row with eight running sums, so the loop vectorises; the order of the
/// additions depends only on the row's length.
#[inline(always)]
fn row_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let mut s = combine(&acc);
    for &v in rest {
        s += f(v);
    }
    s
}

/// Normalises each `d`-wide row of `x` into `y`, writing each row's mean and reciprocal
/// standard deviation into `stats` (`[mean, rstd]` per row). Inlined into an AVX2
/// caller, its loops get 8 lanes (the same bits: nothing is fused).
#[inline(always)]
pub(super) fn forward_rows(
    x: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
    d: usize,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) {
    for ((xr, yr), st) in x
        .chunks_exact(d)
        .zip(y.chunks_exact_mut(d))
        .zip(stats.chunks_exact_mut(2))
    {
        let mu = row_sum(xr, |v| v) / d as f32;
        let var = row_sum(xr, |v| (v - mu) * (v - mu)) / d as f32;
        let s = 1.0 / (var + eps).sqrt();
        st[0] = mu;
        st[1] = s;
        match (w, b) {
            (Some(w), Some(b)) => {
                for (((o, &v), &wv), &bv) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = (v - mu) * s * wv + bv;
                }
            }
            (Some(w), None) => {
                for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
                    *o = (v - mu) * s * wv;
                }
            }
            (None, Some(b)) => {
                for ((o, &v), &bv) in yr.iter_mut().zip(xr).zip(b) {
                    *o = (v - mu) * s + bv;
                }
            }
            (None, None) => {
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - mu) * s;
                }
            }
        }
    }
}

/// The input gradient of one block of rows into `dx`, and the block's partial sums
/// Σ g·x̂ and Σ g into `partial` (`[2 · d]`). `stats` holds `[mean, rstd]` per row;
/// `w` is γ, or ones when the norm has no weight (g·1 is g, bit for bit).
///
/// One pass over each row gathers the parameter sums and both row sums, Σ g·γ and
/// Σ g·γ·x̂, in eight lanes combined as [`row_sum`] combines them; a second writes dx.
#[inline(always)]
pub(super) fn backward_rows(
    g: &[f32],
    x: &[f32],
    stats: &[f32],
    w: &[f32],
    d: usize,
    mut dx: Option<&mut [f32]>,
    partial: &mut [f32],
) {
    let (dw, db) = partial.split_at_mut(d);
    dw.fill(0.0);
    db.fill(0.0);
    let inv_d = 1.0 / d as f32;
    let full = d / 8 * 8;
    for (row, ((gr, xr), st)) in g
        .chunks_exact(d)
        .zip(x.chunks_exact(d))
        .zip(stats.chunks_exact(2))
        .enumerate()
    {
        let (mu, s) = (st[0], st[1]);
        let Some(dx) = dx.as_deref_mut() else {
            for (((a, c), &gv), &xv) in dw.iter_mut().zip(db.iter_mut()).zip(gr).zip(xr) {
                *a += gv * ((xv - mu) * s);
                *c += gv;
            }
            continue;
        };
        let (mut acc_g, mut acc_gx) = ([0.0f32; 8], [0.0f32; 8]);
        let lanes = (gr[..full].chunks_exact(8))
            .zip(xr[..full].chunks_exact(8))
            .zip(w[..full].chunks_exact(8))
            .zip(dw[..full].chunks_exact_mut(8))
            .zip(db[..full].chunks_exact_mut(8));
        for ((((gc, xc), wc), dwc), dbc) in lanes {
            let (gc, xc, wc): (&[f32; 8], &[f32; 8], &[f32; 8]) = (
                gc.try_into().expect("8 lanes"),
                xc.try_into().expect("8 lanes"),
                wc.try_into().expect("8 lanes"),
            );
            let (dwc, dbc): (&mut [f32; 8], &mut [f32; 8]) = (
                dwc.try_into().expect("8 lanes"),
                dbc.try_into().expect("8 lanes"),
            );
            for k in 0..8 {
                let (gv, xh) = (gc[k], (xc[k] - mu) * s);
                dwc[k] += gv * xh;
                dbc[k] += gv;
                let gw = gv * wc[k];
                acc_g[k] += gw;
                acc_gx[k] += gw * xh;
            }
        }
        let sums = (combine(&acc_g), combine(&acc_gx));
        let (sum_g, sum_gx) = backward_tail((gr, xr, w), (dw, db), (mu, s), full, sums);
        let (mg, mgx) = (sum_g * inv_d, sum_gx * inv_d);
        let dxr = &mut dx[row * d..][..d];
        for (((o, &gv), &wv), &xv) in dxr.iter_mut().zip(gr).zip(w).zip(xr) {
            *o = s * (gv * wv - mg - (xv - mu) * s * mgx);
        }
    }
}

/// One row's backward terms for columns `from..` (past the 8-lane chunks): adds to dγ
/// and dβ and carries `(Σg·γ, Σg·γ·x̂)` on from `sums`. Shared by the portable and the
/// AVX2 rows, so that their tails are the same arithmetic.
#[inline(always)]
pub(super) fn backward_tail(
    (gr, xr, w): (&[f32], &[f32], &[f32]),
    (dw, db): (&mut [f32], &mut [f32]),
    (mu, s): (f32, f32),
    from: usize,
    (mut sum_g, mut sum_gx): (f32, f32),
) -> (f32, f32) {
    for j in from..gr.len() {
        let (gv, xh) = (gr[j], (xr[j] - mu) * s);
        dw[j] += gv * xh;
        db[j] += gv;
        sum_g += gv * w[j];
        sum_gx += gv * w[j] * xh;
    }
    (sum_g, sum_gx)
}

/// [`forward_rows`] on the widest path this CPU has.
fn forward_rows_dispatch(
    x: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
    d: usize,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on the running CPU.
        return unsafe { avx2::forward_rows(x, y, stats, d, w, b, eps) };
    }
    forward_rows(x, y, stats, d, w, b, eps)
}

/// [`backward_rows`] on the widest path this CPU has.
fn backward_rows_dispatch(
    g: &[f32],
    x: &[f32],
    stats: &[f32],
    w: &[f32],
    d: usize,
    dx: Option<&mut [f32]>,
    partial: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on the running CPU.
        return unsafe { avx2::backward_rows(g, x, stats, w, d, dx, partial) };
    }
    backward_rows(g, x, stats, w, d, dx, partial)
}

impl LayerNormRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        let shape = self.input.shape();
        let d = *shape.last().expect("layer_norm input has rank ≥ 1");
        let rows = self.input.numel().checked_div(d).unwrap_or(0);
        let want_x = grads.wants(&self.input);
        let want_w = self.weight.as_ref().is_some_and(|t| grads.wants(t));
        let want_b = self.bias.as_ref().is_some_and(|t| grads.wants(t));
        let blocks = rows.div_ceil(ROWS_PER_BLOCK);
        let mut partials = pool::for_overwrite(blocks * 2 * d);
        let mut dx = if want_x {
            pool::for_overwrite(rows * d)
        } else {
            Vec::new()
        };
        let mut ones = Vec::new();
        if self.weight.is_none() {
            ones = pool::take(d);
            ones.resize(d, 1.0);
        }
        {
            let x = self.input.data();
            let stats = self.stats.data();
            let w = self.weight.as_ref().map(|t| t.data());
            // Plain slices, which the worker threads may share.
            let (x, stats, w): (&[f32], &[f32], &[f32]) =
                (&x, &stats, w.as_deref().unwrap_or(&ones));
            let block = ROWS_PER_BLOCK * d;
            let run = |i: usize, dxb: Option<&mut [f32]>, part: &mut [f32]| {
                let r0 = i * ROWS_PER_BLOCK;
                let r1 = (r0 + ROWS_PER_BLOCK).min(rows);
                backward_rows_dispatch(
                    &g[r0 * d..r1 * d],
                    &x[r0 * d..r1 * d],
                    &stats[2 * r0..2 * r1],
                    w,
                    d,
                    dxb,
                    part,
                );
            };
            if want_x {
                for_each_piece2(
                    (&mut dx, block),
                    (&mut partials, 2 * d),
                    rows * d,
                    |i, a, p| run(i, Some(a), p),
                );
            } else {
                for_each_piece(&mut partials, 2 * d, rows * d, |i, p| run(i, None, p));
            }
        }
        pool::give(ones);
        if want_x {
            grads.add(&self.input, dx);
        }
        if want_w || want_b {
            // Combine the blocks in order: the same sums whatever the thread count.
            let mut total = pool::zeros(2 * d);
            for part in partials.chunks_exact(2 * d) {
                for (t, &p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
            let mut db = pool::copy_of(&total[d..]);
            total.truncate(d);
            let dw = total;
            match self.weight.as_ref().filter(|_| want_w) {
                Some(t) => grads.add(t, dw),
                None => pool::give(dw),
            }
            match self.bias.as_ref().filter(|_| want_b) {
                Some(t) => grads.add(t, std::mem::take(&mut db)),
                None => pool::give(db),
            }
        }
        pool::give(partials);
    }
}

impl Tensor {
    /// Layer normalisation over the last axis, PyTorch's
    /// `F.layer_norm(x, normalized_shape=[d], weight, bias, eps)`: each row is shifted
    /// to mean 0 and scaled by 1/√(var + ε) (the biased variance), then multiplied by
    /// `weight` and shifted by `bias` (both `[d]`, each optional).
    pub fn try_layer_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        let shape = self.shape();
        let Some(&d) = shape.last() else {
            return Err(TensorError::InvalidArgument {
                op: "layer_norm",
                reason: "expected an input of rank 1 or more, got a scalar".into(),
            });
        };
        for (name, t) in [("weight", weight), ("bias", bias)] {
            if let Some(t) = t.filter(|t| t.shape() != [d]) {
                return Err(TensorError::InvalidArgument {
                    op: "layer_norm",
                    reason: format!(
                        "{name} must have shape [{d}] for input {shape:?} (normalised over \
                         the last axis), got {:?}",
                        t.shape()
                    ),
                });
            }
        }
        let rows = self.numel().checked_div(d).unwrap_or(0);
        let mut out = pool::for_overwrite(self.numel());
        let mut stats = pool::for_overwrite(2 * rows);
        {
            let x = self.data();
            let (w, b) = (weight.map(|t| t.data()), bias.map(|t| t.data()));
            let (x, w, b): (&[f32], _, _) = (&x, w.as_deref(), b.as_deref());
            let block = ROWS_PER_BLOCK * d;
            for_each_piece2(
                (&mut out, block),
                (&mut stats, 2 * ROWS_PER_BLOCK),
                rows * d,
                |i, y, st| forward_rows_dispatch(&x[i * block..][..y.len()], y, st, d, w, b, eps),
            );
        }
        let out = Tensor::from_parts(out, self.0.shape.clone());
        let inputs = tape::present([Some(self), weight, bias]);
        let mut stats = Some(stats);
        let out = tape::record(out, &inputs, || {
            Op::LayerNorm(LayerNormRecord {
                input: self.clone(),
                weight: weight.cloned(),
                bias: bias.cloned(),
                stats: Tensor::from_parts(
                    stats.take().expect("recorded once"),
                    Shape::from_slice(&[2 * rows]),
                ),
            })
        });
        if let Some(s) = stats {
            pool::give(s);
        }
        Ok(out)
    }

    /// [`Tensor::try_layer_norm`], panicking with the error's message.
    #[track_caller]
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Tensor {
        or_panic(self.try_layer_norm(weight, bias, eps))
    }
}
