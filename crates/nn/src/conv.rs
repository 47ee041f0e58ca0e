//! Convolution layers: `Conv1d`, `Conv2d` and `ConvTranspose2d`, with PyTorch's weight
//! layout, state-dict names (`weight`, `bias`) and default initialisation: the weight by
//! Kaiming-uniform with a = √5 and the bias from U(−1/√fan_in, 1/√fan_in), where
//! `fan_in = weight[1] · kh · kw` (`in / groups · kh · kw` for a convolution).

use rand::Rng;
use tapegrad_autograd::{
    or_panic, Conv2dOptions, ConvTranspose2dOptions, Result, Tensor, TensorError,
};

use tapegrad_autograd::random::with_default_rng;

use crate::init::{fans, kaiming_uniform};
use crate::Module;

/// A weight of `shape` and an optional bias of `bias_len`, initialised as `torch.nn`'s
/// `_ConvNd.reset_parameters`.
fn init_params(
    shape: &[usize],
    bias_len: Option<usize>,
    rng: &mut impl Rng,
) -> Result<(Tensor, Option<Tensor>)> {
    let weight = kaiming_uniform(shape, 5f32.sqrt(), rng)?.with_requires_grad(true);
    let bias = match bias_len {
        Some(len) => {
            let bound = 1.0 / (fans(shape)?.0 as f32).sqrt();
            Some(Tensor::uniform(&[len], -bound, bound, rng)?.with_requires_grad(true))
        }
        None => None,
    };
    Ok((weight, bias))
}

fn check_channels(layer: &'static str, in_ch: usize, out_ch: usize, groups: usize) -> Result<()> {
    if groups == 0 || in_ch % groups != 0 || out_ch % groups != 0 || in_ch == 0 || out_ch == 0 {
        return Err(TensorError::InvalidArgument {
            op: layer,
            reason: format!(
                "groups {groups} must be positive and divide both in_channels {in_ch} and \
                 out_channels {out_ch}"
            ),
        });
    }
    Ok(())
}

fn params(weight: &Tensor, bias: &Option<Tensor>) -> Vec<(String, Tensor)> {
    let mut p = vec![("weight".to_string(), weight.clone())];
    if let Some(b) = bias {
        p.push(("bias".to_string(), b.clone()));
    }
    p
}

/// What the three layers share, so each constructor and forward is one call to
/// [`build`] or [`run`]: the layer's name, options, weight shape and op.
trait ConvLayer: Sized {
    const NAME: &'static str;
    type Options: Copy;
    /// `[kh, kw]`, or `k` for `Conv1d`.
    type Kernel: Copy;
    fn groups(options: &Self::Options) -> usize;
    fn weight_shape(in_ch: usize, out_ch: usize, kernel: Self::Kernel, groups: usize)
        -> Vec<usize>;
    fn assemble(weight: Tensor, bias: Option<Tensor>, options: Self::Options) -> Self;
    fn op(&self, x: &Tensor) -> Result<Tensor>;
}

/// Checks the channels, then draws the weight and bias from `rng`.
fn build<L: ConvLayer>(
    in_ch: usize,
    out_ch: usize,
    kernel: L::Kernel,
    options: L::Options,
    bias: bool,
    rng: &mut impl Rng,
) -> Result<L> {
    let groups = L::groups(&options);
    check_channels(L::NAME, in_ch, out_ch, groups)?;
    let shape = L::weight_shape(in_ch, out_ch, kernel, groups);
    let (weight, bias) = init_params(&shape, bias.then_some(out_ch), rng)?;
    Ok(L::assemble(weight, bias, options))
}

/// [`build`] drawing from the default generator (see `tapegrad_autograd::manual_seed`).
fn build_default<L: ConvLayer>(
    in_ch: usize,
    out_ch: usize,
    kernel: L::Kernel,
    options: L::Options,
    bias: bool,
) -> Result<L> {
    with_default_rng(|rng| build(in_ch, out_ch, kernel, options, bias, rng))
}

