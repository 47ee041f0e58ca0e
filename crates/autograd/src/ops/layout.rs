//! Layout ops for attention and sequence models: `permute` over any rank, `narrow`
//! (a slice along one axis), `expand`, `stack`, `chunk` and `split`.
//!
//! Like the rest of `movement`, every output is a contiguous copy, so the kernels after
//! them never see strides. Backward puts each gradient element back where its value
//! came from: the inverse permutation for `permute`, a zero-padded copy for `narrow`.
//! `stack`, `chunk` and `split` are compositions of recorded ops (unsqueeze + concat,
//! several narrows), so they need no record of their own.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::reduce::{check_axis, AxisView};
use crate::pool;
use crate::shape::{contiguous_strides, gather_strided, numel, Shape};
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// Copies `x` read through `src_strides` into a contiguous buffer of `out_shape`.
fn strided_copy(x: &[f32], out_shape: &[usize], src_strides: &[usize]) -> Vec<f32> {
    let mut out = pool::take(numel(out_shape));
    gather_strided(x, out_shape, src_strides, &mut out);
    out
}

/// `x` (of shape `shape`) with its axes reordered: output axis `i` is input axis `perm[i]`.
fn permute_data(x: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<f32>, Shape) {
    let own = contiguous_strides(shape);
    let out_shape: Shape = perm.iter().map(|&p| shape[p]).collect();
    let strides: Shape = perm.iter().map(|&p| own[p]).collect();
    (strided_copy(x, &out_shape, &strides), out_shape)
}

pub(crate) enum LayoutRecord {
    /// Output axis `i` is input axis `perm[i]`.
    Permute { input: GradTarget, perm: Shape },
    /// The output is `input[.., start .. start + len, ..]` along `axis`.
    Narrow {
        input: GradTarget,
        axis: usize,
        start: usize,
        len: usize,
    },
}

impl LayoutRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            LayoutRecord::Permute { input, perm } => {
                let mut inverse: Shape = smallvec::smallvec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                let out_shape: Shape = perm.iter().map(|&p| input.shape()[p]).collect();
                let (dx, _) = permute_data(g, &out_shape, &inverse);
                grads.add_to(input, dx);
            }
            LayoutRecord::Narrow {
                input,
                axis,
                start,
                len,
            } => {
                let v = AxisView::new(input.shape(), *axis);
                let mut dx = pool::zeros(input.numel());
                let (src_w, dst_w) = (len * v.inner(), v.len() * v.inner());
                if src_w > 0 {
                    for (o, row) in g.chunks_exact(src_w).enumerate() {
                        let at = o * dst_w + start * v.inner();
                        dx[at..at + src_w].copy_from_slice(row);
                    }
                }
                grads.add_to(input, dx);
            }
        }
    }
}

