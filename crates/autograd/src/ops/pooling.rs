//! 2-D pooling as differentiable ops, over the last two axes of NCHW tensors:
//! `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`, and `flatten`, which usually
//! follows them.
//!
//! This file checks the options and records the ops; the loops, one plane at a time,
//! are in `pooling_kernels`, and the planes run on the threads (`planes`).

use crate::error::{or_panic, Result, TensorError};
use crate::ops::conv_options::check_positive;
use crate::ops::pooling_kernels::{Axis, Kind, PoolGeom};
use crate::parallel::{for_each_piece, for_each_piece2};
use crate::pool;
use crate::shape::Shape;
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// Options of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`]; `[height, width]` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows (PyTorch's default: the kernel size).
    pub stride: [usize; 2],
    /// Implicit padding on each side, at most half the kernel (−∞ for max, zeros for
    /// average pooling).
    pub padding: [usize; 2],
    /// Round the output size up instead of down (a last, partial window).
    pub ceil_mode: bool,
    /// Average pooling only: divide by the whole window, padding included (PyTorch's
    /// default, true), or by the input elements it covers.
    pub count_include_pad: bool,
}

impl Pool2dOptions {
    /// A square `kernel` with stride `kernel`, no padding.
    pub fn new(kernel: usize) -> Self {
        Pool2dOptions {
            kernel: [kernel, kernel],
            stride: [kernel, kernel],
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
    /// The same stride along both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }
    /// The same padding along both axes.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }
    /// Rounds the output size up.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }
    /// Whether average pooling counts the padding in its divisor.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
}

/// Output size along one axis, as PyTorch's `pooling_output_shape`.
fn pooled_len(len: usize, k: usize, s: usize, p: usize, ceil: bool) -> Option<usize> {
    let span = (len + 2 * p).checked_sub(k)?;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    if ceil && (out - 1) * s >= len + p {
        out -= 1;
    }
    Some(out)
}

fn pool_geom(op: &'static str, x: &Tensor, o: &Pool2dOptions, kind: Kind) -> Result<PoolGeom> {
    let bad = |reason: String| TensorError::InvalidArgument { op, reason };
    let rank = x.rank();
    if !(rank == 3 || rank == 4) {
        return Err(bad(format!(
            "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape {:?}",
            x.shape()
        )));
    }
    check_positive(op, [("kernel", o.kernel), ("stride", o.stride)])?;
    if o.padding[0] > o.kernel[0] / 2 || o.padding[1] > o.kernel[1] / 2 {
        return Err(bad(format!(
            "padding {:?} must be at most half the kernel {:?}",
            o.padding, o.kernel
        )));
    }
    let (h, w) = (x.shape()[rank - 2], x.shape()[rank - 1]);
    let oh = pooled_len(h, o.kernel[0], o.stride[0], o.padding[0], o.ceil_mode);
    let ow = pooled_len(w, o.kernel[1], o.stride[1], o.padding[1], o.ceil_mode);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return Err(bad(format!(
            "kernel {:?} is larger than the padded input {:?} (padding {:?})",
            o.kernel,
            x.shape(),
            o.padding
        )));
    };
    let axis = |len, out, i: usize| Axis {
        len,
        out,
        k: o.kernel[i],
        s: o.stride[i],
        p: o.padding[i],
        adaptive: false,
    };
    Ok(PoolGeom {
        planes: x.shape()[..rank - 2].iter().product(),
        rows: axis(h, oh, 0),
        cols: axis(w, ow, 1),
        kind,
    })
}

/// What a pooling saves for backward: where its input's gradient goes (not the input's
/// data, which backward never reads) and, for max pooling, the in-plane index of each window's maximum, a `u32` stored in the bits
/// of an `f32` so the buffer comes from the pool like every other.
pub(crate) struct PoolRecord {
    input: GradTarget,
    geom: PoolGeom,
    argmax: Option<Tensor>,
}

impl PoolRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        let d = &self.geom;
        let mut dx = pool::for_overwrite(self.input.numel());
        let (ip, op) = (d.in_plane(), d.out_plane());
        let work = d.planes * (ip + 2 * op);
        match &self.argmax {
            Some(argmax) => {
                let argmax = argmax.data();
                let at: &[f32] = &argmax;
                for_each_piece(&mut dx, ip, work, |i, dx| {
                    d.scatter_max_plane(&at[i * op..][..op], &g[i * op..][..op], dx)
                });
            }
            None => for_each_piece(&mut dx, ip, work, |i, dx| {
                d.avg_backward_plane(&g[i * op..][..op], dx)
            }),
        }
        grads.add_to(&self.input, dx);
    }
}

