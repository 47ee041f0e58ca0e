//! Parameter-free layers wrapping the activation ops, for use inside `Sequential`.

use tapegrad_autograd::{GeluApprox, Tensor};

use crate::Module;

/// max(x, 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

/// 1 / (1 + e⁻ˣ).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sigmoid;

/// tanh(x).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tanh;

/// x for x > 0, `negative_slope`·x otherwise (PyTorch's default slope: 0.01).
#[derive(Clone, Copy, Debug)]
pub struct LeakyRelu {
    /// Slope for negative inputs.
    pub negative_slope: f32,
}

/// GELU, exact (`GeluApprox::None`, the default) or tanh-approximated.
#[derive(Clone, Copy, Debug)]
pub struct Gelu {
    /// Which formula.
    pub approximate: GeluApprox,
}

/// Softmax along `axis`.
#[derive(Clone, Copy, Debug)]
pub struct Softmax {
    /// The axis that sums to one.
    pub axis: usize,
}

/// Returns its input unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu {
            negative_slope: 0.01,
        }
    }
}

impl Default for Gelu {
    fn default() -> Self {
        Gelu {
            approximate: GeluApprox::None,
        }
    }
}

impl Module for Relu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.relu()
    }
}

impl Module for Sigmoid {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.sigmoid()
    }
}

impl Module for Tanh {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.tanh()
    }
}

impl Module for LeakyRelu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.leaky_relu(self.negative_slope)
    }
}

impl Module for Gelu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.gelu(self.approximate)
    }
}

impl Module for Softmax {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.softmax(self.axis)
    }
}

impl Module for Identity {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.clone()
    }
}

/// x · sigmoid(x) (`torch.nn.SiLU`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Silu;

/// x for x > 0, α·(eˣ − 1) otherwise (`torch.nn.ELU`; default α = 1).
#[derive(Clone, Copy, Debug)]
pub struct Elu {
    /// The scale of the negative side.
    pub alpha: f32,
}

/// log(1 + e^(βx)) / β, linear where βx > `threshold` (`torch.nn.Softplus`; defaults
/// β = 1, threshold = 20).
#[derive(Clone, Copy, Debug)]
pub struct Softplus {
    /// Sharpness.
    pub beta: f32,
    /// Above this βx the output is x itself.
    pub threshold: f32,
}

impl Default for Elu {
    fn default() -> Self {
        Elu { alpha: 1.0 }
    }
}

impl Default for Softplus {
    fn default() -> Self {
        Softplus {
            beta: 1.0,
            threshold: 20.0,
        }
    }
}

impl Module for Silu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.silu()
    }
}

impl Module for Elu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.elu(self.alpha)
    }
}

impl Module for Softplus {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.softplus(self.beta, self.threshold)
    }
}
