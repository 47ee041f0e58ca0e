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
use crate::pool;
use crate::shape::Shape;
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// Options of [`Tensor::conv2d`], PyTorch's keyword arguments; `[height, width]` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows (PyTorch's `stride`, default 1).
    pub stride: [usize; 2],
    /// Zeros added on each side (default 0); ignored when `same` is set.
    pub padding: [usize; 2],
    /// `padding="same"`: pad so the output has the input's size (stride 1 only); an odd
    /// total goes one more to the bottom/right, as in PyTorch.
    pub same: bool,
    /// Spacing between kernel taps (default 1).
    pub dilation: [usize; 2],
    /// Channel groups (default 1; `groups == in_channels` is a depthwise convolution).
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            same: false,
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// Stride 1, no padding, no dilation, one group.
    pub fn new() -> Self {
        Self::default()
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
    /// `padding="same"`.
    pub fn same(mut self) -> Self {
        self.same = true;
        self
    }
    /// The same dilation along both axes.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }
    /// Channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Options of [`Tensor::conv_transpose2d`]; `[height, width]` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// Stride of the convolution this one transposes (default 1).
    pub stride: [usize; 2],
    /// Padding of the convolution this one transposes: trimmed from the output (default 0).
    pub padding: [usize; 2],
    /// Extra rows/columns added to the bottom/right of the output (default 0); must be
    /// below the stride or the dilation.
    pub output_padding: [usize; 2],
    /// Spacing between kernel taps (default 1).
    pub dilation: [usize; 2],
    /// Channel groups (default 1).
    pub groups: usize,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl ConvTranspose2dOptions {
    /// Stride 1, no padding, one group.
    pub fn new() -> Self {
        Self::default()
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
    /// The same output padding along both axes.
    pub fn output_padding(mut self, p: usize) -> Self {
        self.output_padding = [p, p];
        self
    }
    /// The same dilation along both axes.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }
    /// Channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

fn invalid(op: &'static str, reason: String) -> TensorError {
    TensorError::InvalidArgument { op, reason }
}

/// Checks the parts every convolution shares: ranks, positive stride and dilation, and
/// groups dividing both channel counts. Returns (n, c, h, w) and (a, b, kh, kw).
fn check_common(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Result<([usize; 4], [usize; 4])> {
    let [n, c, h, wd] = *x.shape() else {
        return Err(invalid(
            op,
            format!(
                "expected a 4-D input [N, C, H, W], got shape {:?}",
                x.shape()
            ),
        ));
    };
    let [a, b, kh, kw] = *w.shape() else {
        return Err(invalid(
            op,
            format!("expected a 4-D weight, got shape {:?}", w.shape()),
        ));
    };
    if stride.contains(&0) || dilation.contains(&0) {
        return Err(invalid(
            op,
            format!(
                "stride and dilation must be positive, got stride {stride:?} dilation {dilation:?}"
            ),
        ));
    }
    if groups == 0 || c % groups != 0 {
        return Err(invalid(
            op,
            format!(
                "groups {groups} must divide the input's {c} channels (input {:?})",
                x.shape()
            ),
        ));
    }
    if kh == 0 || kw == 0 {
        return Err(invalid(op, format!("empty kernel {:?}", w.shape())));
    }
    Ok(([n, c, h, wd], [a, b, kh, kw]))
}

fn check_bias(op: &'static str, bias: Option<&Tensor>, channels: usize) -> Result<()> {
    match bias {
        Some(b) if b.shape() != [channels] => Err(invalid(
            op,
            format!(
                "bias must have shape [{channels}] (one per output channel), got {:?}",
                b.shape()
            ),
        )),
        _ => Ok(()),
    }
}

/// Output length of a convolution along one axis, or None when the (dilated) kernel
/// does not fit in the padded input.
fn out_len(len: usize, pad_total: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let padded = len + pad_total;
    (padded >= span).then(|| (padded - span) / s + 1)
}

/// The geometry of `conv2d(x, w, options)` after checking every argument.
fn conv2d_geom(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, o: &Conv2dOptions) -> Result<Geom> {
    const OP: &str = "conv2d";
    let ([n, c, h, wd], [oc, cg, kh, kw]) = check_common(OP, x, w, o.stride, o.dilation, o.groups)?;
    if cg * o.groups != c {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: w.shape().to_vec(),
            detail: "input {} does not match weight {}: the input's channels must equal \
                     weight[1] · groups",
        });
    }
    if oc % o.groups != 0 {
        return Err(invalid(
            OP,
            format!(
                "groups {} must divide the weight's {oc} output channels",
                o.groups
            ),
        ));
    }
    check_bias(OP, bias, oc)?;
    let (pads, totals) = if o.same {
        if o.stride != [1, 1] {
            return Err(invalid(
                OP,
                format!("padding \"same\" needs stride 1, got {:?}", o.stride),
            ));
        }
        let th = o.dilation[0] * (kh - 1);
        let tw = o.dilation[1] * (kw - 1);
        ([th / 2, tw / 2], [th, tw])
    } else {
        (o.padding, [2 * o.padding[0], 2 * o.padding[1]])
    };
    let (Some(oh), Some(ow)) = (
        out_len(h, totals[0], kh, o.stride[0], o.dilation[0]),
        out_len(wd, totals[1], kw, o.stride[1], o.dilation[1]),
    ) else {
        return Err(invalid(
            OP,
            format!(
                "the kernel of weight {:?} (dilation {:?}) is larger than the padded input {:?} \
                 (padding {:?})",
                w.shape(),
                o.dilation,
                x.shape(),
                if o.same {
                    [totals[0] / 2, totals[1] / 2]
                } else {
                    o.padding
                }
            ),
        ));
    };
    Ok(Geom {
        n,
        c,
        h,
        w: wd,
        o: oc,
        oh,
        ow,
        kh,
        kw,
        sh: o.stride[0],
        sw: o.stride[1],
        ph: pads[0],
        pw: pads[1],
        dh: o.dilation[0],
        dw: o.dilation[1],
        groups: o.groups,
    })
}

/// The geometry of the convolution that `conv_transpose2d(x, w, options)` transposes:
/// its "input" is the transposed op's output and its "output" the transposed op's input.
fn conv_transpose2d_geom(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    o: &ConvTranspose2dOptions,
) -> Result<Geom> {
    const OP: &str = "conv_transpose2d";
    let ([n, c, h, wd], [wc, ocg, kh, kw]) =
        check_common(OP, x, w, o.stride, o.dilation, o.groups)?;
    if wc != c {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: w.shape().to_vec(),
            detail: "input {} does not match weight {}: the input's channels must equal weight[0]",
        });
    }
    let oc = ocg * o.groups;
    check_bias(OP, bias, oc)?;
    for axis in 0..2 {
        if o.output_padding[axis] >= o.stride[axis].max(o.dilation[axis]) {
            return Err(invalid(
                OP,
                format!(
                    "output padding {:?} must be smaller than the stride {:?} or the dilation {:?}",
                    o.output_padding, o.stride, o.dilation
                ),
            ));
        }
    }
    let len = |i: usize, k: usize, axis: usize| -> Option<usize> {
        ((i - 1) * o.stride[axis] + o.dilation[axis] * (k - 1) + o.output_padding[axis] + 1)
            .checked_sub(2 * o.padding[axis])
            .filter(|&l| l > 0)
    };
    if h == 0 || wd == 0 {
        return Err(invalid(OP, format!("empty input {:?}", x.shape())));
    }
    let (Some(hout), Some(wout)) = (len(h, kh, 0), len(wd, kw, 1)) else {
        return Err(invalid(
            OP,
            format!(
                "padding {:?} leaves no output for input {:?} and weight {:?}",
                o.padding,
                x.shape(),
                w.shape()
            ),
        ));
    };
    Ok(Geom {
        n,
        c: oc,
        h: hout,
        w: wout,
        o: c,
        oh: h,
        ow: wd,
        kh,
        kw,
        sh: o.stride[0],
        sw: o.stride[1],
        ph: o.padding[0],
        pw: o.padding[1],
        dh: o.dilation[0],
        dw: o.dilation[1],
        groups: o.groups,
    })
}

