//! Ops that move elements without arithmetic: reshape, squeeze/unsqueeze, transpose,
//! broadcast_to, index_select, gather and concat.
//!
//! Every output is contiguous (a copy), which keeps every other kernel free of stride
//! logic; matrix products read transposes through strides instead (see `linalg`).
//! Backward routes each gradient element back to where it came from, adding where an
//! element was used more than once.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::binary::sum_to_shape;
use crate::ops::reduce::{check_axis, AxisView};
use crate::pool;
use crate::shape::{
    broadcast_shapes, broadcast_strides, checked_numel, contiguous_strides, for_each_offset2,
    gather_strided, numel, try_numel, Shape,
};
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// Copies `x` read through `src_strides` into a contiguous tensor of `out_shape`.
fn strided_copy(x: &[f32], out_shape: &[usize], src_strides: &[usize]) -> Vec<f32> {
    let mut out = pool::take(numel(out_shape));
    gather_strided(x, out_shape, src_strides, &mut out);
    out
}

/// `shape` with axes `a` and `b` swapped, and the input strides that read it.
fn transposed(shape: &[usize], a: usize, b: usize) -> (Shape, Shape) {
    let mut out = Shape::from_slice(shape);
    let mut strides = contiguous_strides(shape);
    out.swap(a, b);
    strides.swap(a, b);
    (out, strides)
}

pub(crate) enum MovementRecord {
    Reshape {
        input: GradTarget,
    },
    Transpose {
        input: GradTarget,
        out_shape: Shape,
        a: usize,
        b: usize,
    },
    BroadcastTo {
        input: GradTarget,
        out_shape: Shape,
    },
    /// Output element `j` was read from input element `sources[j]`.
    Select {
        input: GradTarget,
        sources: pool::Indices,
    },
    Concat {
        inputs: Vec<GradTarget>,
        axis: usize,
    },
}

impl MovementRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            MovementRecord::Reshape { input } => grads.add_to(input, pool::copy_of(g)),
            MovementRecord::Transpose {
                input,
                out_shape,
                a,
                b,
            } => {
                let (_, strides) = transposed(out_shape, *a, *b);
                grads.add_to(input, strided_copy(g, input.shape(), &strides));
            }
            MovementRecord::BroadcastTo { input, out_shape } => {
                grads.add_to(
                    input,
                    sum_to_shape(pool::copy_of(g), out_shape, input.shape()),
                );
            }
            MovementRecord::Select { input, sources } => {
                let mut dx = pool::zeros(input.numel());
                for (&src, &gv) in sources.iter().zip(g) {
                    dx[src] += gv;
                }
                grads.add_to(input, dx);
            }
            MovementRecord::Concat { inputs, axis } => {
                let outer = numel(&inputs[0].shape()[..*axis]);
                let total: usize = inputs.iter().map(|t| t.numel() / outer.max(1)).sum();
                let mut offset = 0;
                for t in inputs {
                    let width = t.numel() / outer.max(1);
                    if t.requires_grad() {
                        let mut dx = pool::take(t.numel());
                        for o in 0..outer {
                            let start = o * total + offset;
                            dx.extend_from_slice(&g[start..start + width]);
                        }
                        grads.add_to(t, dx);
                    }
                    offset += width;
                }
            }
        }
    }
}

impl MovementRecord {
    /// The op's name for anomaly reports.
    pub(crate) fn name(&self) -> String {
        // Variants added later fall to the family's name.
        #[allow(unreachable_patterns)]
        match self {
            MovementRecord::Reshape { .. } => "reshape".into(),
            MovementRecord::Transpose { .. } => "transpose".into(),
            MovementRecord::BroadcastTo { .. } => "broadcast_to".into(),
            MovementRecord::Select { .. } => "index_select/gather".into(),
            MovementRecord::Concat { .. } => "concat".into(),
            _ => "movement op".into(),
        }
    }
}

impl Tensor {
    fn record_movement(
        &self,
        data: Vec<f32>,
        shape: Shape,
        make: impl FnOnce() -> MovementRecord,
    ) -> Tensor {
        let out = Tensor::from_parts(data, shape);
        tape::record(out, &[self], || Op::Movement(make()))
    }

