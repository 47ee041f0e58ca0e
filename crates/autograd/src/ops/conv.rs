//! Convolutions as differentiable ops: `conv2d`, `conv1d` (a `conv2d` of height 1) and
//! `conv_transpose2d`, in PyTorch's NCHW layout with weights `[out, in / groups, kh, kw]`
//! (`[in, out / groups, kh, kw]` for the transposed one), so weights move between the
//! two libraries unchanged.
//!
//! A convolution and the input gradient of a convolution are each other's transposes,
//! so the three kernels in `conv_kernels` serve both ops: `conv2d`'s forward is
//! `conv_transpose2d`'s input gradient and the other way round. See
//! `docs/convolution.md` for the math.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::conv_kernels::{
    channel_sums, conv_forward, conv_input_grad, conv_weight_grad, im2col, to_channel_major, Geom,
};
use crate::ops::conv_options::{conv2d_geom, conv_transpose2d_geom, invalid};
pub use crate::ops::conv_options::{Conv2dOptions, ConvTranspose2dOptions};
use crate::ops::{conv_samples, conv_winograd};
use crate::pool;
use crate::shape::Shape;
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// What a convolution saves for backward.
pub(crate) enum ConvRecord {
    Conv2d {
        input: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
        geom: Geom,
        /// The column matrices of the forward pass, for the weight gradient (`None`
        /// when the convolution runs by Winograd or sample by sample: backward
        /// rebuilds what it needs from the input).
        col: Option<Tensor>,
    },
    ConvTranspose2d {
        input: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
        geom: Geom,
    },
}

impl ConvRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            ConvRecord::Conv2d {
                input,
                weight,
                bias,
                geom: d,
                col,
            } => {
                let (want_dx, want_dw) = (grads.wants(input), grads.wants(weight));
                if conv_winograd::applies(d) {
                    let (x, w) = (input.data(), weight.data());
                    let (dx, dw) = conv_winograd::backward(&x, &w, g, d, want_dx, want_dw);
                    drop((x, w));
                    if let Some(dx) = dx {
                        grads.add(input, dx);
                    }
                    if let Some(dw) = dw {
                        grads.add(weight, dw);
                    }
                } else if let Some(col) = col {
                    let g_cm = to_channel_major(g, d.n, d.o, d.p());
                    if want_dx {
                        grads.add(input, conv_input_grad(&g_cm, &weight.data(), d));
                    }
                    if want_dw {
                        grads.add(weight, conv_weight_grad(&col.data(), &g_cm, d));
                    }
                    pool::give(g_cm);
                } else {
                    let (x, w) = (input.data(), weight.data());
                    let (dx, dw) = conv_samples::backward(&x, &w, g, d, want_dx, want_dw);
                    drop((x, w));
                    if let Some(dx) = dx {
                        grads.add(input, dx);
                    }
                    if let Some(dw) = dw {
                        grads.add(weight, dw);
                    }
                }
                if let Some(b) = bias.as_ref().filter(|b| grads.wants(b)) {
                    grads.add(b, channel_sums(g, d.n, d.o, d.p()));
                }
            }
            ConvRecord::ConvTranspose2d {
                input,
                weight,
                bias,
                geom: d,
            } => {
                // The output gradient is the "input" of the convolution this op
                // transposes: its columns serve both gradients.
                let mut col = pool::for_overwrite(d.groups * d.kg() * d.np());
                for grp in 0..d.groups {
                    im2col(
                        g,
                        d,
                        grp,
                        &mut col[grp * d.kg() * d.np()..][..d.kg() * d.np()],
                    );
                }
                if grads.wants(input) {
                    let (dx, col2) = conv_forward(g, &weight.data(), None, d);
                    pool::give(col2);
                    grads.add(input, dx);
                }
                if grads.wants(weight) {
                    let x_cm = to_channel_major(&input.data(), d.n, d.o, d.p());
                    grads.add(weight, conv_weight_grad(&col, &x_cm, d));
                    pool::give(x_cm);
                }
                pool::give(col);
                if let Some(b) = bias.as_ref().filter(|b| grads.wants(b)) {
                    grads.add(b, channel_sums(g, d.n, d.c, d.h * d.w));
                }
            }
        }
    }
}

fn inputs_of<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    b: Option<&'a Tensor>,
) -> smallvec::SmallVec<[&'a Tensor; 4]> {
    tape::present([Some(x), Some(w), b])
}

