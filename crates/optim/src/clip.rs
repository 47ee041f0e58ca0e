//! Gradient clipping (`torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`): rescale or
//! clamp the accumulated gradients in place between `backward` and `step`.

use tapegrad_autograd::Tensor;

use crate::error::OptimError;
use crate::kernels::with_fma;

/// Scales all gradients together so that their joint `norm_type`-norm is at most
/// `max_norm`, and returns the norm they had before.
///
/// As in PyTorch, the norm is taken over each gradient's norm (as if all gradients were
/// one vector), the factor is `min(max_norm / (total_norm + 1e-6), 1)` in f32, and every
/// gradient is multiplied by it. Parameters without a gradient are ignored; with none at
/// all the result is 0. `norm_type` may be any p-norm order, including
/// `f32::INFINITY` (largest absolute value). A non-finite norm is not an error: the
/// gradients become non-finite, as PyTorch's default `error_if_nonfinite=False` does.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32, norm_type: f32) -> f32 {
    match clip_grad_norm_with(params, max_norm, norm_type, false) {
        Ok(total_norm) => total_norm,
        Err(_) => unreachable!("only error_if_nonfinite makes clipping fail"),
    }
}

/// [`clip_grad_norm`] with PyTorch's `error_if_nonfinite` option: when it is set and
/// the total norm is NaN or infinite, the gradients are left as they are and the call
/// fails with [`OptimError::NonFiniteGradNorm`], so a training loop can skip the step
/// instead of writing NaN into every parameter. With `false` it is [`clip_grad_norm`].
pub fn clip_grad_norm_with(
    params: &[Tensor],
    max_norm: f32,
    norm_type: f32,
    error_if_nonfinite: bool,
) -> Result<f32, OptimError> {
    // The per-parameter norms are produced lazily, in order, rather than collected:
    // the same values and order without a list allocated every step.
    let norms = params.iter().filter_map(|p| {
        p.grad_ref().map(|g| match norm_type {
            2.0 => l2_norm(&g),
            _ => vector_norm(g.iter().copied(), norm_type),
        })
    });
    if params.iter().all(|p| p.grad_ref().is_none()) {
        return Ok(0.0);
    }
    let total_norm = vector_norm(norms, norm_type);
    if error_if_nonfinite && !total_norm.is_finite() {
        return Err(OptimError::NonFiniteGradNorm {
            norm_type,
            total_norm,
        });
    }
    let coef = max_norm / (total_norm + 1e-6);
    // Written as a comparison so that a NaN factor passes through like torch.clamp's.
    let coef = if coef > 1.0 { 1.0 } else { coef };
    // A factor of 1 changes no gradient (x·1 = x for every float): skip the pass.
    if coef != 1.0 {
        for p in params {
            if let Some(mut grad) = p.grad_mut() {
                with_fma(|| grad.iter_mut().for_each(|g| *g *= coef));
            }
        }
    }
    Ok(total_norm)
}

/// Clamps every gradient element into `[-clip_value, clip_value]` in place.
///
/// NaN stays NaN, as with `torch.clamp`; a negative `clip_value` sets every element
/// to `clip_value`, which is what PyTorch's clamp does when min > max.
pub fn clip_grad_value(params: &[Tensor], clip_value: f32) {
    for p in params {
        if let Some(mut grad) = p.grad_mut() {
            for g in grad.iter_mut() {
                if !g.is_nan() {
                    *g = g.max(-clip_value).min(clip_value);
                }
            }
        }
    }
}

/// The 2-norm of `x`, summed in f64 in 8 interleaved lanes (a single running f64 sum
/// waits on each add's latency; the lanes let the adds overlap) and rounded once to f32.
/// The lanes are combined in a fixed order, so the result depends on `x` alone.
fn l2_norm(x: &[f32]) -> f32 {
    let mut lanes = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum();
    // AVX2 code, four f64 lanes to a vector (the same additions in the same order).
    with_fma(|| {
        for c in chunks {
            for (s, &v) in lanes.iter_mut().zip(c) {
                *s += f64::from(v) * f64::from(v);
            }
        }
    });
    let sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail;
    sum.sqrt() as f32
}

/// `torch.linalg.vector_norm(x, ord)`, accumulated in f64 and rounded once to f32.
fn vector_norm(values: impl Iterator<Item = f32>, ord: f32) -> f32 {
    let abs = values.map(|v| f64::from(v.abs()));
    let norm = if ord == f32::INFINITY {
        abs.fold(0.0, |m, v| if v > m || v.is_nan() { v } else { m })
    } else if ord == f32::NEG_INFINITY {
        abs.fold(
            f64::INFINITY,
            |m, v| if v < m || v.is_nan() { v } else { m },
        )
    } else if ord == 0.0 {
        abs.filter(|&v| v != 0.0).count() as f64
    } else if ord == 2.0 {
        abs.map(|v| v * v).sum::<f64>().sqrt()
    } else {
        let p = f64::from(ord);
        abs.map(|v| v.powf(p)).sum::<f64>().powf(1.0 / p)
    };
    norm as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_l2_norm_matches_the_running_sum() {
        for len in [0, 1, 7, 8, 9, 61, 1000] {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let (lanes, running) = (l2_norm(&x), vector_norm(x.iter().copied(), 2.0));
            assert!(
                (lanes - running).abs() <= 1e-6 * running,
                "{len}: {lanes} vs {running}"
            );
        }
        assert!(l2_norm(&[3.0, f32::NAN]).is_nan());
        assert_eq!(l2_norm(&[f32::INFINITY, 1.0]), f32::INFINITY);
    }
}
