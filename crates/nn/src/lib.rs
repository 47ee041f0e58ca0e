//! Layers for tapegrad, named and initialised as in `torch.nn`.
//!
//! A [`Module`] maps a tensor to a tensor and lists its parameters under PyTorch's
//! state-dict names (`0.weight`, `fc1.bias`). Layers hold their parameters as plain
//! [`Tensor`] handles, so an optimizer can take `net.parameters()` and update them in
//! place without knowing about modules.
//!
//! A model of your own is a struct with layer fields:
//!
//! ```
//! use tapegrad_autograd::{manual_seed, Tensor};
//! use tapegrad_nn::{prefixed_parameters, Linear, Module};
//!
//! struct Net {
//!     fc1: Linear,
//!     fc2: Linear,
//! }
//!
//! impl Module for Net {
//!     fn forward(&self, x: &Tensor) -> Tensor {
//!         self.fc2.forward(&self.fc1.forward(x).relu())
//!     }
//!     fn named_parameters(&self) -> Vec<(String, Tensor)> {
//!         prefixed_parameters(&[("fc1", &self.fc1), ("fc2", &self.fc2)])
//!     }
//! }
//!
//! manual_seed(0);
//! let net = Net { fc1: Linear::new(10, 5)?, fc2: Linear::new(5, 1)? };
//! let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
//! assert_eq!(net.forward(&Tensor::zeros(&[3, 10])).shape(), &[3, 1]);
//! # Ok::<(), tapegrad_autograd::TensorError>(())
//! ```

mod activation;
mod attention;
mod batchnorm;
mod conv;
mod dropout;
mod embedding;
mod field;
mod gpt;
pub mod init;
mod linear;
mod norm;
mod pooling;
mod sequential;
mod summary;
mod transformer;

pub use activation::{
    Elu, Gelu, Identity, LeakyRelu, Relu, Sigmoid, Silu, Softmax, Softplus, Tanh,
};
pub use attention::MultiheadAttention;
pub use batchnorm::{BatchNorm, BatchNorm1d, BatchNorm2d};
pub use conv::{Conv1d, Conv2d, ConvTranspose2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use field::ModuleField;
pub use gpt::{Gpt, GptConfig};
pub use linear::Linear;
pub use norm::LayerNorm;
pub use pooling::{AdaptiveAvgPool2d, AvgPool2d, Flatten, MaxPool2d};
pub use sequential::Sequential;
pub use summary::{summary, Summary};
pub use tapegrad_autograd::{
    AttnMask, Conv2dOptions, ConvTranspose2dOptions, GeluApprox, Pool2dOptions, Result, Tensor,
    TensorError,
};
/// `#[derive(Module)]` for a struct of layers (see the `tapegrad-derive` crate): the
/// trait and its derive share the name, so `use tapegrad::nn::Module` brings both.
pub use tapegrad_derive::Module;
pub use transformer::{CausalSelfAttention, Mlp, TransformerBlock};

/// A layer or a whole model: a differentiable map with named parameters.
pub trait Module {
    /// Runs the layer. Like PyTorch, a shape that does not fit panics with the op and
    /// the shapes, at the caller's line.
    #[track_caller]
    fn forward(&self, input: &Tensor) -> Tensor;

    /// Runs the layer, returning a bad input as an `Err` instead of panicking. Layers
    /// that can refuse an input override it (and make `forward` unwrap it); the default
    /// calls `forward`. `Sequential`'s error names the failing layer's index and kind.
    #[track_caller]
    fn try_forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.forward(input))
    }

    /// One line saying what the module is, with its sizes (`Linear 10 → 5`), for error
    /// messages and summaries. The default is the type's name.
    fn describe(&self) -> String {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base).to_string()
    }

    /// The sub-modules, under their names, in declaration order (for summaries);
    /// empty for a leaf layer.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }

    /// The width of the output's last axis given the input's (`None`: unknown). The
    /// default keeps the width for a leaf (activations, dropout, norms) and threads it
    /// through the children in order for a container.
    fn output_width(&self, input_width: Option<usize>) -> Option<usize> {
        self.children()
            .iter()
            .fold(input_width, |w, (_, child)| child.output_width(w))
    }

    /// Parameters under their state-dict names, in a fixed order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Buffers under their state-dict names: state that is saved and loaded with the
    /// parameters but not trained (BatchNorm's `running_mean`, `running_var`,
    /// `num_batches_tracked`). Containers prefix their children's, as for parameters.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Parameter handles (cheap clones sharing storage), for an optimizer.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Total number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Switches training-only behaviour (dropout) on or off; containers pass it down.
    fn set_training(&mut self, _training: bool) {}

    /// Training mode (PyTorch's `model.train()`).
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Evaluation mode (PyTorch's `model.eval()`).
    fn eval(&mut self) {
        self.set_training(false);
    }
}

/// `Display` for leaf layers: their one-line description, as `print(layer)` in PyTorch.
macro_rules! display_by_describe {
    ($($layer:ty),* $(,)?) => {$(
        impl std::fmt::Display for $layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&Module::describe(self))
            }
        }
    )*};
}

display_by_describe!(
    Linear, Relu, Sigmoid, Tanh, LeakyRelu, Gelu, Softmax, Identity, Dropout, LayerNorm, Embedding,
);

/// The parameters of named children, each name prefixed as PyTorch does (`fc1.weight`).
pub fn prefixed_parameters(children: &[(&str, &dyn Module)]) -> Vec<(String, Tensor)> {
    children
        .iter()
        .flat_map(|(prefix, child)| {
            child
                .named_parameters()
                .into_iter()
                .map(move |(name, p)| (format!("{prefix}.{name}"), p))
        })
        .collect()
}

/// The buffers of named children, each name prefixed as PyTorch does
/// (`bn1.running_mean`); the companion of [`prefixed_parameters`].
pub fn prefixed_buffers(children: &[(&str, &dyn Module)]) -> Vec<(String, Tensor)> {
    children
        .iter()
        .flat_map(|(prefix, child)| {
            child
                .named_buffers()
                .into_iter()
                .map(move |(name, b)| (format!("{prefix}.{name}"), b))
        })
        .collect()
}