impl Tensor {
    /// 2-D cross-correlation of an input `[N, C, H, W]` with a weight
    /// `[O, C / groups, kh, kw]` and an optional bias `[O]`: PyTorch's `F.conv2d`.
    /// Fails, naming the shapes, on a wrong rank, mismatched channels, a zero stride,
    /// groups that do not divide the channels, or a kernel larger than the padded input.
    pub fn try_conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: Conv2dOptions,
    ) -> Result<Tensor> {
        let d = conv2d_geom(self, weight, bias, &options)?;
        let b = bias.map(|b| b.data());
        let (out, col) = if conv_winograd::applies(&d) {
            let out = conv_winograd::forward(&self.data(), &weight.data(), b.as_deref(), &d);
            (out, None)
        } else if conv_samples::by_sample(&d) {
            let out = conv_samples::forward(&self.data(), &weight.data(), b.as_deref(), &d);
            (out, None)
        } else {
            let (out, col) = conv_forward(&self.data(), &weight.data(), b.as_deref(), &d);
            (out, Some(col))
        };
        drop(b);
        let out = Tensor::from_parts(out, Shape::from_slice(&[d.n, d.o, d.oh, d.ow]));
        let mut col = col;
        let out = tape::record(out, &inputs_of(self, weight, bias), || {
            let col = col.take().map(|col| {
                let len = col.len();
                Tensor::from_parts(col, Shape::from_slice(&[len]))
            });
            Op::Conv(ConvRecord::Conv2d {
                input: self.clone(),
                weight: weight.clone(),
                bias: bias.cloned(),
                geom: d,
                col,
            })
        });
        if let Some(col) = col {
            pool::give(col);
        }
        Ok(out)
    }

    /// [`Tensor::try_conv2d`], panicking with the error's message.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, options: Conv2dOptions) -> Tensor {
        or_panic(self.try_conv2d(weight, bias, options))
    }

    /// 1-D cross-correlation of `[N, C, L]` with `[O, C / groups, k]`: `F.conv1d`, run as
    /// a `conv2d` of height 1. `options` are read along the width only (`stride[1]`,
    /// `padding[1]`, `dilation[1]`; use the builder methods, which set both).
    pub fn try_conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: Conv2dOptions,
    ) -> Result<Tensor> {
        let [n, c, l] = *self.shape() else {
            return Err(invalid(
                "conv1d",
                format!(
                    "expected a 3-D input [N, C, L], got shape {:?}",
                    self.shape()
                ),
            ));
        };
        let [o, cg, k] = *weight.shape() else {
            return Err(invalid(
                "conv1d",
                format!(
                    "expected a 3-D weight [O, C / groups, k], got shape {:?}",
                    weight.shape()
                ),
            ));
        };
        let options = Conv2dOptions {
            stride: [1, options.stride[1]],
            padding: [0, options.padding[1]],
            dilation: [1, options.dilation[1]],
            ..options
        };
        let y = self.try_reshape(&[n, c, 1, l])?.try_conv2d(
            &weight.try_reshape(&[o, cg, 1, k])?,
            bias,
            options,
        );
        let y = y.map_err(|e| match e {
            TensorError::InvalidArgument { reason, .. } => invalid("conv1d", reason),
            TensorError::ShapeMismatch { detail, .. } => TensorError::ShapeMismatch {
                op: "conv1d",
                lhs: self.shape().to_vec(),
                rhs: weight.shape().to_vec(),
                detail,
            },
            other => other,
        })?;
        let [_, _, _, lout] = *y.shape() else {
            unreachable!("conv2d returns 4-D")
        };
        y.try_reshape(&[n, o, lout])
    }

    /// [`Tensor::try_conv1d`], panicking with the error's message.
    #[track_caller]
    pub fn conv1d(&self, weight: &Tensor, bias: Option<&Tensor>, options: Conv2dOptions) -> Tensor {
        or_panic(self.try_conv1d(weight, bias, options))
    }

    /// Transposed 2-D convolution ("deconvolution") of `[N, C, H, W]` with a weight
    /// `[C, O / groups, kh, kw]`: `F.conv_transpose2d`, the gradient of `conv2d` with
    /// respect to its input. The output is
    /// `(H − 1)·stride − 2·padding + dilation·(kh − 1) + output_padding + 1` high.
    pub fn try_conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvTranspose2dOptions,
    ) -> Result<Tensor> {
        let d = conv_transpose2d_geom(self, weight, bias, &options)?;
        let mut out = {
            let x_cm = to_channel_major(&self.data(), d.n, d.o, d.p());
            let out = conv_input_grad(&x_cm, &weight.data(), &d);
            pool::give(x_cm);
            out
        };
        if let Some(b) = bias {
            let b = b.data();
            for (i, plane) in out.chunks_exact_mut(d.h * d.w).enumerate() {
                let v = b[i % d.c];
                plane.iter_mut().for_each(|y| *y += v);
            }
        }
        let out = Tensor::from_parts(out, Shape::from_slice(&[d.n, d.c, d.h, d.w]));
        Ok(tape::record(out, &inputs_of(self, weight, bias), || {
            Op::Conv(ConvRecord::ConvTranspose2d {
                input: self.clone(),
                weight: weight.clone(),
                bias: bias.cloned(),
                geom: d,
            })
        }))
    }

    /// [`Tensor::try_conv_transpose2d`], panicking with the error's message.
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvTranspose2dOptions,
    ) -> Tensor {
        or_panic(self.try_conv_transpose2d(weight, bias, options))
    }
}
