//! The fused loss ops that `tapegrad-losses` builds its criteria from: an elementwise
//! loss with its derivatives computed in the forward pass, and negative log-likelihood
//! over class indices (with class weights and label smoothing).
//!
//! They are built-in records rather than [`crate::custom_op`]s so that a training step
//! runs without a heap allocation: what they save (the derivatives, the per-sample
//! scales and classes) lives in pooled buffers, and their backward writes into pooled
//! buffers too, where a custom op needs a boxed closure, an input list and `Vec`s.

use crate::error::{Result, TensorError};
use crate::pool;
use crate::shape::{try_numel, Shape};
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// One element's loss and its partial derivatives, as [`pointwise_loss`]'s `f` gives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointwiseLoss {
    /// The element's loss.
    pub loss: f32,
    /// ∂loss/∂input.
    pub d_input: f32,
    /// ∂loss/∂target.
    pub d_target: f32,
}

/// What a fused loss saves for its backward.
pub(crate) enum LossRecord {
    /// Elementwise: the derivatives with respect to each input that wants a gradient.
    Pointwise {
        name: &'static str,
        input: GradTarget,
        target: GradTarget,
        d_input: Option<Tensor>,
        d_target: Option<Tensor>,
    },
    /// NLL on log-probabilities `[N, C, inner...]`.
    Nll {
        name: &'static str,
        input: GradTarget,
        /// Per sample: the scale `(1 − ε)·w[class]` of its picked log-probability, then
        /// its class (see [`encode_class`]); `[2, samples]`.
        per_sample: Tensor,
        /// Per class: `ε/C·w[c]`, the label-smoothing term's scale; absent without smoothing.
        smooth: Option<Tensor>,
        classes: usize,
        inner: usize,
    },
}

/// A sample's class (`None`: ignored) stored in an f32 slot by its bits: `class + 1`,
/// with 0 for an ignored sample. The values stay below 2³¹, far from the bit patterns
/// of NaNs, so the slot is only ever copied, never computed with, and reads back exactly.
fn encode_class(class: Option<usize>) -> f32 {
    f32::from_bits(class.map_or(0, |c| c as u32 + 1))
}

/// The class [`encode_class`] stored.
fn decode_class(slot: f32) -> Option<usize> {
    (slot.to_bits() as usize).checked_sub(1)
}

/// Most classes an NLL input may have, so that [`encode_class`] stays exact.
const MAX_CLASSES: usize = 1 << 30;

/// Offset of class `c` of sample `s` in an `[N, C, inner]` buffer: sample
/// s = o·inner + r reads class c at (o·C + c)·inner + r.
fn offset(s: usize, c: usize, classes: usize, inner: usize) -> usize {
    ((s / inner) * classes + c) * inner + s % inner
}

impl LossRecord {
    /// The name the loss gave, for anomaly reports.
    pub(crate) fn name(&self) -> String {
        match self {
            LossRecord::Pointwise { name, .. } | LossRecord::Nll { name, .. } => (*name).into(),
        }
    }

    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            LossRecord::Pointwise {
                input,
                target,
                d_input,
                d_target,
                ..
            } => {
                for (t, d) in [(input, d_input), (target, d_target)] {
                    if let Some(d) = d.as_ref().filter(|_| t.requires_grad()) {
                        let mut dx = pool::take(g.len());
                        dx.extend(g.iter().zip(d.data().iter()).map(|(g, d)| g * d));
                        grads.add_to(t, dx);
                    }
                }
            }
            LossRecord::Nll {
                input,
                per_sample,
                smooth,
                classes,
                inner,
                ..
            } => {
                if !input.requires_grad() {
                    return;
                }
                let (classes, inner) = (*classes, *inner);
                let per_sample = per_sample.data();
                let (picked, class) = per_sample.split_at(g.len());
                let smooth = smooth.as_ref().map(|s| s.data());
                let smooth: &[f32] = smooth.as_deref().unwrap_or(&[]);
                let mut grad = pool::zeros(input.numel());
                for (s, &g) in g.iter().enumerate() {
                    let Some(c) = decode_class(class[s]) else {
                        continue;
                    };
                    for (k, w) in smooth.iter().enumerate() {
                        grad[offset(s, k, classes, inner)] -= g * w;
                    }
                    grad[offset(s, c, classes, inner)] -= g * picked[s];
                }
                grads.add_to(input, grad);
            }
        }
    }
}

/// An elementwise loss of `input` against `target` (same shape, checked by the caller
/// or here) as one op: `f(i, x, y)` gives element `i`'s loss and both derivatives in
/// one pass, and the derivatives are kept for the inputs that will receive a gradient.
/// `name` names the op in errors and anomaly reports.
pub fn pointwise_loss(
    name: &'static str,
    input: &Tensor,
    target: &Tensor,
    f: impl Fn(usize, f32, f32) -> PointwiseLoss,
) -> Result<Tensor> {
    if input.shape() != target.shape() {
        return Err(TensorError::ShapeMismatch {
            op: name,
            lhs: input.shape().to_vec(),
            rhs: target.shape().to_vec(),
            detail: "input {} and target {} must have the same shape",
        });
    }
    let recording = tape::should_record(&[input, target]);
    let want_dx = recording && input.requires_grad();
    let want_dy = recording && target.requires_grad();
    let n = input.numel();
    let mut loss = pool::take(n);
    let mut dx = if want_dx { pool::take(n) } else { Vec::new() };
    let mut dy = if want_dy { pool::take(n) } else { Vec::new() };
    {
        let (x, y) = (input.data(), target.data());
        for (i, (&xi, &yi)) in x.iter().zip(y.iter()).enumerate() {
            let p = f(i, xi, yi);
            loss.push(p.loss);
            if want_dx {
                dx.push(p.d_input);
            }
            if want_dy {
                dy.push(p.d_target);
            }
        }
    }
    let saved = |d: Vec<f32>, wanted: bool| {
        wanted.then(|| Tensor::from_parts(d, Shape::from_slice(input.shape())))
    };
    let (d_input, d_target) = (saved(dx, want_dx), saved(dy, want_dy));
    let out = Tensor::from_parts(loss, Shape::from_slice(input.shape()));
    Ok(tape::record(out, &[input, target], || {
        Op::Loss(LossRecord::Pointwise {
            name,
            input: GradTarget::of(input),
            target: GradTarget::of(target),
            d_input,
            d_target,
        })
    }))
}

