//! `ReduceLrOnPlateau` (`torch.optim.lr_scheduler.ReduceLROnPlateau`): lower the learning
//! rate when a monitored metric (e.g. the validation loss) stops improving.

use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::scheduler_state::kind_mismatch;
use crate::{OptimError, Optimizer, SchedulerState};

/// Whether the monitored metric should go down or up.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (a loss): PyTorch's `mode="min"`.
    Min,
    /// Higher is better (an accuracy): `mode="max"`.
    Max,
}

/// How `threshold` measures a significant improvement over the best value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Relative: better than best·(1 ∓ threshold) (`threshold_mode="rel"`).
    Rel,
    /// Absolute: better than best ∓ threshold (`threshold_mode="abs"`).
    Abs,
}

/// [`ReduceLrOnPlateau`]'s hyper-parameters, named and defaulted as PyTorch's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReduceLrOnPlateauConfig {
    /// Minimise or maximise the metric (default min).
    pub mode: PlateauMode,
    /// The lr is multiplied by this when reduced (default 0.1; must be < 1).
    pub factor: f64,
    /// Epochs without improvement tolerated before reducing (default 10).
    pub patience: u64,
    /// The least improvement that counts (default 1e-4).
    pub threshold: f64,
    /// Relative or absolute threshold (default relative).
    pub threshold_mode: ThresholdMode,
    /// Epochs after a reduction during which bad epochs are not counted (default 0).
    pub cooldown: u64,
    /// The lowest lr: one value for every group, or one per group (default 0).
    pub min_lr: Vec<f64>,
    /// A reduction smaller than this is not applied (default 1e-8).
    pub eps: f64,
}

impl Default for ReduceLrOnPlateauConfig {
    fn default() -> Self {
        ReduceLrOnPlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: vec![0.0],
            eps: 1e-8,
        }
    }
}

/// `ReduceLROnPlateau`, stepped with the metric after each evaluation:
///
/// ```text
/// better(a) = a < best·(1 − threshold)   (min, rel)     a < best − threshold   (min, abs)
///             a > best·(1 + threshold)   (max, rel)     a > best + threshold   (max, abs)
/// if better(metric): best ← metric, bad ← 0, else bad ← bad + 1
/// if cooling down:   cooldown_counter ← cooldown_counter − 1, bad ← 0
/// if bad > patience: every group's lr ← max(lr·factor, min_lr) when that lowers it by
///                    more than eps; cooldown_counter ← cooldown, bad ← 0
/// ```
///
/// `best` starts at +∞ (min) or −∞ (max); a NaN metric is never better.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReduceLrOnPlateau {
    config: ReduceLrOnPlateauConfig,
    min_lrs: Vec<f64>,
    /// The best metric so far; `None` before the first (PyTorch's ±∞, which JSON cannot
    /// hold).
    best: Option<f64>,
    num_bad_epochs: u64,
    cooldown_counter: u64,
    last_epoch: u64,
    last_lrs: Vec<f64>,
}

impl ReduceLrOnPlateau {
    /// Watches for plateaus; validates as PyTorch does. The lrs are left as they are.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        config: ReduceLrOnPlateauConfig,
    ) -> Result<ReduceLrOnPlateau, OptimError> {
        let n = optimizer.num_groups();
        if config.factor >= 1.0 || config.factor.is_nan() {
            return Err(invalid(format!(
                "Factor should be < 1.0, got {}",
                config.factor
            )));
        }
        let min_lrs = match config.min_lr.len() {
            1 => vec![config.min_lr[0]; n],
            len if len == n => config.min_lr.clone(),
            len => return Err(invalid(format!("expected {n} min_lrs, got {len}"))),
        };
        Ok(ReduceLrOnPlateau {
            config,
            min_lrs,
            best: None,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
            last_lrs: optimizer.lrs(),
        })
    }

    fn is_better(&self, a: f64) -> bool {
        let c = &self.config;
        let worse = match c.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        };
        let best = self.best.unwrap_or(worse);
        match (c.mode, c.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - c.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - c.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (c.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + c.threshold,
        }
    }

    /// Records one epoch's `metric` and reduces the lrs after more than `patience` epochs
    /// without improvement.
    ///
    /// # Panics
    /// If `optimizer` has a different number of groups than the one it was built on.
    #[track_caller]
    pub fn step(&mut self, optimizer: &mut dyn Optimizer, metric: f64) {
        assert_eq!(
            optimizer.num_groups(),
            self.min_lrs.len(),
            "ReduceLrOnPlateau was built on an optimizer with {} parameter groups, this one \
             has {}",
            self.min_lrs.len(),
            optimizer.num_groups()
        );
        self.last_epoch += 1;
        if self.is_better(metric) {
            self.best = Some(metric);
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.config.patience {
            for (g, &min_lr) in self.min_lrs.iter().enumerate() {
                let old = optimizer.group_lr(g);
                let new = (old * self.config.factor).max(min_lr);
                if old - new > self.config.eps {
                    optimizer.set_group_lr(g, new);
                }
            }
            self.cooldown_counter = self.config.cooldown;
            self.num_bad_epochs = 0;
        }
        self.last_lrs = optimizer.lrs();
    }

    /// Every group's lr after the latest step.
    pub fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    /// Steps taken so far.
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// The best metric seen, if any.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Epochs since the last improvement (reset by a reduction and during cooldown).
    pub fn num_bad_epochs(&self) -> u64 {
        self.num_bad_epochs
    }

    /// The saved state (the whole scheduler: it is plain data).
    pub fn state(&self) -> SchedulerState {
        SchedulerState::ReduceLrOnPlateau(self.clone())
    }

    /// Restores a state from [`ReduceLrOnPlateau::state`].
    pub fn load_state(&mut self, state: &SchedulerState) -> Result<(), OptimError> {
        match state {
            SchedulerState::ReduceLrOnPlateau(s) => {
                *self = s.clone();
                Ok(())
            }
            other => Err(kind_mismatch("ReduceLrOnPlateau", other)),
        }
    }
}
