//! Reductions and normalisations along an axis: sum, mean, max, softmax, log_softmax.
//!
//! A tensor reduced along `axis` is viewed as `[outer, len, inner]`; the common case
//! (the last axis, `inner == 1`) runs over contiguous rows. Sums use a fixed 16-lane
//! order, so they vectorise, are more accurate than a running sum, and give the same
//! bits on every run whatever the thread count. Softmax subtracts the row maximum.

use crate::error::{or_panic, Result, TensorError};
use crate::parallel::for_each_piece;
use crate::pool;
use crate::shape::{numel, Shape};
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// Sum of a slice in a fixed order: 16 interleaved partial sums, then a tree.
pub(crate) fn sum_slice(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(tail) {
        *l += v;
    }
    let mut width = 16;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

/// `[outer, len, inner]` view of a shape reduced along `axis`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AxisView {
    outer: usize,
    len: usize,
    inner: usize,
}

impl AxisView {
    pub(crate) fn new(shape: &[usize], axis: usize) -> Self {
        AxisView {
            outer: numel(&shape[..axis]),
            len: shape[axis],
            inner: numel(&shape[axis + 1..]),
        }
    }

    pub(crate) fn outer(&self) -> usize {
        self.outer
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn inner(&self) -> usize {
        self.inner
    }

    /// When the lines are contiguous (`inner == 1`, the last axis): calls
    /// `f(start, line)` for every line, `line` being its `len` elements of `out` (laid
    /// out as the input), split between threads by whole lines for large tensors, and
    /// returns true. Each line is computed alone, so the split changes no bit; on 2
    /// threads the GPT's cross-entropy softmax was a serial stretch. Strided lines
    /// return false without calling `f`.
    fn for_each_row(&self, out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) -> bool {
        if self.inner != 1 || self.len == 0 {
            return false;
        }
        const LINES_PER_PIECE: usize = 32;
        let len = self.len;
        let piece = LINES_PER_PIECE * len;
        for_each_piece(out, piece, out.len(), |p, part| {
            for (l, line) in part.chunks_exact_mut(len).enumerate() {
                f(p * piece + l * len, line);
            }
        });
        true
    }

    /// Calls `f(start, stride)` for every line along the axis.
    fn for_each_line(&self, mut f: impl FnMut(usize, usize)) {
        for o in 0..self.outer {
            for i in 0..self.inner {
                f(o * self.len * self.inner + i, self.inner);
            }
        }
    }
}

pub(crate) fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis >= shape.len() {
        return Err(TensorError::AxisOutOfRange {
            op,
            axis,
            rank: shape.len(),
        });
    }
    Ok(())
}

fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Shape {
    let mut out = Shape::from_slice(shape);
    if keepdim {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    out
}

/// Sum along an axis, in a fixed order.
fn sum_along(x: &[f32], v: AxisView) -> Vec<f32> {
    if v.inner == 1 {
        let mut out = pool::take(v.outer);
        if v.len > 0 {
            out.extend(x.chunks_exact(v.len).map(sum_slice));
        } else {
            out.resize(v.outer, 0.0);
        }
        return out;
    }
    let mut out = pool::zeros(v.outer * v.inner);
    for (o, dst) in out.chunks_exact_mut(v.inner).enumerate() {
        let block = &x[o * v.len * v.inner..(o + 1) * v.len * v.inner];
        for row in block.chunks_exact(v.inner) {
            for (d, &s) in dst.iter_mut().zip(row) {
                *d += s;
            }
        }
    }
    out
}

/// Spreads `g` (one value per line) back over every element of its line, times `scale`.
fn spread(g: &[f32], v: AxisView, scale: f32) -> Vec<f32> {
    let mut out = pool::take(v.outer * v.len * v.inner);
    for o in 0..v.outer {
        let line = &g[o * v.inner..(o + 1) * v.inner];
        for _ in 0..v.len {
            out.extend(line.iter().map(|&x| x * scale));
        }
    }
    out
}

pub(crate) enum ReduceRecord {
    /// Sum or mean (scale 1/len) along `view`'s axis; all elements is one line.
    Sum {
        input: GradTarget,
        view: AxisView,
        scale: f32,
    },
    Max {
        input: GradTarget,
        argmax: Vec<usize>,
    },
    Softmax {
        input: GradTarget,
        output: Tensor,
        view: AxisView,
    },
    LogSoftmax {
        input: GradTarget,
        output: Tensor,
        view: AxisView,
    },
}

impl ReduceRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            ReduceRecord::Sum { input, view, scale } => {
                grads.add_to(input, spread(g, *view, *scale))
            }
            ReduceRecord::Max { input, argmax } => {
                let mut dx = pool::zeros(input.numel());
                for (&i, &gv) in argmax.iter().zip(g) {
                    dx[i] += gv;
                }
                grads.add_to(input, dx);
            }
            ReduceRecord::Softmax {
                input,
                output,
                view,
            } => {
                // dx = y · (g − Σ g·y)
                let y = output.data();
                let mut dx = pool::for_overwrite(y.len());
                let ys: &[f32] = &y;
                let rows = view.for_each_row(&mut dx, |start, out| {
                    let (g, y) = (&g[start..][..out.len()], &ys[start..][..out.len()]);
                    let dot: f32 = g.iter().zip(y).map(|(&g, &y)| g * y).sum();
                    for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                        *o = y * (g - dot);
                    }
                });
                if !rows {
                    view.for_each_line(|start, stride| {
                        let idx = (0..view.len).map(|l| start + l * stride);
                        let dot: f32 = idx.clone().map(|i| g[i] * y[i]).sum();
                        for i in idx {
                            dx[i] = y[i] * (g[i] - dot);
                        }
                    });
                }
                grads.add_to(input, dx);
            }
            ReduceRecord::LogSoftmax {
                input,
                output,
                view,
            } => {
                // dx = g − softmax · Σ g
                let y = output.data();
                let mut dx = pool::for_overwrite(y.len());
                let ys: &[f32] = &y;
                let rows = view.for_each_row(&mut dx, |start, out| {
                    let (g, y) = (&g[start..][..out.len()], &ys[start..][..out.len()]);
                    let total: f32 = g.iter().copied().sum();
                    for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                        *o = g - y.exp() * total;
                    }
                });
                if !rows {
                    view.for_each_line(|start, stride| {
                        let idx = (0..view.len).map(|l| start + l * stride);
                        let total: f32 = idx.clone().map(|i| g[i]).sum();
                        for i in idx {
                            dx[i] = g[i] - y[i].exp() * total;
                        }
                    });
                }
                grads.add_to(input, dx);
            }
        }
    }
}

