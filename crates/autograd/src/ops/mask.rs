//! Selection by mask: `masked_fill`, `where`, `tril` and `triu`.
//!
//! tapegrad has one element type, so a mask is an f32 tensor read as a boolean:
//! any non-zero element is `true` (write masks as 0.0 / 1.0). A mask is a constant
//! of the op: no gradient flows into it, as none flows into PyTorch's bool tensors.
//! Masks and operands broadcast as in PyTorch.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::binary::sum_to_shape;
use crate::pool;
use crate::shape::{broadcast_shapes, broadcast_strides, for_each_offset2, numel, Shape};
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// `x` (of shape `from`) read at the broadcast shape `to`, as a contiguous buffer.
fn expanded(x: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return pool::copy_of(x);
    }
    let strides = broadcast_strides(from, to);
    let zeros: Shape = smallvec::smallvec![0; to.len()];
    let mut out = pool::take(numel(to));
    for_each_offset2(to, &strides, &zeros, |i, _| out.push(x[i]));
    out
}

/// Whether element (row, col) of a matrix is kept by `tril(diagonal)` (or `triu`).
fn tri_keeps(upper: bool, diagonal: i64, row: usize, col: usize) -> bool {
    let d = col as i64 - row as i64;
    if upper {
        d >= diagonal
    } else {
        d <= diagonal
    }
}

/// Zeroes the elements of every trailing matrix that `tri_keeps` drops.
fn tri_apply(x: &mut [f32], shape: &[usize], upper: bool, diagonal: i64) {
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    if rows * cols == 0 {
        return;
    }
    for matrix in x.chunks_exact_mut(rows * cols) {
        for (r, row) in matrix.chunks_exact_mut(cols).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                if !tri_keeps(upper, diagonal, r, c) {
                    *v = 0.0;
                }
            }
        }
    }
}

pub(crate) enum MaskRecord {
    /// The gradient passes where the (broadcast) mask is zero.
    MaskedFill { input: GradTarget, keep: Vec<f32> },
    /// `cond` already broadcast to the output shape.
    Where {
        cond: Vec<f32>,
        a: GradTarget,
        b: GradTarget,
        out_shape: Shape,
    },
    Tri {
        input: GradTarget,
        upper: bool,
        diagonal: i64,
    },
}

impl Drop for MaskRecord {
    /// The saved masks came from the pool and go back to it (a plain `Vec` would be
    /// freed, and the next step would allocate one of its size again).
    fn drop(&mut self) {
        match self {
            MaskRecord::MaskedFill { keep: saved, .. } | MaskRecord::Where { cond: saved, .. } => {
                pool::give(std::mem::take(saved))
            }
            _ => {}
        }
    }
}

impl MaskRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            MaskRecord::MaskedFill { input, keep } => {
                let mut dx = pool::take(g.len());
                dx.extend(g.iter().zip(keep).map(|(&g, &k)| g * k));
                grads.add_to(input, dx);
            }
            MaskRecord::Where {
                cond,
                a,
                b,
                out_shape,
            } => {
                for (t, pick) in [(a, true), (b, false)] {
                    if t.requires_grad() {
                        let mut d = pool::take(g.len());
                        d.extend(g.iter().zip(cond).map(
                            |(&g, &c)| {
                                if (c != 0.0) == pick {
                                    g
                                } else {
                                    0.0
                                }
                            },
                        ));
                        grads.add_to(t, sum_to_shape(d, out_shape, t.shape()));
                    }
                }
            }
            MaskRecord::Tri {
                input,
                upper,
                diagonal,
            } => {
                let mut dx = pool::copy_of(g);
                tri_apply(&mut dx, input.shape(), *upper, *diagonal);
                grads.add_to(input, dx);
            }
        }
    }
}