impl Tensor {
    /// Reorders the axes: output axis `i` is input axis `perm[i]` (PyTorch's `permute`),
    /// e.g. `[B, T, H, D] → [B, H, T, D]` with `perm = [0, 2, 1, 3]`. Fails unless `perm`
    /// is a permutation of `0..rank`.
    pub fn try_permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut seen: smallvec::SmallVec<[bool; 8]> = smallvec::smallvec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm
                .iter()
                .all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(TensorError::InvalidArgument {
                op: "permute",
                reason: format!(
                    "{perm:?} is not a permutation of the axes of a tensor of shape {:?}",
                    self.shape()
                ),
            });
        }
        let (data, shape) = permute_data(&self.data(), self.shape(), perm);
        let out = Tensor::from_parts(data, shape);
        Ok(tape::record(out, &[self], || {
            Op::Layout(LayoutRecord::Permute {
                input: GradTarget::of(self),
                perm: Shape::from_slice(perm),
            })
        }))
    }

    /// Reorders the axes; panics unless `perm` is a permutation of `0..rank`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        or_panic(self.try_permute(perm))
    }

    /// The slice `start .. start + len` along `axis` (PyTorch's `narrow`), copied.
    pub fn try_narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        check_axis("narrow", self.shape(), axis)?;
        let extent = self.shape()[axis];
        if start.checked_add(len).is_none_or(|end| end > extent) {
            return Err(TensorError::InvalidArgument {
                op: "narrow",
                reason: format!(
                    "start {start} + length {len} exceeds axis {axis} of length {extent} \
                     (shape {:?})",
                    self.shape()
                ),
            });
        }
        let v = AxisView::new(self.shape(), axis);
        let mut shape = self.0.shape.clone();
        shape[axis] = len;
        let data = {
            let x = self.data();
            let mut out = pool::take(numel(&shape));
            let (src_w, dst_w) = (v.len() * v.inner(), len * v.inner());
            for o in 0..v.outer() {
                let at = o * src_w + start * v.inner();
                out.extend_from_slice(&x[at..at + dst_w]);
            }
            out
        };
        let out = Tensor::from_parts(data, shape);
        Ok(tape::record(out, &[self], || {
            Op::Layout(LayoutRecord::Narrow {
                input: GradTarget::of(self),
                axis,
                start,
                len,
            })
        }))
    }

    /// A slice along `axis`; panics when it runs past the axis.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Tensor {
        or_panic(self.try_narrow(axis, start, len))
    }

    /// Repeats axes of length 1 (and adds leading axes) to reach `shape`, PyTorch's
    /// `expand` (as a copy, since outputs are contiguous here; the gradient is summed
    /// back over the repeats). The same op as [`Tensor::try_broadcast_to`].
    pub fn try_expand(&self, shape: &[usize]) -> Result<Tensor> {
        self.try_broadcast_to(shape).map_err(|e| match e {
            TensorError::ShapeMismatch { lhs, rhs, .. } => TensorError::ShapeMismatch {
                op: "expand",
                lhs,
                rhs,
                detail: "cannot expand {} to {}: only axes of length 1 can grow",
            },
            other => other,
        })
    }

    /// `expand`; panics when the shapes are incompatible.
    #[track_caller]
    pub fn expand(&self, shape: &[usize]) -> Tensor {
        or_panic(self.try_expand(shape))
    }

    /// Joins same-shaped tensors along a new axis `axis` (0 ..= rank), PyTorch's `stack`.
    pub fn try_stack(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(TensorError::InvalidArgument {
                op: "stack",
                reason: "needs at least one tensor".into(),
            });
        };
        if axis > first.rank() {
            return Err(TensorError::AxisOutOfRange {
                op: "stack",
                axis,
                rank: first.rank() + 1,
            });
        }
        if let Some(t) = tensors.iter().find(|t| t.shape() != first.shape()) {
            return Err(TensorError::ShapeMismatch {
                op: "stack",
                lhs: first.shape().to_vec(),
                rhs: t.shape().to_vec(),
                detail: "cannot stack {} with {}: all shapes must be equal",
            });
        }
        let parts = tensors
            .iter()
            .map(|t| t.try_unsqueeze(axis))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::try_concat(&refs, axis)
    }

    /// `stack`; panics when the shapes differ or the axis is out of range.
    #[track_caller]
    pub fn stack(tensors: &[&Tensor], axis: usize) -> Tensor {
        or_panic(Tensor::try_stack(tensors, axis))
    }

    /// Splits along `axis` into pieces of the given lengths, which must add up to the
    /// axis length (PyTorch's `split` with a list of sizes).
    pub fn try_split(&self, sizes: &[usize], axis: usize) -> Result<Vec<Tensor>> {
        check_axis("split", self.shape(), axis)?;
        let total: usize = sizes.iter().sum();
        if total != self.shape()[axis] {
            return Err(TensorError::InvalidArgument {
                op: "split",
                reason: format!(
                    "sizes {sizes:?} add up to {total}, but axis {axis} of shape {:?} has {}",
                    self.shape(),
                    self.shape()[axis]
                ),
            });
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let piece = self.try_narrow(axis, start, len);
                start += len;
                piece
            })
            .collect()
    }

    /// `split` by sizes; panics when they do not add up to the axis length.
    #[track_caller]
    pub fn split(&self, sizes: &[usize], axis: usize) -> Vec<Tensor> {
        or_panic(self.try_split(sizes, axis))
    }

    /// Splits along `axis` into `chunks` pieces of `ceil(len / chunks)` (the last may be
    /// shorter, and there may be fewer pieces), as PyTorch's `chunk`.
    pub fn try_chunk(&self, chunks: usize, axis: usize) -> Result<Vec<Tensor>> {
        check_axis("chunk", self.shape(), axis)?;
        if chunks == 0 {
            return Err(TensorError::InvalidArgument {
                op: "chunk",
                reason: format!("needs at least one chunk (shape {:?})", self.shape()),
            });
        }
        let len = self.shape()[axis];
        let size = len.div_ceil(chunks);
        if size == 0 {
            // PyTorch returns the one empty tensor for an empty axis.
            return Ok(vec![self.try_narrow(axis, 0, 0)?]);
        }
        let sizes: Vec<usize> = (0..len.div_ceil(size))
            .map(|i| size.min(len - i * size))
            .collect();
        self.try_split(&sizes, axis)
    }

    /// `chunk`; panics on a bad axis or zero chunks.
    #[track_caller]
    pub fn chunk(&self, chunks: usize, axis: usize) -> Vec<Tensor> {
        or_panic(self.try_chunk(chunks, axis))
    }
}
