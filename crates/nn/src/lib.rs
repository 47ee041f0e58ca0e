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
mod dropout;
mod embedding;
mod gpt;
pub mod init;
mod linear;
mod norm;
mod sequential;
mod transformer;

pub use activation::{
    Elu, Gelu, Identity, LeakyRelu, Relu, Sigmoid, Silu, Softmax, Softplus, Tanh,
};
pub use attention::MultiheadAttention;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use gpt::{Gpt, GptConfig};
pub use linear::Linear;
pub use norm::LayerNorm;
pub use sequential::Sequential;
pub use tapegrad_autograd::{AttnMask, GeluApprox, Result, Tensor, TensorError};
pub use transformer::{CausalSelfAttention, Mlp, TransformerBlock};

/// A layer or a whole model: a differentiable map with named parameters.
pub trait Module {
    /// Runs the layer. Like PyTorch, a shape that does not fit panics with the op and
    /// the shapes.
    fn forward(&self, input: &Tensor) -> Tensor;

    /// Parameters under their state-dict names, in a fixed order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
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