/// The layer's op, its errors naming the layer: `Conv2d: conv2d: ...`.
fn run<L: ConvLayer>(layer: &L, x: &Tensor) -> Result<Tensor> {
    layer.op(x).map_err(|e| TensorError::InvalidArgument {
        op: L::NAME,
        reason: e.to_string(),
    })
}

/// A 2-D convolution layer over `[N, C, H, W]`: weight `[out, in / groups, kh, kw]`,
/// optional bias `[out]`.
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: Tensor,
    /// `[out_channels]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl ConvLayer for Conv2d {
    const NAME: &'static str = "Conv2d";
    type Options = Conv2dOptions;
    type Kernel = [usize; 2];
    fn groups(options: &Conv2dOptions) -> usize {
        options.groups
    }
    fn weight_shape(in_ch: usize, out_ch: usize, k: [usize; 2], groups: usize) -> Vec<usize> {
        vec![out_ch, in_ch / groups, k[0], k[1]]
    }
    fn assemble(weight: Tensor, bias: Option<Tensor>, options: Conv2dOptions) -> Self {
        Conv2d {
            weight,
            bias,
            options,
        }
    }
    fn op(&self, x: &Tensor) -> Result<Tensor> {
        x.try_conv2d(&self.weight, self.bias.as_ref(), self.options)
    }
}

impl Conv2d {
    /// A square kernel, default options, with a bias, drawn from the default generator
    /// (see `tapegrad_autograd::manual_seed`).
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Result<Conv2d> {
        let options = Conv2dOptions::new();
        build_default(in_channels, out_channels, [kernel; 2], options, true)
    }

    /// Full control (kernel, options, bias), drawn from the default generator.
    pub fn with_options(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        options: Conv2dOptions,
        bias: bool,
    ) -> Result<Conv2d> {
        build_default(in_channels, out_channels, kernel, options, bias)
    }

    /// A square `kernel`, stride 1, no padding, with a bias, drawn from `rng`.
    pub fn new_with_rng(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        rng: &mut impl Rng,
    ) -> Result<Conv2d> {
        let options = Conv2dOptions::new();
        build(in_channels, out_channels, [kernel; 2], options, true, rng)
    }

    /// Full control: kernel `[kh, kw]`, options and whether there is a bias.
    pub fn with_options_and_rng(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        options: Conv2dOptions,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Conv2d> {
        build(in_channels, out_channels, kernel, options, bias, rng)
    }

    /// A layer around existing tensors (e.g. loaded weights); both become trainable.
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        options: Conv2dOptions,
    ) -> Result<Conv2d> {
        let [o, cg, ..] = *weight.shape() else {
            return Err(TensorError::InvalidArgument {
                op: "Conv2d",
                reason: format!("weight must be 4-D, got {:?}", weight.shape()),
            });
        };
        check_channels("Conv2d", cg * options.groups, o, options.groups)?;
        weight.set_requires_grad(true)?;
        if let Some(b) = &bias {
            b.set_requires_grad(true)?;
        }
        Ok(Conv2d {
            weight,
            bias,
            options,
        })
    }

    /// The convolution, or an error naming the layer and the shapes.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        run(self, x)
    }
}

impl Module for Conv2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(run(self, x))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        run(self, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        params(&self.weight, &self.bias)
    }
}

/// A 1-D convolution layer over `[N, C, L]`: weight `[out, in / groups, k]`. Its options
/// are read along the width (`stride[1]`, `padding[1]`, `dilation[1]`).
pub struct Conv1d {
    /// `[out_channels, in_channels / groups, k]`.
    pub weight: Tensor,
    /// `[out_channels]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl ConvLayer for Conv1d {
    const NAME: &'static str = "Conv1d";
    type Options = Conv2dOptions;
    type Kernel = usize;
    fn groups(options: &Conv2dOptions) -> usize {
        options.groups
    }
    fn weight_shape(in_ch: usize, out_ch: usize, k: usize, groups: usize) -> Vec<usize> {
        vec![out_ch, in_ch / groups, k]
    }
    fn assemble(weight: Tensor, bias: Option<Tensor>, options: Conv2dOptions) -> Self {
        Conv1d {
            weight,
            bias,
            options,
        }
    }
    fn op(&self, x: &Tensor) -> Result<Tensor> {
        x.try_conv1d(&self.weight, self.bias.as_ref(), self.options)
    }
}