    /// The same elements under another shape with the same element count. A shape whose
    /// element count overflows is an error, not a count that wraps to this one's.
    pub fn try_reshape(&self, shape: &[usize]) -> Result<Tensor> {
        try_numel("reshape", shape)?;
        if checked_numel(shape) != Some(self.numel()) {
            return Err(TensorError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
                detail: "cannot reshape {} to {}: element counts differ",
            });
        }
        let data = pool::copy_of(&self.data());
        Ok(
            self.record_movement(data, Shape::from_slice(shape), || MovementRecord::Reshape {
                input: GradTarget::of(self),
            }),
        )
    }

    /// Reshape; panics when the element counts differ.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        or_panic(self.try_reshape(shape))
    }

    /// Inserts an axis of length 1 at position `axis` (0 ..= rank).
    pub fn try_unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.rank() {
            return Err(TensorError::AxisOutOfRange {
                op: "unsqueeze",
                axis,
                rank: self.rank(),
            });
        }
        let mut shape = self.0.shape.clone();
        shape.insert(axis, 1);
        self.try_reshape(&shape)
    }

    /// Inserts an axis of length 1; panics when `axis > rank`.
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Tensor {
        or_panic(self.try_unsqueeze(axis))
    }

    /// Removes `axis` if its length is 1 (otherwise returns the same shape, as PyTorch).
    pub fn try_squeeze(&self, axis: usize) -> Result<Tensor> {
        check_axis("squeeze", self.shape(), axis)?;
        let mut shape = self.0.shape.clone();
        if shape[axis] == 1 {
            shape.remove(axis);
        }
        self.try_reshape(&shape)
    }

    /// Removes a length-1 axis; panics when the axis is out of range.
    #[track_caller]
    pub fn squeeze(&self, axis: usize) -> Tensor {
        or_panic(self.try_squeeze(axis))
    }

    /// Swaps two axes (a copy: outputs are always contiguous).
    pub fn try_transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        check_axis("transpose", self.shape(), a)?;
        check_axis("transpose", self.shape(), b)?;
        let (out_shape, strides) = transposed(self.shape(), a, b);
        let data = strided_copy(&self.data(), &out_shape, &strides);
        let saved = out_shape.clone();
        Ok(
            self.record_movement(data, out_shape, || MovementRecord::Transpose {
                input: GradTarget::of(self),
                out_shape: saved,
                a,
                b,
            }),
        )
    }

    /// Swaps two axes; panics when one is out of range.
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Tensor {
        or_panic(self.try_transpose(a, b))
    }

    /// The transpose of a 2-D tensor.
    #[track_caller]
    pub fn t(&self) -> Tensor {
        if self.rank() != 2 {
            or_panic::<()>(Err(TensorError::InvalidArgument {
                op: "t",
                reason: format!("needs a 2-D tensor, got shape {:?}", self.shape()),
            }));
        }
        self.transpose(0, 1)
    }

    /// Repeats the tensor along axes of length 1 (and new leading axes) to `shape`.
    pub fn try_broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let n = try_numel("broadcast_to", shape)?;
        let fits = broadcast_shapes(self.shape(), shape).is_some_and(|s| s.as_slice() == shape);
        if !fits {
            return Err(TensorError::ShapeMismatch {
                op: "broadcast_to",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
                detail: "cannot broadcast {} to {}",
            });
        }
        let strides = broadcast_strides(self.shape(), shape);
        // The output may be far larger than the input: allocate it fallibly.
        let mut data = pool::try_take("broadcast_to", n)?;
        let zeros: Shape = smallvec::smallvec![0; shape.len()];
        {
            let x = self.data();
            for_each_offset2(shape, &strides, &zeros, |i, _| data.push(x[i]));
        }
        Ok(self.record_movement(data, Shape::from_slice(shape), || {
            MovementRecord::BroadcastTo {
                input: GradTarget::of(self),
                out_shape: Shape::from_slice(shape),
            }
        }))
    }

    /// Broadcast to `shape`; panics when the shapes are incompatible.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        or_panic(self.try_broadcast_to(shape))
    }

    /// The slices at `indices` along `axis`, in that order (PyTorch's `index_select`);
    /// with `axis = 0` this picks rows, e.g. a mini-batch.
    pub fn try_index_select(&self, axis: usize, indices: &[usize]) -> Result<Tensor> {
        check_axis("index_select", self.shape(), axis)?;
        let v = AxisView::new(self.shape(), axis);
        if let Some(&bad) = indices.iter().find(|&&i| i >= v.len()) {
            return Err(TensorError::IndexOutOfRange {
                op: "index_select",
                index: bad,
                len: v.len(),
            });
        }
        let mut shape = self.0.shape.clone();
        shape[axis] = indices.len();
        // Many indices into a long axis of an empty tensor can make a shape that wraps.
        let n = try_numel("index_select", &shape)?;
        let mut sources = pool::Indices::try_take("index_select", n)?;
        for o in 0..v.outer() {
            for &i in indices {
                let start = (o * v.len() + i) * v.inner();
                sources.extend(start..start + v.inner());
            }
        }
        self.select("index_select", sources, shape)
    }

    /// index_select; panics on a bad axis or index.
    #[track_caller]
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Tensor {
        or_panic(self.try_index_select(axis, indices))
    }

    /// PyTorch's `gather`: `out[.., j, ..] = self[.., indices[.., j, ..], ..]` along
    /// `axis`, where `indices` holds `k` entries per line in the output's row-major
    /// order (output shape: `self`'s with `axis` set to `k`). With `k = 1` on axis 1 of
    /// `[N, C]` logits this picks one class score per row.
    pub fn try_gather(&self, axis: usize, indices: &[usize], k: usize) -> Result<Tensor> {
        check_axis("gather", self.shape(), axis)?;
        let v = AxisView::new(self.shape(), axis);
        let mut shape = self.0.shape.clone();
        shape[axis] = k;
        let expected = try_numel("gather", &shape)?;
        if indices.len() != expected {
            return Err(TensorError::LengthMismatch {
                op: "gather",
                expected,
                got: indices.len(),
            });
        }
        let mut sources = pool::Indices::try_take("gather", indices.len())?;
        for (n, &i) in indices.iter().enumerate() {
            if i >= v.len() {
                return Err(TensorError::IndexOutOfRange {
                    op: "gather",
                    index: i,
                    len: v.len(),
                });
            }
            let (o, rest) = (n / (k * v.inner()), n % v.inner());
            sources.push((o * v.len() + i) * v.inner() + rest);
        }
        self.select("gather", sources, shape)
    }

    /// gather; panics on a bad axis, index or index count.
    #[track_caller]
    pub fn gather(&self, axis: usize, indices: &[usize], k: usize) -> Tensor {
        or_panic(self.try_gather(axis, indices, k))
    }

    fn select(&self, op: &'static str, sources: pool::Indices, shape: Shape) -> Result<Tensor> {
        let data = {
            let x = self.data();
            let mut out = pool::try_take(op, sources.len())?;
            out.extend(sources.iter().map(|&s| x[s]));
            out
        };
        Ok(
            self.record_movement(data, shape, || MovementRecord::Select {
                input: GradTarget::of(self),
                sources,
            }),
        )
    }

    /// Joins tensors along `axis`; all other axes must match.
    pub fn try_concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(TensorError::InvalidArgument {
                op: "concat",
                reason: "needs at least one tensor".into(),
            });
        };
        check_axis("concat", first.shape(), axis)?;
        for t in &tensors[1..] {
            let same_rank = t.rank() == first.rank();
            let others_match = same_rank
                && (0..first.rank()).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
            if !others_match {
                return Err(TensorError::ShapeMismatch {
                    op: "concat",
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                    detail: "cannot join {} and {}: all axes but the concat axis must match",
                });
            }
        }
        let outer = numel(&first.shape()[..axis]);
        let mut shape = first.0.shape.clone();
        let too_large = |shape: Vec<usize>| TensorError::ShapeTooLarge {
            op: "concat",
            shape,
        };
        shape[axis] = tensors
            .iter()
            .try_fold(0usize, |sum, t| sum.checked_add(t.shape()[axis]))
            .ok_or_else(|| too_large(first.shape().to_vec()))?;
        let n = try_numel("concat", &shape)?;
        let mut data = pool::try_take("concat", n)?;
        let parts: Vec<_> = tensors.iter().map(|t| t.data()).collect();
        for o in 0..outer {
            for (t, part) in tensors.iter().zip(&parts) {
                let width = t.numel() / outer.max(1);
                data.extend_from_slice(&part[o * width..(o + 1) * width]);
            }
        }
        drop(parts);
        let out = Tensor::from_parts(data, shape);
        Ok(tape::record(out, tensors, || {
            Op::Movement(MovementRecord::Concat {
                inputs: tensors.iter().map(|&t| GradTarget::of(t)).collect(),
                axis,
            })
        }))
    }

    /// Joins tensors along `axis`; panics when their shapes do not fit.
    #[track_caller]
    pub fn concat(tensors: &[&Tensor], axis: usize) -> Tensor {
        or_panic(Tensor::try_concat(tensors, axis))
    }
}
