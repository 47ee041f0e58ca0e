//! Regression losses on real-valued targets: MSE, L1, SmoothL1 and Huber.
//!
//! Each is an elementwise loss of the difference d = input − target, fused into one op
//! (see [`crate::pointwise`]) with PyTorch's derivative at the kinks: sign(0) = 0 for
//! L1, and the quadratic branch up to but excluding |d| = β (δ) for SmoothL1 (Huber),
//! where both branches have the same slope anyway.

use tapegrad_autograd::{Result, Tensor, TensorError};

use crate::{or_panic, pointwise, reduce, Pointwise, Reduction};

/// Loss and derivative with respect to d for one difference; the target's derivative
/// is its negation.
fn of_difference(l: f32, dl: f32) -> Pointwise {
    Pointwise {
        loss: l,
        d_input: dl,
        d_target: -dl,
    }
}

/// sign(d) with sign(0) = 0, as `torch.sign`.
fn sign(d: f32) -> f32 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Mean squared error: (input − target)², reduced.
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let loss = pointwise("mse_loss", input, target, |_, x, y| {
        let d = x - y;
        of_difference(d * d, 2.0 * d)
    })?;
    Ok(reduce(loss, reduction))
}

/// Mean absolute error: |input − target|, reduced.
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let loss = pointwise("l1_loss", input, target, |_, x, y| {
        let d = x - y;
        of_difference(d.abs(), sign(d))
    })?;
    Ok(reduce(loss, reduction))
}

/// SmoothL1: 0.5·d²/β where |d| < β, |d| − 0.5·β elsewhere (d = input − target);
/// β = 0 is exactly L1. Fails for a negative or non-finite β.
pub fn smooth_l1_loss(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    beta: f32,
) -> Result<Tensor> {
    if !(beta >= 0.0 && beta.is_finite()) {
        return Err(TensorError::InvalidArgument {
            op: "smooth_l1_loss",
            reason: format!("beta must be finite and >= 0, got {beta}"),
        });
    }
    let loss = pointwise("smooth_l1_loss", input, target, |_, x, y| {
        let d = x - y;
        // With β = 0 the quadratic branch is empty; testing it first would divide 0 by 0.
        if d.abs() < beta {
            of_difference(0.5 * d * d / beta, d / beta)
        } else {
            of_difference(d.abs() - 0.5 * beta, sign(d))
        }
    })?;
    Ok(reduce(loss, reduction))
}

/// Huber: 0.5·d² where |d| < δ, δ·(|d| − 0.5·δ) elsewhere (d = input − target).
/// Equals δ·SmoothL1 with β = δ. Fails unless δ is finite and positive.
pub fn huber_loss(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    delta: f32,
) -> Result<Tensor> {
    if !(delta > 0.0 && delta.is_finite()) {
        return Err(TensorError::InvalidArgument {
            op: "huber_loss",
            reason: format!("delta must be finite and > 0, got {delta}"),
        });
    }
    let loss = pointwise("huber_loss", input, target, |_, x, y| {
        let d = x - y;
        if d.abs() < delta {
            of_difference(0.5 * d * d, d)
        } else {
            of_difference(delta * (d.abs() - 0.5 * delta), delta * sign(d))
        }
    })?;
    Ok(reduce(loss, reduction))
}

/// `torch.nn.MSELoss`: see [`mse_loss`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MseLoss {
    reduction: Reduction,
}

impl MseLoss {
    /// Mean reduction, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss, or an error when the shapes differ.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        mse_loss(input, target, self.reduction)
    }

    /// The loss; panics with the error's message when the shapes differ.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}

/// `torch.nn.L1Loss`: see [`l1_loss`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct L1Loss {
    reduction: Reduction,
}

impl L1Loss {
    /// Mean reduction, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss, or an error when the shapes differ.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        l1_loss(input, target, self.reduction)
    }

    /// The loss; panics with the error's message when the shapes differ.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}

/// `torch.nn.SmoothL1Loss`: see [`smooth_l1_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothL1Loss {
    reduction: Reduction,
    beta: f32,
}

impl Default for SmoothL1Loss {
    fn default() -> Self {
        Self {
            reduction: Reduction::Mean,
            beta: 1.0,
        }
    }
}

impl SmoothL1Loss {
    /// Mean reduction and β = 1, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets β, where the loss turns from quadratic to linear (checked in `try_forward`).
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// The loss, or an error for differing shapes or a bad β.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        smooth_l1_loss(input, target, self.reduction, self.beta)
    }

    /// The loss; panics with the error's message on differing shapes or a bad β.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}

/// `torch.nn.HuberLoss`: see [`huber_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HuberLoss {
    reduction: Reduction,
    delta: f32,
}

impl Default for HuberLoss {
    fn default() -> Self {
        Self {
            reduction: Reduction::Mean,
            delta: 1.0,
        }
    }
}

impl HuberLoss {
    /// Mean reduction and δ = 1, as PyTorch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the element losses are combined.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets δ, where the loss turns from quadratic to linear (checked in `try_forward`).
    pub fn delta(mut self, delta: f32) -> Self {
        self.delta = delta;
        self
    }

    /// The loss, or an error for differing shapes or a bad δ.
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        huber_loss(input, target, self.reduction, self.delta)
    }

    /// The loss; panics with the error's message on differing shapes or a bad δ.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        or_panic(self.try_forward(input, target))
    }
}
