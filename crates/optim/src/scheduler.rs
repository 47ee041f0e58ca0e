//! Learning-rate schedulers (`torch.optim.lr_scheduler`): StepLR, ExponentialLR,
//! CosineAnnealingLR and LinearLR.
//!
//! Like PyTorch's, they are chainable: each step computes the next learning rate from
//! the optimizer's current one, so schedulers compose and a manual `set_lr` between
//! steps carries on. Learning rates are f64 throughout. A scheduler holds no handle to
//! its optimizer, only its progress, so it serialises with serde as it is and resumes
//! by deserialising next to the optimizer's own state.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::{OptimError, Optimizer};

/// Adjusts an optimizer's learning rate once per epoch (or per iteration), after the
/// optimizer's `step`.
pub trait LrScheduler {
    /// Moves to the next epoch: computes its learning rate and sets it on `optimizer`.
    fn step(&mut self, optimizer: &mut dyn Optimizer);

    /// The learning rate set by the latest step (or by the constructor).
    fn last_lr(&self) -> f64;

    /// The number of steps taken so far (PyTorch's `last_epoch`, which starts at 0).
    fn last_epoch(&self) -> u64;
}

/// What every scheduler tracks: the learning rate it started from, its step count and
/// the learning rate it set last.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Progress {
    base_lr: f64,
    last_epoch: u64,
    last_lr: f64,
}

impl Progress {
    /// Takes the optimizer's learning rate as the base and sets `initial(base_lr)`,
    /// as PyTorch's constructors do with their first, implicit step.
    fn start(optimizer: &mut dyn Optimizer, initial: impl FnOnce(f64) -> f64) -> Progress {
        let base_lr = optimizer.lr();
        let last_lr = initial(base_lr);
        optimizer.set_lr(last_lr);
        Progress {
            base_lr,
            last_epoch: 0,
            last_lr,
        }
    }

    /// Counts a step and sets `next(epoch, current_lr)` on the optimizer.
    fn advance(&mut self, optimizer: &mut dyn Optimizer, next: impl FnOnce(u64, f64) -> f64) {
        self.last_epoch += 1;
        self.last_lr = next(self.last_epoch, optimizer.lr());
        optimizer.set_lr(self.last_lr);
    }
}

/// `StepLR`: multiplies the learning rate by `gamma` every `step_size` epochs,
/// η_t = η₀·γ^⌊t / step_size⌋.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepLr {
    /// Epochs between decays.
    pub step_size: u64,
    /// Multiplicative factor of each decay.
    pub gamma: f64,
    progress: Progress,
}

impl StepLr {
    /// Starts from the optimizer's current learning rate; `step_size` must be positive.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        step_size: u64,
        gamma: f64,
    ) -> Result<StepLr, OptimError> {
        if step_size == 0 {
            return Err(invalid("Invalid step_size: 0 (must be positive)".into()));
        }
        Ok(StepLr {
            step_size,
            gamma,
            progress: Progress::start(optimizer, |lr| lr),
        })
    }
}

impl LrScheduler for StepLr {
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        let (step_size, gamma) = (self.step_size, self.gamma);
        self.progress.advance(optimizer, |epoch, lr| {
            if epoch % step_size == 0 {
                lr * gamma
            } else {
                lr
            }
        });
    }

    fn last_lr(&self) -> f64 {
        self.progress.last_lr
    }

    fn last_epoch(&self) -> u64 {
        self.progress.last_epoch
    }
}

/// `ExponentialLR`: multiplies the learning rate by `gamma` every epoch, η_t = η₀·γᵗ.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExponentialLr {
    /// Multiplicative factor per epoch.
    pub gamma: f64,
    progress: Progress,
}

impl ExponentialLr {
    /// Starts from the optimizer's current learning rate.
    pub fn new(optimizer: &mut dyn Optimizer, gamma: f64) -> ExponentialLr {
        ExponentialLr {
            gamma,
            progress: Progress::start(optimizer, |lr| lr),
        }
    }
}

impl LrScheduler for ExponentialLr {
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        let gamma = self.gamma;
        self.progress.advance(optimizer, |_, lr| lr * gamma);
    }

    fn last_lr(&self) -> f64 {
        self.progress.last_lr
    }

    fn last_epoch(&self) -> u64 {
        self.progress.last_epoch
    }
}