impl Tensor {
    /// `value` where `mask` is non-zero, `self` elsewhere (PyTorch's `masked_fill` with a
    /// bool mask written as 0/1). The mask must broadcast to `self`'s shape; the output
    /// has `self`'s shape. `value` may be `f32::NEG_INFINITY`, as before a softmax.
    pub fn try_masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let fits = broadcast_shapes(mask.shape(), self.shape())
            .is_some_and(|s| s.as_slice() == self.shape());
        if !fits {
            return Err(TensorError::ShapeMismatch {
                op: "masked_fill",
                lhs: self.shape().to_vec(),
                rhs: mask.shape().to_vec(),
                detail: "a tensor of shape {} cannot take a mask of shape {}: \
                         the mask must broadcast to the tensor's shape",
            });
        }
        let mut keep = expanded(&mask.data(), mask.shape(), self.shape());
        for k in keep.iter_mut() {
            *k = if *k != 0.0 { 0.0 } else { 1.0 };
        }
        let mut data = pool::take(keep.len());
        data.extend(
            self.data()
                .iter()
                .zip(&keep)
                .map(|(&x, &k)| if k != 0.0 { x } else { value }),
        );
        let out = Tensor::from_parts(data, self.0.shape.clone());
        let out = tape::record(out, &[self], || {
            Op::Mask(MaskRecord::MaskedFill {
                input: GradTarget::of(self),
                keep: std::mem::take(&mut keep),
            })
        });
        pool::give(keep);
        Ok(out)
    }

    /// `masked_fill`; panics when the mask does not broadcast to `self`'s shape.
    #[track_caller]
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Tensor {
        or_panic(self.try_masked_fill(mask, value))
    }

    /// Elementwise `a` where `cond` is non-zero, `b` elsewhere (PyTorch's
    /// `torch.where(cond, a, b)`), all three broadcast together. Gradients flow to `a` and
    /// `b` (summed back over their broadcast axes), not to `cond`.
    #[doc(alias = "where")]
    pub fn try_where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let ab =
            broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| TensorError::ShapeMismatch {
                op: "where",
                lhs: a.shape().to_vec(),
                rhs: b.shape().to_vec(),
                detail: "the branches {} and {} do not broadcast together",
            })?;
        let out_shape =
            broadcast_shapes(cond.shape(), &ab).ok_or_else(|| TensorError::ShapeMismatch {
                op: "where",
                lhs: cond.shape().to_vec(),
                rhs: ab.to_vec(),
                detail: "the condition {} does not broadcast with the branches' shape {}",
            })?;
        let mut c = expanded(&cond.data(), cond.shape(), &out_shape);
        let data = {
            let xa = expanded(&a.data(), a.shape(), &out_shape);
            let xb = expanded(&b.data(), b.shape(), &out_shape);
            let mut out = pool::take(c.len());
            out.extend(
                c.iter()
                    .zip(xa.iter().zip(&xb))
                    .map(|(&c, (&x, &y))| if c != 0.0 { x } else { y }),
            );
            pool::give(xa);
            pool::give(xb);
            out
        };
        let out = Tensor::from_parts(data, out_shape.clone());
        let out = tape::record(out, &[a, b], || {
            Op::Mask(MaskRecord::Where {
                cond: std::mem::take(&mut c),
                a: GradTarget::of(a),
                b: GradTarget::of(b),
                out_shape,
            })
        });
        pool::give(c);
        Ok(out)
    }

    /// `where`; panics when the shapes do not broadcast.
    #[track_caller]
    #[doc(alias = "where")]
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        or_panic(Tensor::try_where_cond(cond, a, b))
    }

    fn tri(&self, op: &'static str, upper: bool, diagonal: i64) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(TensorError::InvalidArgument {
                op,
                reason: format!(
                    "needs a tensor of rank 2 or more, got shape {:?}",
                    self.shape()
                ),
            });
        }
        let mut data = pool::copy_of(&self.data());
        tri_apply(&mut data, self.shape(), upper, diagonal);
        let out = Tensor::from_parts(data, self.0.shape.clone());
        Ok(tape::record(out, &[self], || {
            Op::Mask(MaskRecord::Tri {
                input: GradTarget::of(self),
                upper,
                diagonal,
            })
        }))
    }

    /// The lower triangle of the last two axes, elements with `col − row ≤ diagonal`
    /// (PyTorch's `tril`); the rest is zero. `Tensor::ones(&[t, t]).tril(0)` is the
    /// causal "may attend" mask.
    pub fn try_tril(&self, diagonal: i64) -> Result<Tensor> {
        self.tri("tril", false, diagonal)
    }

    /// `tril`; panics on a tensor of rank below 2.
    #[track_caller]
    pub fn tril(&self, diagonal: i64) -> Tensor {
        or_panic(self.try_tril(diagonal))
    }

    /// The upper triangle of the last two axes, elements with `col − row ≥ diagonal`
    /// (PyTorch's `triu`); the rest is zero.
    pub fn try_triu(&self, diagonal: i64) -> Result<Tensor> {
        self.tri("triu", true, diagonal)
    }

    /// `triu`; panics on a tensor of rank below 2.
    #[track_caller]
    pub fn triu(&self, diagonal: i64) -> Tensor {
        or_panic(self.try_triu(diagonal))
    }
}
