//! `BatchNorm1d` and `BatchNorm2d`: normalisation by batch statistics in training mode
//! and by running statistics in eval mode, with PyTorch's parameters (`weight`, `bias`),
//! buffers (`running_mean`, `running_var`, `num_batches_tracked`) and defaults
//! (eps 1e-5, momentum 0.1, affine, tracking running statistics).
//!
//! `num_batches_tracked` is kept as a one-element f32 tensor so that it travels with
//! the other buffers; it is exact up to 2^24 batches, and safetensors files store it as
//! int64, as PyTorch does.

use std::ops::{Deref, DerefMut};

use tapegrad_autograd::{no_grad, or_panic, Result, Tensor, TensorError};

use crate::Module;

/// The layer behind [`BatchNorm1d`] and [`BatchNorm2d`], which differ only in the input
/// ranks they accept.
pub struct BatchNorm {
    /// γ, `[C]`, initialised to ones (absent without `affine`).
    pub weight: Option<Tensor>,
    /// β, `[C]`, initialised to zeros (absent without `affine`).
    pub bias: Option<Tensor>,
    /// Running mean, `[C]`, starting at zeros (absent without running statistics).
    pub running_mean: Option<Tensor>,
    /// Running (unbiased) variance, `[C]`, starting at ones.
    pub running_var: Option<Tensor>,
    /// Training batches seen, a one-element tensor.
    pub num_batches_tracked: Option<Tensor>,
    /// Weight of a new batch in the running statistics; `None` is a cumulative average.
    pub momentum: Option<f32>,
    /// Added to the variance.
    pub eps: f32,
    num_features: usize,
    training: bool,
    name: &'static str,
    ranks: &'static [usize],
}

impl BatchNorm {
    fn build(
        name: &'static str,
        ranks: &'static [usize],
        num_features: usize,
        eps: f32,
        momentum: Option<f32>,
        affine: bool,
        track_running_stats: bool,
    ) -> BatchNorm {
        let param =
            |v: f32| affine.then(|| Tensor::full(&[num_features], v).with_requires_grad(true));
        let buffer = |v: f32| track_running_stats.then(|| Tensor::full(&[num_features], v));
        BatchNorm {
            weight: param(1.0),
            bias: param(0.0),
            running_mean: buffer(0.0),
            running_var: buffer(1.0),
            num_batches_tracked: track_running_stats.then(|| Tensor::zeros(&[])),
            momentum,
            eps,
            num_features,
            training: true,
            name,
            ranks,
        }
    }

    /// Channels normalised.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The normalisation, or an error naming the layer and the shape.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.ranks.contains(&x.rank()) || x.shape()[1] != self.num_features {
            let ranks: Vec<String> = self.ranks.iter().map(|r| format!("{r}-D")).collect();
            return Err(TensorError::InvalidArgument {
                op: self.name,
                reason: format!(
                    "expected a {} input with {} channels on axis 1, got shape {:?}",
                    ranks.join(" or "),
                    self.num_features,
                    x.shape()
                ),
            });
        }
        let use_batch_stats = self.training || self.running_mean.is_none();
        let mut momentum = self.momentum.unwrap_or(0.0);
        let counter = self.num_batches_tracked.as_ref().filter(|_| self.training);
        let count = counter.map(|n| n.data()[0] + 1.0);
        if let (Some(count), None) = (count, self.momentum) {
            momentum = 1.0 / count;
        }
        // Eval mode with running statistics: normalise by them, update nothing.
        let (rm, rv) = (self.running_mean.as_ref(), self.running_var.as_ref());
        let y = x
            .try_batch_norm(
                rm,
                rv,
                self.weight.as_ref(),
                self.bias.as_ref(),
                use_batch_stats,
                momentum,
                self.eps,
            )
            .map_err(|e| TensorError::InvalidArgument {
                op: self.name,
                reason: e.to_string(),
            })?;
        // Counted only once the batch went through, so a refused batch changes nothing.
        if let (Some(n), Some(count)) = (counter, count) {
            no_grad(|| n.data_mut()[0] = count);
        }
        Ok(y)
    }

    fn params(&self) -> Vec<(String, Tensor)> {
        let mut p = Vec::new();
        if let Some(w) = &self.weight {
            p.push(("weight".to_string(), w.clone()));
        }
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        let named = [
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
            ("num_batches_tracked", &self.num_batches_tracked),
        ];
        named
            .into_iter()
            .filter_map(|(n, t)| t.as_ref().map(|t| (n.to_string(), t.clone())))
            .collect()
    }
}

macro_rules! batch_norm_layer {
    ($name:ident, $ranks:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(pub BatchNorm);

        impl $name {
            /// `num_features` channels with PyTorch's defaults: eps 1e-5, momentum 0.1,
            /// affine, tracking running statistics.
            pub fn new(num_features: usize) -> $name {
                $name::with_options(num_features, 1e-5, Some(0.1), true, true)
            }

            /// Full control, as PyTorch's keyword arguments; `momentum: None` keeps a
            /// cumulative average of the batch statistics.
            pub fn with_options(
                num_features: usize,
                eps: f32,
                momentum: Option<f32>,
                affine: bool,
                track_running_stats: bool,
            ) -> $name {
                $name(BatchNorm::build(
                    stringify!($name),
                    $ranks,
                    num_features,
                    eps,
                    momentum,
                    affine,
                    track_running_stats,
                ))
            }
        }

        impl Deref for $name {
            type Target = BatchNorm;
            fn deref(&self) -> &BatchNorm {
                &self.0
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut BatchNorm {
                &mut self.0
            }
        }

        impl Module for $name {
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                or_panic(self.0.try_forward(x))
            }
            fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
                self.0.try_forward(x)
            }
            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                self.0.params()
            }
            fn named_buffers(&self) -> Vec<(String, Tensor)> {
                self.0.buffers()
            }
            fn set_training(&mut self, training: bool) {
                self.0.training = training;
            }
        }
    };
}

batch_norm_layer!(
    BatchNorm1d,
    &[2, 3],
    "Batch normalisation of `[N, C]` or `[N, C, L]` over every axis but the channels \
     (`torch.nn.BatchNorm1d`)."
);
batch_norm_layer!(
    BatchNorm2d,
    &[4],
    "Batch normalisation of `[N, C, H, W]` per channel (`torch.nn.BatchNorm2d`)."
);