/// `CosineAnnealingLR`: follows η_t = η_min + ½(η₀ − η_min)(1 + cos(πt/T_max)).
///
/// Computed, as in PyTorch, recursively from the current learning rate:
/// η_t = (1 + cos(πt/T)) / (1 + cos(π(t−1)/T))·(η_{t−1} − η_min) + η_min, except at
/// t − 1 − T ≡ 0 (mod 2T), where η_t = η_{t−1} + ½(η₀ − η_min)(1 − cos(π/T)). Past T_max
/// the learning rate therefore climbs back up a cosine towards η₀ (period 2T) rather
/// than staying at η_min; stop stepping at T_max for a plain decay.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CosineAnnealingLr {
    /// Number of epochs of one half period.
    pub t_max: u64,
    /// The minimum learning rate.
    pub eta_min: f64,
    progress: Progress,
}

impl CosineAnnealingLr {
    /// Starts from the optimizer's current learning rate; `t_max` must be positive.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        t_max: u64,
        eta_min: f64,
    ) -> Result<CosineAnnealingLr, OptimError> {
        if t_max == 0 {
            return Err(invalid("Invalid t_max: 0 (must be positive)".into()));
        }
        Ok(CosineAnnealingLr {
            t_max,
            eta_min,
            progress: Progress::start(optimizer, |lr| lr),
        })
    }
}

impl LrScheduler for CosineAnnealingLr {
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        let (t_max, eta_min, base_lr) = (self.t_max, self.eta_min, self.progress.base_lr);
        let t = t_max as f64;
        self.progress.advance(optimizer, |epoch, lr| {
            let restart = (epoch as i128 - 1 - t_max as i128).rem_euclid(2 * t_max as i128) == 0;
            if restart {
                lr + (base_lr - eta_min) * (1.0 - (PI / t).cos()) / 2.0
            } else {
                let e = epoch as f64;
                (1.0 + (PI * e / t).cos()) / (1.0 + (PI * (e - 1.0) / t).cos()) * (lr - eta_min)
                    + eta_min
            }
        });
    }

    fn last_lr(&self) -> f64 {
        self.progress.last_lr
    }

    fn last_epoch(&self) -> u64 {
        self.progress.last_epoch
    }
}

/// `LinearLR`: scales the base learning rate by a factor moving linearly from
/// `start_factor` to `end_factor` over `total_iters` steps, then holds it; with
/// `start_factor` < 1 this is a warm-up.
///
/// The construction sets η₀·start_factor; each later step t ≤ total_iters multiplies the
/// current rate by 1 + (e − s) / (N·s + (t − 1)(e − s)), PyTorch's recursive form.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LinearLr {
    /// Factor applied at construction, in (0, 1].
    pub start_factor: f64,
    /// Factor reached after `total_iters` steps, in [0, 1].
    pub end_factor: f64,
    /// Number of steps of the ramp.
    pub total_iters: u64,
    progress: Progress,
}

impl LinearLr {
    /// Starts from the optimizer's current learning rate and multiplies it by
    /// `start_factor` at once; the factors are validated as in PyTorch.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        start_factor: f64,
        end_factor: f64,
        total_iters: u64,
    ) -> Result<LinearLr, OptimError> {
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(invalid(format!(
                "Starting multiplicative factor expected to be greater than 0 and less or \
                 equal to 1, got {start_factor}"
            )));
        }
        if !(0.0..=1.0).contains(&end_factor) {
            return Err(invalid(format!(
                "Ending multiplicative factor expected to be between 0 and 1, got {end_factor}"
            )));
        }
        Ok(LinearLr {
            start_factor,
            end_factor,
            total_iters,
            progress: Progress::start(optimizer, |lr| lr * start_factor),
        })
    }
}

impl LrScheduler for LinearLr {
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        let (start, end, total) = (self.start_factor, self.end_factor, self.total_iters);
        self.progress.advance(optimizer, |epoch, lr| {
            if epoch > total {
                return lr;
            }
            let ramp = total as f64 * start + (epoch - 1) as f64 * (end - start);
            lr * (1.0 + (end - start) / ramp)
        });
    }

    fn last_lr(&self) -> f64 {
        self.progress.last_lr
    }

    fn last_epoch(&self) -> u64 {
        self.progress.last_epoch
    }
}
