//! The options of the convolutions and the checks that turn them, with the input and
//! weight shapes, into a `Geom`: every bad argument becomes an error naming the op and
//! the shapes. `check_positive` and `invalid` serve the pooling ops too.

use crate::error::{Result, TensorError};
use crate::ops::conv_kernels::Geom;
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

/// An invalid-argument error of `op`.
pub(crate) fn invalid(op: &'static str, reason: String) -> TensorError {
    TensorError::InvalidArgument { op, reason }
}

/// Fails, naming both, unless every value of the two `[height, width]` options is
/// positive (a stride, a kernel, a dilation).
pub(crate) fn check_positive(op: &'static str, pairs: [(&str, [usize; 2]); 2]) -> Result<()> {
    let [(a, va), (b, vb)] = pairs;
    if va.contains(&0) || vb.contains(&0) {
        return Err(invalid(
            op,
            format!("{a} and {b} must be positive, got {a} {va:?} {b} {vb:?}"),
        ));
    }
    Ok(())
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
    check_positive(op, [("stride", stride), ("dilation", dilation)])?;
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
pub(crate) fn conv2d_geom(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    o: &Conv2dOptions,
) -> Result<Geom> {
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
pub(crate) fn conv_transpose2d_geom(
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
