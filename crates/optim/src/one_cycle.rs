//! `OneCycleLr` (`torch.optim.lr_scheduler.OneCycleLR`): the 1cycle policy, a rise from
//! a low lr to a peak and an anneal to far below the start, with momentum cycled the
//! opposite way.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::scheduler::set_lrs;
use crate::scheduler_state::kind_mismatch;
use crate::{LrScheduler, OptimError, Optimizer, SchedulerState};

/// How [`OneCycleLr`] moves between its phase end points.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnealStrategy {
    /// end + (start − end)/2·(1 + cos(π·pct)) (PyTorch's default, "cos").
    Cos,
    /// start + (end − start)·pct ("linear").
    Linear,
}

/// [`OneCycleLr`]'s hyper-parameters, named and defaulted as `torch.optim.lr_scheduler.
/// OneCycleLR`'s; build with [`OneCycleConfig::new`] and struct update syntax.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OneCycleConfig {
    /// The peak learning rate: one value for every group, or one per group.
    pub max_lr: Vec<f64>,
    /// The number of steps in the cycle (PyTorch's `total_steps`, or epochs ×
    /// steps_per_epoch).
    pub total_steps: u64,
    /// The fraction of the cycle spent raising the lr (default 0.3).
    pub pct_start: f64,
    /// Cosine or linear annealing (default cosine).
    pub anneal_strategy: AnnealStrategy,
    /// Cycle the momentum (SGD's and RMSprop's `momentum`, Adam's β₁) inversely to the lr
    /// (default true; needs an optimizer with a momentum).
    pub cycle_momentum: bool,
    /// The momentum at the lr's peak (default 0.85).
    pub base_momentum: f64,
    /// The momentum at the start and end (default 0.95).
    pub max_momentum: f64,
    /// initial_lr = max_lr / div_factor (default 25).
    pub div_factor: f64,
    /// min_lr = initial_lr / final_div_factor (default 1e4).
    pub final_div_factor: f64,
    /// Three phases (up to max_lr, back down to initial_lr, then to min_lr) rather than
    /// two (up, then down to min_lr) (default false).
    pub three_phase: bool,
}

impl OneCycleConfig {
    /// PyTorch's defaults with the peak `max_lr` for every group over `total_steps` steps.
    pub fn new(max_lr: f64, total_steps: u64) -> OneCycleConfig {
        OneCycleConfig {
            max_lr: vec![max_lr],
            total_steps,
            pct_start: 0.3,
            anneal_strategy: AnnealStrategy::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

/// One group's end points.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Ends {
    initial_lr: f64,
    max_lr: f64,
    min_lr: f64,
}

/// Which end point a phase starts or ends at.
#[derive(Clone, Copy)]
enum Point {
    Initial,
    Max,
    Min,
}

/// `OneCycleLR`. With η_max the peak, η_0 = η_max/div_factor, η_min = η_0/final_div_factor,
/// N = total_steps and p = pct_start, at step t the lr anneals (cos or linear) within its
/// phase, pct = (t − phase start)/(phase end − phase start):
///
/// - two phases: η_0 → η_max over [0, pN − 1], then η_max → η_min over [pN − 1, N − 1];
/// - three phases: η_0 → η_max over [0, pN − 1], η_max → η_0 over [pN − 1, 2pN − 2],
///   then η_0 → η_min over [2pN − 2, N − 1].
///
/// The momentum goes max → base → max alongside (three phases: max → base → max → max).
/// The optimizer's lr before construction is ignored, as in PyTorch; the group's
/// `initial_lr` becomes η_0. Stepping more than N times is an error, as in PyTorch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OneCycleLr {
    config: OneCycleConfig,
    groups: Vec<Ends>,
    last_epoch: u64,
    last_lrs: Vec<f64>,
}

impl OneCycleLr {
    /// Sets every group's lr (and momentum, when cycled) to its step-0 value; validates
    /// as PyTorch does.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        config: OneCycleConfig,
    ) -> Result<OneCycleLr, OptimError> {
        let n = optimizer.num_groups();
        if config.total_steps == 0 {
            return Err(invalid(format!(
                "Expected positive integer total_steps, but got {}",
                config.total_steps
            )));
        }
        if !(0.0..=1.0).contains(&config.pct_start) {
            return Err(invalid(format!(
                "Expected float between 0 and 1 pct_start, but got {}",
                config.pct_start
            )));
        }
        let max_lrs = match config.max_lr.len() {
            1 => vec![config.max_lr[0]; n],
            len if len == n => config.max_lr.clone(),
            len => {
                return Err(invalid(format!(
                    "expected {n} values for max_lr, got {len}"
                )))
            }
        };
        let mut sched = OneCycleLr {
            groups: max_lrs
                .iter()
                .map(|&max_lr| {
                    let initial_lr = max_lr / config.div_factor;
                    Ends {
                        initial_lr,
                        max_lr,
                        min_lr: initial_lr / config.final_div_factor,
                    }
                })
                .collect(),
            config,
            last_epoch: 0,
            last_lrs: Vec::new(),
        };
        let ends: Vec<f64> = sched.phases().iter().map(|p| p.0).collect();
        let mut start = 0.0;
        for &end in &ends {
            if end == start {
                return Err(invalid(format!(
                    "OneCycleLr: pct_start {} of {} total steps gives a phase of no length",
                    sched.config.pct_start, sched.config.total_steps
                )));
            }
            start = end;
        }
        if sched.config.cycle_momentum {
            if optimizer.group_momentum(0).is_none() {
                return Err(invalid(format!(
                    "optimizer must support momentum or beta1 with `cycle_momentum` option \
                     enabled ({} has neither)",
                    optimizer.kind()
                )));
            }
            let before: Vec<Option<f64>> = (0..n).map(|g| optimizer.group_momentum(g)).collect();
            for g in 0..n {
                let check = optimizer
                    .set_group_momentum(g, sched.config.base_momentum)
                    .and_then(|()| optimizer.set_group_momentum(g, sched.config.max_momentum));
                if let Err(e) = check {
                    for (h, m) in before.iter().enumerate().take(g + 1) {
                        let _ = optimizer.set_group_momentum(h, m.expect("checked above"));
                    }
                    return Err(e);
                }
            }
        }
        for (g, ends) in sched.groups.iter().enumerate() {
            optimizer.set_group_initial_lr(g, ends.initial_lr);
        }
        sched.apply(optimizer, 0);
        Ok(sched)
    }