/// What a convolution saves for backward.
pub(crate) enum ConvRecord {
    Conv2d {
        input: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
        geom: Geom,
        /// The column matrices of the forward pass, for the weight gradient.
        col: Tensor,
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
                let g_cm = to_channel_major(g, d.n, d.o, d.p());
                if grads.wants(input) {
                    grads.add(input, conv_input_grad(&g_cm, &weight.data(), d));
                }
                if grads.wants(weight) {
                    grads.add(weight, conv_weight_grad(&col.data(), &g_cm, d));
                }
                pool::give(g_cm);
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

fn inputs_of<'a>(x: &'a Tensor, w: &'a Tensor, b: Option<&'a Tensor>) -> Vec<&'a Tensor> {
    let mut v = vec![x, w];
    v.extend(b);
    v
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
        let (out, col) = conv_forward(&self.data(), &weight.data(), b.as_deref(), &d);
        let out = Tensor::from_parts(out, Shape::from_slice(&[d.n, d.o, d.oh, d.ow]));
        let mut col = Some(col);
        let out = tape::record(out, &inputs_of(self, weight, bias), || {
            let col = col.take().expect("recorded once");
            let len = col.len();
            Op::Conv(ConvRecord::Conv2d {
                input: self.clone(),
                weight: weight.clone(),
                bias: bias.cloned(),
                geom: d,
                col: Tensor::from_parts(col, Shape::from_slice(&[len])),
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
