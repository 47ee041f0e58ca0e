//! Parameter initialisation, as `torch.nn.init`: Kaiming (He) and Xavier (Glorot), each
//! uniform and normal, drawn from the caller's seeded generator.
//!
//! Fans follow PyTorch: for a weight of shape `[out, in, k...]`, fan_in = in·Πk and
//! fan_out = out·Πk. The Kaiming functions use mode `fan_in` and the leaky-ReLU gain
//! √(2 / (1 + a²)); `a = √5` gives `Linear`'s default U(−1/√in, 1/√in).

use rand::Rng;
use tapegrad_autograd::{Result, Tensor, TensorError};

/// (fan_in, fan_out) of a weight shape; fails below rank 2 like PyTorch.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(TensorError::InvalidArgument {
            op: "init",
            reason: format!("fan in and fan out need at least 2 dimensions, got shape {shape:?}"),
        });
    }
    // A valid shape keeps every product below (fan_in, fan_out, their sum) from wrapping.
    tapegrad_autograd::shape::try_numel("init", shape)?;
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

fn positive_fan(fan: usize, shape: &[usize]) -> Result<f32> {
    if fan == 0 {
        return Err(TensorError::InvalidArgument {
            op: "init",
            reason: format!("cannot initialise a tensor with a zero fan, shape {shape:?}"),
        });
    }
    Ok(fan as f32)
}

/// Gain of a leaky ReLU with negative slope `a`: √(2 / (1 + a²)).
pub fn leaky_relu_gain(a: f32) -> f32 {
    (2.0 / (1.0 + a * a)).sqrt()
}

/// U(−b, b) with b = gain·√(3 / fan_in), gain = √(2 / (1 + a²)).
pub fn kaiming_uniform(shape: &[usize], a: f32, rng: &mut impl Rng) -> Result<Tensor> {
    let fan_in = positive_fan(fans(shape)?.0, shape)?;
    let bound = leaky_relu_gain(a) * (3.0 / fan_in).sqrt();
    Tensor::uniform(shape, -bound, bound, rng)
}

/// N(0, σ²) with σ = gain / √fan_in, gain = √(2 / (1 + a²)).
pub fn kaiming_normal(shape: &[usize], a: f32, rng: &mut impl Rng) -> Result<Tensor> {
    let fan_in = positive_fan(fans(shape)?.0, shape)?;
    Tensor::normal(shape, 0.0, leaky_relu_gain(a) / fan_in.sqrt(), rng)
}

/// U(−b, b) with b = gain·√(6 / (fan_in + fan_out)).
pub fn xavier_uniform(shape: &[usize], gain: f32, rng: &mut impl Rng) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape)?;
    let bound = gain * (6.0 / positive_fan(fan_in + fan_out, shape)?).sqrt();
    Tensor::uniform(shape, -bound, bound, rng)
}

/// N(0, σ²) with σ = gain·√(2 / (fan_in + fan_out)).
pub fn xavier_normal(shape: &[usize], gain: f32, rng: &mut impl Rng) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape)?;
    let std = gain * (2.0 / positive_fan(fan_in + fan_out, shape)?).sqrt();
    Tensor::normal(shape, 0.0, std, rng)
}