/// Negative log-likelihood of log-probabilities `input` (`[N, C, d...]`) against one
/// class per sample (`target`, row-major over the input's shape without axis 1):
/// l_i = −(1 − ε)·w_{t_i}·input[i, t_i] − (ε/C)·Σ_c w_c·input[i, c], and 0 where
/// t_i = `ignore_index`. `weight` holds the class weights w (all 1 when absent; its
/// shape `[C]` is checked by the caller), ε is `label_smoothing`, and `out_shape` is
/// the shape of the unreduced loss. Returns that loss and Σ w_{t_i} over the samples
/// not ignored, the mean's divisor. Fails, naming `name`, when a target is neither a
/// class index nor `ignore_index`.
pub fn nll_from_log_probs(
    name: &'static str,
    input: &Tensor,
    target: &[i64],
    weight: Option<&Tensor>,
    ignore_index: i64,
    label_smoothing: f32,
    out_shape: &[usize],
) -> Result<(Tensor, f32)> {
    let samples = try_numel(name, out_shape)?;
    let (n, classes) = match *input.shape() {
        [n, c, ..] => (n, c),
        _ => (0, 0),
    };
    if input.rank() < 2
        || target.len() != samples
        || samples.checked_mul(classes) != Some(input.numel())
    {
        return Err(TensorError::ShapeMismatch {
            op: name,
            lhs: input.shape().to_vec(),
            rhs: vec![target.len()],
            detail: "input {} needs one class index per sample (its shape without the \
                     class axis 1), got targets of shape {}",
        });
    }
    if let Some(w) = weight.filter(|w| w.shape() != [classes]) {
        return Err(TensorError::ShapeMismatch {
            op: name,
            lhs: input.shape().to_vec(),
            rhs: w.shape().to_vec(),
            detail: "input {} needs a class weight of shape [C], got {}",
        });
    }
    if classes > MAX_CLASSES {
        return Err(TensorError::InvalidArgument {
            op: name,
            reason: format!("at most {MAX_CLASSES} classes are supported, got {classes}"),
        });
    }
    let eps = label_smoothing;
    let inner = input.numel() / (n * classes).max(1);
    let class_weight = weight.map(|w| w.data());
    let class_weight: Option<&[f32]> = class_weight.as_deref();
    // [picked scale per sample | class per sample]
    let mut per_sample = pool::zeros(2 * samples);
    // Σ over every sample's weight (0 where ignored) in order, from −0.0 as
    // `Iterator::sum` does, so the mean's divisor is the one the unfused loss had.
    let mut total_weight = -0.0f32;
    {
        let (picked, class) = per_sample.split_at_mut(samples);
        for (position, &t) in target.iter().enumerate() {
            if t == ignore_index {
                class[position] = encode_class(None);
                total_weight += 0.0;
                continue;
            }
            let c = usize::try_from(t)
                .ok()
                .filter(|&c| c < classes)
                .ok_or_else(|| TensorError::InvalidArgument {
                    op: name,
                    reason: format!(
                        "target {t} at position {position} is not a class index in 0..{classes} \
                         (nor ignore_index {ignore_index})"
                    ),
                })?;
            let w = class_weight.map_or(1.0, |w| w[c]);
            total_weight += w;
            picked[position] = (1.0 - eps) * w;
            class[position] = encode_class(Some(c));
        }
    }
    let smooth = (eps > 0.0).then(|| {
        let mut s = pool::take(classes);
        match class_weight {
            None => s.resize(classes, eps / classes as f32),
            Some(w) => s.extend(w.iter().map(|w| eps / classes as f32 * w)),
        }
        s
    });
    let mut loss = pool::zeros(samples);
    {
        let x = input.data();
        let (picked, class) = per_sample.split_at(samples);
        let smooth: &[f32] = smooth.as_deref().unwrap_or(&[]);
        for (s, l) in loss.iter_mut().enumerate() {
            let Some(c) = decode_class(class[s]) else {
                continue;
            };
            let smooth: f32 = (0..smooth.len())
                .map(|k| smooth[k] * x[offset(s, k, classes, inner)])
                .sum();
            *l = -(picked[s] * x[offset(s, c, classes, inner)] + smooth);
        }
    }
    let out = Tensor::from_parts(loss, Shape::from_slice(out_shape));
    let per_sample = Tensor::from_parts(per_sample, Shape::from_slice(&[2, samples]));
    let smooth = smooth.map(|s| Tensor::from_parts(s, Shape::from_slice(&[classes])));
    let out = tape::record(out, &[input], || {
        Op::Loss(LossRecord::Nll {
            name,
            input: GradTarget::of(input),
            per_sample,
            smooth,
            classes,
            inner,
        })
    });
    Ok((out, total_weight))
}