impl Tensor {
    fn pool2d(&self, geom: PoolGeom) -> Tensor {
        let x = self.data();
        let (xs, ip, op): (&[f32], _, _) = (&x, geom.in_plane(), geom.out_plane());
        let mut out = pool::for_overwrite(geom.planes * op);
        let work = geom.planes * (ip + 2 * op);
        // Max pooling saves each window's arg-max (when recording), so backward need
        // not read the input again.
        let mut argmax = (geom.kind == Kind::Max && tape::should_record(&[self]))
            .then(|| pool::for_overwrite(geom.planes * op));
        match argmax.as_mut() {
            Some(at) => for_each_piece2((&mut out, op), (at, op), work, |i, out, at| {
                geom.max_plane(&xs[i * ip..][..ip], out, Some(at))
            }),
            None => for_each_piece(&mut out, op, work, |i, out| {
                geom.forward_plane(&xs[i * ip..][..ip], out)
            }),
        }
        drop(x);
        let rank = self.rank();
        let mut shape = self.0.shape.clone();
        shape[rank - 2] = geom.rows.out;
        shape[rank - 1] = geom.cols.out;
        let out = Tensor::from_parts(out, shape);
        let out = tape::record(out, &[self], || {
            Op::Pool(PoolRecord {
                input: GradTarget::of(self),
                geom,
                argmax: argmax.take().map(|at| {
                    let len = at.len();
                    Tensor::from_parts(at, Shape::from_slice(&[len]))
                }),
            })
        });
        if let Some(at) = argmax {
            pool::give(at);
        }
        out
    }

    /// Max pooling over the last two axes of `[N, C, H, W]` (or `[C, H, W]`):
    /// PyTorch's `F.max_pool2d`. The gradient goes to each window's first maximum.
    pub fn try_max_pool2d(&self, options: Pool2dOptions) -> Result<Tensor> {
        Ok(self.pool2d(pool_geom("max_pool2d", self, &options, Kind::Max)?))
    }

    /// [`Tensor::try_max_pool2d`], panicking with the error's message.
    #[track_caller]
    pub fn max_pool2d(&self, options: Pool2dOptions) -> Tensor {
        or_panic(self.try_max_pool2d(options))
    }

    /// Average pooling over the last two axes: PyTorch's `F.avg_pool2d`.
    pub fn try_avg_pool2d(&self, options: Pool2dOptions) -> Result<Tensor> {
        let kind = Kind::Avg {
            count_include_pad: options.count_include_pad,
        };
        Ok(self.pool2d(pool_geom("avg_pool2d", self, &options, kind)?))
    }

    /// [`Tensor::try_avg_pool2d`], panicking with the error's message.
    #[track_caller]
    pub fn avg_pool2d(&self, options: Pool2dOptions) -> Tensor {
        or_panic(self.try_avg_pool2d(options))
    }

    /// Average pooling to a fixed `[out_h, out_w]`, whatever the input size: window `i`
    /// covers rows `⌊i·H / out_h⌋ .. ⌈(i + 1)·H / out_h⌉`, as `F.adaptive_avg_pool2d`.
    pub fn try_adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Result<Tensor> {
        let rank = self.rank();
        let bad = |reason: String| TensorError::InvalidArgument {
            op: "adaptive_avg_pool2d",
            reason,
        };
        if !(rank == 3 || rank == 4) {
            return Err(bad(format!(
                "expected a 3-D or 4-D input, got shape {:?}",
                self.shape()
            )));
        }
        let (h, w) = (self.shape()[rank - 2], self.shape()[rank - 1]);
        if output_size.contains(&0) || h == 0 || w == 0 {
            return Err(bad(format!(
                "needs a non-empty input and output, got input {:?} and output size {output_size:?}",
                self.shape()
            )));
        }
        let axis = |len, out| Axis {
            len,
            out,
            k: 0,
            s: 0,
            p: 0,
            adaptive: true,
        };
        Ok(self.pool2d(PoolGeom {
            planes: self.shape()[..rank - 2].iter().product(),
            rows: axis(h, output_size[0]),
            cols: axis(w, output_size[1]),
            kind: Kind::Avg {
                count_include_pad: false,
            },
        }))
    }

    /// [`Tensor::try_adaptive_avg_pool2d`], panicking with the error's message.
    #[track_caller]
    pub fn adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Tensor {
        or_panic(self.try_adaptive_avg_pool2d(output_size))
    }

    /// Merges axes `start_dim..=end_dim` into one: `torch.flatten` (a reshape). A 0-D
    /// tensor flattens to `[1]`.
    pub fn try_flatten(&self, start_dim: usize, end_dim: usize) -> Result<Tensor> {
        let rank = self.rank();
        if rank == 0 {
            return self.try_reshape(&[1]);
        }
        if start_dim > end_dim || end_dim >= rank {
            return Err(TensorError::InvalidArgument {
                op: "flatten",
                reason: format!(
                    "needs start_dim <= end_dim < rank, got {start_dim} and {end_dim} for shape {:?}",
                    self.shape()
                ),
            });
        }
        let s = self.shape();
        let mut shape = Shape::from_slice(&s[..start_dim]);
        shape.push(s[start_dim..=end_dim].iter().product());
        shape.extend_from_slice(&s[end_dim + 1..]);
        self.try_reshape(&shape)
    }

    /// [`Tensor::try_flatten`], panicking with the error's message.
    #[track_caller]
    pub fn flatten(&self, start_dim: usize, end_dim: usize) -> Tensor {
        or_panic(self.try_flatten(start_dim, end_dim))
    }
}