impl Conv1d {
    /// A kernel of `kernel` taps, default options, with a bias, drawn from the default
    /// generator (see `tapegrad_autograd::manual_seed`).
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Result<Conv1d> {
        let options = Conv2dOptions::new();
        build_default(in_channels, out_channels, kernel, options, true)
    }

    /// Full control (kernel, options, bias), drawn from the default generator.
    pub fn with_options(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        options: Conv2dOptions,
        bias: bool,
    ) -> Result<Conv1d> {
        build_default(in_channels, out_channels, kernel, options, bias)
    }

    /// Kernel `k`, stride 1, no padding, with a bias, drawn from `rng`.
    pub fn new_with_rng(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        rng: &mut impl Rng,
    ) -> Result<Conv1d> {
        let options = Conv2dOptions::new();
        build(in_channels, out_channels, kernel, options, true, rng)
    }

    /// Full control: kernel size, options and whether there is a bias.
    pub fn with_options_and_rng(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        options: Conv2dOptions,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Conv1d> {
        build(in_channels, out_channels, kernel, options, bias, rng)
    }

    /// The convolution, or an error naming the layer and the shapes.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        run(self, x)
    }
}

impl Module for Conv1d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(run(self, x))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        run(self, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        params(&self.weight, &self.bias)
    }
}

/// A transposed 2-D convolution layer: weight `[in, out / groups, kh, kw]`.
pub struct ConvTranspose2d {
    /// `[in_channels, out_channels / groups, kh, kw]`.
    pub weight: Tensor,
    /// `[out_channels]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, output padding, dilation and groups.
    pub options: ConvTranspose2dOptions,
}

impl ConvLayer for ConvTranspose2d {
    const NAME: &'static str = "ConvTranspose2d";
    type Options = ConvTranspose2dOptions;
    type Kernel = [usize; 2];
    fn groups(options: &ConvTranspose2dOptions) -> usize {
        options.groups
    }
    fn weight_shape(in_ch: usize, out_ch: usize, k: [usize; 2], groups: usize) -> Vec<usize> {
        vec![in_ch, out_ch / groups, k[0], k[1]]
    }
    fn assemble(weight: Tensor, bias: Option<Tensor>, options: ConvTranspose2dOptions) -> Self {
        ConvTranspose2d {
            weight,
            bias,
            options,
        }
    }
    fn op(&self, x: &Tensor) -> Result<Tensor> {
        x.try_conv_transpose2d(&self.weight, self.bias.as_ref(), self.options)
    }
}

impl ConvTranspose2d {
    /// A square kernel, default options, with a bias, drawn from the default generator
    /// (see `tapegrad_autograd::manual_seed`).
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Result<ConvTranspose2d> {
        let options = ConvTranspose2dOptions::new();
        build_default(in_channels, out_channels, [kernel; 2], options, true)
    }

    /// Full control (kernel, options, bias), drawn from the default generator.
    pub fn with_options(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        options: ConvTranspose2dOptions,
        bias: bool,
    ) -> Result<ConvTranspose2d> {
        build_default(in_channels, out_channels, kernel, options, bias)
    }

    /// A square `kernel`, stride 1, with a bias, drawn from `rng`.
    pub fn new_with_rng(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        rng: &mut impl Rng,
    ) -> Result<ConvTranspose2d> {
        let options = ConvTranspose2dOptions::new();
        build(in_channels, out_channels, [kernel; 2], options, true, rng)
    }

    /// Full control: kernel `[kh, kw]`, options and whether there is a bias.
    pub fn with_options_and_rng(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        options: ConvTranspose2dOptions,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<ConvTranspose2d> {
        build(in_channels, out_channels, kernel, options, bias, rng)
    }

    /// The transposed convolution, or an error naming the layer and the shapes.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        run(self, x)
    }
}

impl Module for ConvTranspose2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(run(self, x))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        run(self, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        params(&self.weight, &self.bias)
    }
}
