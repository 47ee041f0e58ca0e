//! Learning-rate schedulers (`torch.optim.lr_scheduler`): the [`LrScheduler`] trait and
//! StepLR, ExponentialLR, CosineAnnealingLR and LinearLR. SequentialLR, OneCycleLR,
//! LambdaLR and ReduceLROnPlateau live in their own files.
//!
//! Like PyTorch's, they are chainable: each step computes every parameter group's next
//! learning rate from that group's current one, so schedulers compose and a manual
//! `set_group_lr` between steps carries on. Learning rates are f64 throughout. A
//! scheduler holds no handle to its optimizer, only its progress; it exports a
//! [`SchedulerState`] (serde) and restores from one.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::{OptimError, Optimizer, SchedulerState};

/// Adjusts an optimizer's learning rates once per epoch (or per iteration), after the
/// optimizer's `step`. Every scheduler scales each parameter group from its own base lr.
///
/// # Panics
/// The methods that take the optimizer panic if it has a different number of groups than
/// the one the scheduler was built on (the scheduler belongs to another optimizer).
pub trait LrScheduler {
    /// Moves to the next epoch: computes each group's learning rate and sets it on
    /// `optimizer`.
    fn step(&mut self, optimizer: &mut dyn Optimizer);

    /// Goes back to epoch 0 and sets its learning rates computed from the base lrs
    /// (PyTorch's `scheduler.step(0)`, closed form): what [`crate::SequentialLr`] does to
    /// the next scheduler at each milestone.
    fn restart(&mut self, optimizer: &mut dyn Optimizer);

    /// Every group's learning rate as set by the latest step (or by the constructor).
    fn last_lrs(&self) -> &[f64];

    /// Group 0's learning rate as set by the latest step (or by the constructor).
    fn last_lr(&self) -> f64 {
        self.last_lrs()[0]
    }

    /// The number of steps taken so far (PyTorch's `last_epoch`, which starts at 0).
    fn last_epoch(&self) -> u64;

    /// The scheduler's progress (and its hyper-parameters), to save in a checkpoint.
    fn state(&self) -> SchedulerState;

    /// Restores a state exported by [`LrScheduler::state`] from a scheduler of the same
    /// kind (and, for [`crate::SequentialLr`], the same sequence of kinds). Nothing
    /// changes when it fails.
    fn load_state(&mut self, state: &SchedulerState) -> Result<(), OptimError>;
}

/// What every scheduler tracks: each group's base learning rate (PyTorch's
/// `initial_lr`), its step count and the learning rates it set last.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Progress {
    pub(crate) base_lrs: Vec<f64>,
    pub(crate) last_epoch: u64,
    pub(crate) last_lrs: Vec<f64>,
}

/// Every group's `initial_lr`, first setting it to the current lr where it is unset
/// (PyTorch's `group.setdefault("initial_lr", group["lr"])`).
pub(crate) fn initial_lrs(optimizer: &mut dyn Optimizer) -> Vec<f64> {
    (0..optimizer.num_groups())
        .map(|g| match optimizer.group_initial_lr(g) {
            Some(lr) => lr,
            None => {
                let lr = optimizer.group_lr(g);
                optimizer.set_group_initial_lr(g, lr);
                lr
            }
        })
        .collect()
}

/// Sets `lrs` on the groups, checking that the optimizer is the scheduler's.
#[track_caller]
pub(crate) fn set_lrs(optimizer: &mut dyn Optimizer, lrs: &[f64]) {
    assert_eq!(
        optimizer.num_groups(),
        lrs.len(),
        "the scheduler was built on an optimizer with {} parameter groups, this one has {}",
        lrs.len(),
        optimizer.num_groups()
    );
    for (g, &lr) in lrs.iter().enumerate() {
        optimizer.set_group_lr(g, lr);
    }
}

impl Progress {
    /// Takes the groups' `initial_lr`s as the base lrs and sets `initial(current_lr)` on
    /// each group, as PyTorch's constructors do with their first, implicit step.
    pub(crate) fn start(optimizer: &mut dyn Optimizer, initial: impl Fn(f64) -> f64) -> Progress {
        let base_lrs = initial_lrs(optimizer);
        let last_lrs: Vec<f64> = optimizer.lrs().into_iter().map(initial).collect();
        set_lrs(optimizer, &last_lrs);
        Progress {
            base_lrs,
            last_epoch: 0,
            last_lrs,
        }
    }

    /// Counts a step and sets `next(epoch, current_lr, base_lr)` on every group.
    #[track_caller]
    pub(crate) fn advance(
        &mut self,
        optimizer: &mut dyn Optimizer,
        next: impl FnMut(u64, f64, f64) -> f64,
    ) {
        self.set(optimizer, self.last_epoch + 1, next);
    }