impl ReduceRecord {
    /// The op's name for anomaly reports.
    pub(crate) fn name(&self) -> String {
        // Variants added later fall to the family's name.
        #[allow(unreachable_patterns)]
        match self {
            ReduceRecord::Sum { .. } => "sum/mean".into(),
            ReduceRecord::Max { .. } => "max".into(),
            ReduceRecord::Softmax { .. } => "softmax".into(),
            ReduceRecord::LogSoftmax { .. } => "log_softmax".into(),
            _ => "reduction".into(),
        }
    }
}

impl Tensor {
    fn record_sum(&self, data: Vec<f32>, shape: Shape, view: AxisView, scale: f32) -> Tensor {
        let out = Tensor::from_parts(data, shape);
        tape::record(out, &[self], || {
            Op::Reduce(ReduceRecord::Sum {
                input: GradTarget::of(self),
                view,
                scale,
            })
        })
    }

    /// Sum of all elements, as a zero-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        let total = sum_slice(&self.data());
        let view = AxisView {
            outer: 1,
            len: self.numel(),
            inner: 1,
        };
        self.record_sum(pool::copy_of(&[total]), Shape::new(), view, 1.0)
    }

    /// Mean of all elements, as a zero-dimensional tensor.
    pub fn mean(&self) -> Tensor {
        let n = self.numel();
        let mean = sum_slice(&self.data()) / n as f32;
        let view = AxisView {
            outer: 1,
            len: n,
            inner: 1,
        };
        self.record_sum(pool::copy_of(&[mean]), Shape::new(), view, 1.0 / n as f32)
    }

    /// Sum along `axis`, keeping it as length 1 when `keepdim`.
    pub fn try_sum_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        check_axis("sum_axis", self.shape(), axis)?;
        let view = AxisView::new(self.shape(), axis);
        let data = sum_along(&self.data(), view);
        Ok(self.record_sum(data, reduced_shape(self.shape(), axis, keepdim), view, 1.0))
    }

    /// Sum along `axis`; panics when the axis is out of range.
    #[track_caller]
    pub fn sum_axis(&self, axis: usize, keepdim: bool) -> Tensor {
        or_panic(self.try_sum_axis(axis, keepdim))
    }

    /// Mean along `axis`, keeping it as length 1 when `keepdim`.
    pub fn try_mean_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        check_axis("mean_axis", self.shape(), axis)?;
        let view = AxisView::new(self.shape(), axis);
        let mut data = sum_along(&self.data(), view);
        let len = view.len as f32;
        data.iter_mut().for_each(|v| *v /= len);
        Ok(self.record_sum(
            data,
            reduced_shape(self.shape(), axis, keepdim),
            view,
            1.0 / len,
        ))
    }

    /// Mean along `axis`; panics when the axis is out of range.
    #[track_caller]
    pub fn mean_axis(&self, axis: usize, keepdim: bool) -> Tensor {
        or_panic(self.try_mean_axis(axis, keepdim))
    }

    /// Flat indices of the maxima along `axis` (first one on ties), one per line.
    fn argmax_flat(&self, axis: usize) -> Result<Vec<usize>> {
        check_axis("max_axis", self.shape(), axis)?;
        let view = AxisView::new(self.shape(), axis);
        if view.len == 0 {
            return Err(TensorError::InvalidArgument {
                op: "max_axis",
                reason: format!(
                    "cannot take the max of an empty axis of shape {:?}",
                    self.shape()
                ),
            });
        }
        let x = self.data();
        let mut argmax = Vec::with_capacity(view.outer * view.inner);
        view.for_each_line(|start, stride| {
            let mut best = start;
            for l in 1..view.len {
                let i = start + l * stride;
                // `>` keeps the first maximum; NaN wins, as in PyTorch.
                if x[i] > x[best] || (x[i].is_nan() && !x[best].is_nan()) {
                    best = i;
                }
            }
            argmax.push(best);
        });
        Ok(argmax)
    }

    /// Maximum along `axis`; the gradient flows to the (first) arg-max.
    pub fn try_max_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        let argmax = self.argmax_flat(axis)?;
        let data = {
            let x = self.data();
            let mut out = pool::take(argmax.len());
            out.extend(argmax.iter().map(|&i| x[i]));
            out
        };
        let out = Tensor::from_parts(data, reduced_shape(self.shape(), axis, keepdim));
        Ok(tape::record(out, &[self], || {
            Op::Reduce(ReduceRecord::Max {
                input: GradTarget::of(self),
                argmax,
            })
        }))
    }

    /// Maximum along `axis`; panics when the axis is out of range or empty.
    #[track_caller]
    pub fn max_axis(&self, axis: usize, keepdim: bool) -> Tensor {
        or_panic(self.try_max_axis(axis, keepdim))
    }

    /// Positions of the maxima along `axis` (not differentiable), e.g. predicted classes.
    pub fn try_argmax_axis(&self, axis: usize) -> Result<Vec<usize>> {
        let view = AxisView::new(self.shape(), axis.min(self.rank().saturating_sub(1)));
        let flat = self.argmax_flat(axis)?;
        Ok(flat
            .into_iter()
            .map(|i| (i / view.inner) % view.len)
            .collect())
    }

    /// Positions of the maxima along `axis`; panics when the axis is out of range.
    #[track_caller]
    pub fn argmax_axis(&self, axis: usize) -> Vec<usize> {
        or_panic(self.try_argmax_axis(axis))
    }

    fn softmax_like(&self, op: &'static str, axis: usize, log: bool) -> Result<Tensor> {
        check_axis(op, self.shape(), axis)?;
        let view = AxisView::new(self.shape(), axis);
        let x = self.data();
        let mut y = pool::for_overwrite(x.len());
        let xs: &[f32] = &x;
        // The same arithmetic as the strided loop below, one contiguous line at a time.
        let rows = view.for_each_row(&mut y, |start, out| {
            let line = &xs[start..start + out.len()];
            let max = line.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = line.iter().map(|&v| (v - max).exp()).sum();
            if log {
                let log_total = total.ln();
                for (o, &v) in out.iter_mut().zip(line) {
                    *o = v - max - log_total;
                }
            } else {
                for (o, &v) in out.iter_mut().zip(line) {
                    *o = (v - max).exp() / total;
                }
            }
        });
        if !rows {
            view.for_each_line(|start, stride| {
                let idx = (0..view.len).map(|l| start + l * stride);
                let max = idx.clone().map(|i| x[i]).fold(f32::NEG_INFINITY, f32::max);
                // An all −∞ line would give NaN from (−∞) − (−∞); PyTorch gives NaN too.
                let total: f32 = idx.clone().map(|i| (x[i] - max).exp()).sum();
                if log {
                    let log_total = total.ln();
                    for i in idx {
                        y[i] = x[i] - max - log_total;
                    }
                } else {
                    for i in idx {
                        y[i] = (x[i] - max).exp() / total;
                    }
                }
            });
        }
        drop(x);
        let out = Tensor::from_parts(y, self.0.shape.clone());
        let saved = out.clone();
        Ok(tape::record(out, &[self], || {
            let record = if log {
                ReduceRecord::LogSoftmax {
                    input: GradTarget::of(self),
                    output: saved,
                    view,
                }
            } else {
                ReduceRecord::Softmax {
                    input: GradTarget::of(self),
                    output: saved,
                    view,
                }
            };
            Op::Reduce(record)
        }))
    }

    /// Softmax along `axis`, computed stably (the line's maximum is subtracted first).
    pub fn try_softmax(&self, axis: usize) -> Result<Tensor> {
        self.softmax_like("softmax", axis, false)
    }

    /// Softmax along `axis`; panics when the axis is out of range.
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Tensor {
        or_panic(self.try_softmax(axis))
    }

    /// log(softmax(x)) along `axis` as `x − max − log Σ exp(x − max)`: finite for
    /// logits of ±1000, where the naive form overflows.
    pub fn try_log_softmax(&self, axis: usize) -> Result<Tensor> {
        self.softmax_like("log_softmax", axis, true)
    }

    /// log_softmax along `axis`; panics when the axis is out of range.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Tensor {
        or_panic(self.try_log_softmax(axis))
    }
}