    /// The phases: (end step, lr from, lr to, momentum from, momentum to).
    fn phases(&self) -> Vec<(f64, Point, Point, bool, bool)> {
        // Momentum points: `true` is max_momentum, `false` base_momentum.
        let (p, n) = (self.config.pct_start, self.config.total_steps as f64);
        if self.config.three_phase {
            vec![
                (p * n - 1.0, Point::Initial, Point::Max, true, false),
                (2.0 * p * n - 2.0, Point::Max, Point::Initial, false, true),
                (n - 1.0, Point::Initial, Point::Min, true, true),
            ]
        } else {
            vec![
                (p * n - 1.0, Point::Initial, Point::Max, true, false),
                (n - 1.0, Point::Max, Point::Min, false, true),
            ]
        }
    }

    fn anneal(&self, start: f64, end: f64, pct: f64) -> f64 {
        match self.config.anneal_strategy {
            AnnealStrategy::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            AnnealStrategy::Linear => (end - start) * pct + start,
        }
    }

    /// Sets step `step`'s lrs (and momenta) on the optimizer (PyTorch's `get_lr`).
    fn apply(&mut self, optimizer: &mut dyn Optimizer, step: u64) {
        let phases = self.phases();
        let t = step as f64;
        let mut lrs = Vec::with_capacity(self.groups.len());
        let mut momenta = Vec::with_capacity(self.groups.len());
        for ends in &self.groups {
            let point = |p: Point| match p {
                Point::Initial => ends.initial_lr,
                Point::Max => ends.max_lr,
                Point::Min => ends.min_lr,
            };
            let momentum = |max: bool| {
                if max {
                    self.config.max_momentum
                } else {
                    self.config.base_momentum
                }
            };
            let mut start = 0.0;
            for (i, &(end, lr_from, lr_to, m_from, m_to)) in phases.iter().enumerate() {
                if t <= end || i == phases.len() - 1 {
                    let pct = (t - start) / (end - start);
                    lrs.push(self.anneal(point(lr_from), point(lr_to), pct));
                    momenta.push(self.anneal(momentum(m_from), momentum(m_to), pct));
                    break;
                }
                start = end;
            }
        }
        set_lrs(optimizer, &lrs);
        if self.config.cycle_momentum {
            for (g, &m) in momenta.iter().enumerate() {
                // Within the bounds validated at construction (up to PyTorch's own
                // extrapolation at step N), so this does not fail.
                let _ = optimizer.set_group_momentum(g, m);
            }
        }
        self.last_epoch = step;
        self.last_lrs = lrs;
    }

    /// Moves to the next step; an error, changing nothing, past `total_steps` steps.
    pub fn try_step(&mut self, optimizer: &mut dyn Optimizer) -> Result<(), OptimError> {
        let step = self.last_epoch + 1;
        if step > self.config.total_steps {
            return Err(invalid(format!(
                "Tried to step {step} times. The specified number of total steps is {}",
                self.config.total_steps
            )));
        }
        self.apply(optimizer, step);
        Ok(())
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &OneCycleConfig {
        &self.config
    }
}

impl LrScheduler for OneCycleLr {
    /// [`OneCycleLr::try_step`], panicking past `total_steps` steps as PyTorch raises.
    #[track_caller]
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        if let Err(e) = self.try_step(optimizer) {
            panic!("{e}");
        }
    }

    fn restart(&mut self, optimizer: &mut dyn Optimizer) {
        self.apply(optimizer, 0);
    }

    fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    fn state(&self) -> SchedulerState {
        SchedulerState::OneCycleLr(self.clone())
    }

    fn load_state(&mut self, state: &SchedulerState) -> Result<(), OptimError> {
        match state {
            SchedulerState::OneCycleLr(s) => {
                *self = s.clone();
                Ok(())
            }
            other => Err(kind_mismatch("OneCycleLr", other)),
        }
    }
}