    /// Moves to `epoch` and sets `lr(epoch, current_lr, base_lr)` on every group.
    #[track_caller]
    pub(crate) fn set(
        &mut self,
        optimizer: &mut dyn Optimizer,
        epoch: u64,
        mut lr: impl FnMut(u64, f64, f64) -> f64,
    ) {
        let current = optimizer.lrs();
        assert_eq!(
            current.len(),
            self.base_lrs.len(),
            "the scheduler was built on an optimizer with {} parameter groups, this one has {}",
            self.base_lrs.len(),
            current.len()
        );
        self.last_epoch = epoch;
        self.last_lrs = current
            .iter()
            .zip(&self.base_lrs)
            .map(|(&lr_now, &base)| lr(epoch, lr_now, base))
            .collect();
        set_lrs(optimizer, &self.last_lrs);
    }
}

/// Implements the [`LrScheduler`] methods every plain-data scheduler shares, given its
/// variant of [`SchedulerState`]; the type provides `advance` and `closed_form`.
macro_rules! plain_scheduler {
    ($ty:ident) => {
        impl LrScheduler for $ty {
            #[track_caller]
            fn step(&mut self, optimizer: &mut dyn Optimizer) {
                self.advance(optimizer);
            }

            #[track_caller]
            fn restart(&mut self, optimizer: &mut dyn Optimizer) {
                let this = self.clone();
                self.progress
                    .set(optimizer, 0, |epoch, _, base| this.closed_form(epoch, base));
            }

            fn last_lrs(&self) -> &[f64] {
                &self.progress.last_lrs
            }

            fn last_epoch(&self) -> u64 {
                self.progress.last_epoch
            }

            fn state(&self) -> SchedulerState {
                SchedulerState::$ty(self.clone())
            }

            fn load_state(&mut self, state: &SchedulerState) -> Result<(), OptimError> {
                match state {
                    SchedulerState::$ty(s) => {
                        *self = s.clone();
                        Ok(())
                    }
                    other => Err(crate::scheduler_state::kind_mismatch(
                        stringify!($ty),
                        other,
                    )),
                }
            }
        }
    };
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
    /// Starts from the optimizer's learning rates; `step_size` must be positive.
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

    fn advance(&mut self, optimizer: &mut dyn Optimizer) {
        let (step_size, gamma) = (self.step_size, self.gamma);
        self.progress.advance(optimizer, |epoch, lr, _| {
            if epoch % step_size == 0 {
                lr * gamma
            } else {
                lr
            }
        });
    }

    fn closed_form(&self, epoch: u64, base: f64) -> f64 {
        base * self.gamma.powf((epoch / self.step_size) as f64)
    }
}
plain_scheduler!(StepLr);

/// `ExponentialLR`: multiplies the learning rate by `gamma` every epoch, η_t = η₀·γᵗ.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExponentialLr {
    /// Multiplicative factor per epoch.
    pub gamma: f64,
    progress: Progress,
}

impl ExponentialLr {
    /// Starts from the optimizer's learning rates.
    pub fn new(optimizer: &mut dyn Optimizer, gamma: f64) -> ExponentialLr {
        ExponentialLr {
            gamma,
            progress: Progress::start(optimizer, |lr| lr),
        }
    }

    fn advance(&mut self, optimizer: &mut dyn Optimizer) {
        let gamma = self.gamma;
        self.progress.advance(optimizer, |_, lr, _| lr * gamma);
    }

    fn closed_form(&self, epoch: u64, base: f64) -> f64 {
        base * self.gamma.powf(epoch as f64)
    }
}
plain_scheduler!(ExponentialLr);

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
    /// Starts from the optimizer's learning rates; `t_max` must be positive.
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

    fn advance(&mut self, optimizer: &mut dyn Optimizer) {
        let (t_max, eta_min) = (self.t_max, self.eta_min);
        let t = t_max as f64;
        self.progress.advance(optimizer, |epoch, lr, base_lr| {
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

    fn closed_form(&self, epoch: u64, base: f64) -> f64 {
        let phase = PI * epoch as f64 / self.t_max as f64;
        self.eta_min + (base - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }
}
plain_scheduler!(CosineAnnealingLr);

/// `LinearLR`: scales the base learning rate by a factor moving linearly from
/// `start_factor` to `end_factor` over `total_iters` steps, then holds it; with
/// `start_factor` < 1 this is a warm-up.
///
/// The construction sets η·start_factor; each later step t ≤ total_iters multiplies the
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
    /// Starts from the optimizer's learning rates and multiplies them by `start_factor`
    /// at once; the factors are validated as in PyTorch.
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

    fn advance(&mut self, optimizer: &mut dyn Optimizer) {
        let (start, end, total) = (self.start_factor, self.end_factor, self.total_iters);
        self.progress.advance(optimizer, |epoch, lr, _| {
            if epoch > total {
                return lr;
            }
            let ramp = total as f64 * start + (epoch - 1) as f64 * (end - start);
            lr * (1.0 + (end - start) / ramp)
        });
    }

    fn closed_form(&self, epoch: u64, base: f64) -> f64 {
        let (start, end) = (self.start_factor, self.end_factor);
        let done = if self.total_iters == 0 {
            // No ramp: the start factor at epoch 0, as the constructor sets (PyTorch
            // divides by zero here).
            0.0
        } else {
            epoch.min(self.total_iters) as f64 / self.total_iters as f64
        };
        base * (start + (end - start) * done)
    }
}
plain_scheduler!(LinearLr);
