//! Pooling and flattening layers: `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d` and
//! `Flatten`, thin wrappers over the ops of the same names (no parameters).

use tapegrad_autograd::{or_panic, Pool2dOptions, Result, Tensor};

use crate::Module;

/// Max pooling over the last two axes (`torch.nn.MaxPool2d`).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Kernel, stride, padding, ceil mode.
    pub options: Pool2dOptions,
}

impl MaxPool2d {
    /// A square `kernel` with stride `kernel`.
    pub fn new(kernel: usize) -> MaxPool2d {
        MaxPool2d {
            options: Pool2dOptions::new(kernel),
        }
    }
    /// Any options.
    pub fn with_options(options: Pool2dOptions) -> MaxPool2d {
        MaxPool2d { options }
    }
}

impl Module for MaxPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(x.try_max_pool2d(self.options))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_max_pool2d(self.options)
    }
}

/// Average pooling over the last two axes (`torch.nn.AvgPool2d`).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    /// Kernel, stride, padding, ceil mode, count_include_pad.
    pub options: Pool2dOptions,
}

impl AvgPool2d {
    /// A square `kernel` with stride `kernel`.
    pub fn new(kernel: usize) -> AvgPool2d {
        AvgPool2d {
            options: Pool2dOptions::new(kernel),
        }
    }
    /// Any options.
    pub fn with_options(options: Pool2dOptions) -> AvgPool2d {
        AvgPool2d { options }
    }
}

impl Module for AvgPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(x.try_avg_pool2d(self.options))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_avg_pool2d(self.options)
    }
}

/// Average pooling to a fixed output size (`torch.nn.AdaptiveAvgPool2d`).
#[derive(Clone, Copy, Debug)]
pub struct AdaptiveAvgPool2d {
    /// `[out_h, out_w]`.
    pub output_size: [usize; 2],
}

impl AdaptiveAvgPool2d {
    /// Pools to `[out_h, out_w]`.
    pub fn new(output_size: [usize; 2]) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d { output_size }
    }
}

impl Module for AdaptiveAvgPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(x.try_adaptive_avg_pool2d(self.output_size))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_adaptive_avg_pool2d(self.output_size)
    }
}

/// Merges axes `start_dim..=end_dim` (`torch.nn.Flatten`; by default every axis after
/// the batch axis).
#[derive(Clone, Copy, Debug)]
pub struct Flatten {
    /// First axis merged (default 1).
    pub start_dim: usize,
    /// Last axis merged; `None` is the last axis (PyTorch's −1).
    pub end_dim: Option<usize>,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten {
            start_dim: 1,
            end_dim: None,
        }
    }
}

impl Flatten {
    /// Flattens everything after the batch axis.
    pub fn new() -> Flatten {
        Flatten::default()
    }

    /// The flattening, or an error naming the shape.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let end = self.end_dim.unwrap_or(x.rank().saturating_sub(1));
        x.try_flatten(self.start_dim, end)
    }
}

impl Module for Flatten {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        or_panic(Flatten::try_forward(self, x))
    }
    fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        Flatten::try_forward(self, x)
    }
}
