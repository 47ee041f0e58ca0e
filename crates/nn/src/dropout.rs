//! `Dropout`: zeroes each element with probability p during training and scales the
//! rest by 1/(1 − p), so evaluation needs no rescaling. Masks are drawn from the
//! default generator, as PyTorch's are: `manual_seed` makes runs repeat exactly, and a
//! checkpoint saves that generator's position so a resumed run draws the same masks.

use rand::Rng;
use tapegrad_autograd::{with_default_rng, Result, Tensor, TensorError};

use crate::Module;

/// Inverted dropout, active only in training mode (the default, as in PyTorch).
pub struct Dropout {
    p: f32,
    training: bool,
}

impl Dropout {
    /// Drops with probability `p` ∈ [0, 1], drawing masks from the default generator.
    pub fn new(p: f32) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(TensorError::InvalidArgument {
                op: "Dropout",
                reason: format!("dropout probability has to be between 0 and 1, but got {p}"),
            });
        }
        Ok(Dropout { p, training: true })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.training || self.p == 0.0 {
            return x.clone();
        }
        let keep = 1.0 - self.p;
        let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
        let mask: Vec<f32> = with_default_rng(|rng| {
            (0..x.numel())
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        scale
                    } else {
                        0.0
                    }
                })
                .collect()
        });
        let mask = Tensor::from_vec(mask, x.shape()).expect("mask has the input's shape");
        x * &mask
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
