//! `SequentialLr` (`torch.optim.lr_scheduler.SequentialLR`): one scheduler after another,
//! switching at given epochs; the usual use is a linear warm-up then a cosine decay.

use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::scheduler::{initial_lrs, set_lrs};
use crate::scheduler_state::kind_mismatch;
use crate::{LrScheduler, OptimError, Optimizer, SchedulerState};

/// Runs `schedulers[0]` until epoch `milestones[0]`, then `schedulers[1]` until
/// `milestones[1]`, and so on, as PyTorch's `SequentialLR`:
///
/// - at construction every group's lr goes back to its `initial_lr` (undoing what
///   building the schedulers did) and the first scheduler restarts at its epoch 0;
/// - at epoch t the scheduler in use is the one after the milestones ≤ t; at a
///   milestone it restarts at its own epoch 0 from the base lrs (closed form:
///   [`LrScheduler::restart`]), otherwise it takes a normal step.
///
/// ```
/// use tapegrad_autograd::Tensor;
/// use tapegrad_optim::*;
///
/// let w = Tensor::zeros(&[2]).with_requires_grad(true);
/// let mut opt = AdamW::new(vec![w], AdamWConfig { lr: 1e-3, ..Default::default() }).unwrap();
/// let warmup = LinearLr::new(&mut opt, 0.01, 1.0, 10).unwrap();
/// let decay = CosineAnnealingLr::new(&mut opt, 90, 0.0).unwrap();
/// let mut sched =
///     SequentialLr::new(&mut opt, vec![Box::new(warmup), Box::new(decay)], vec![10]).unwrap();
/// assert_eq!(opt.lr(), 1e-3 * 0.01);
/// for _ in 0..10 {
///     sched.step(&mut opt);
/// }
/// assert_eq!(opt.lr(), 1e-3); // the cosine starts from the peak
/// ```
pub struct SequentialLr {
    schedulers: Vec<Box<dyn LrScheduler>>,
    milestones: Vec<u64>,
    last_epoch: u64,
    last_lrs: Vec<f64>,
}

/// A [`SequentialLr`]'s saved progress: its epoch, its last lrs and each scheduler's
/// state, in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SequentialLrState {
    /// The epochs at which the next scheduler takes over.
    pub milestones: Vec<u64>,
    /// Steps taken so far.
    pub last_epoch: u64,
    /// Every group's learning rate as last set.
    pub last_lrs: Vec<f64>,
    /// The schedulers' states, in order.
    pub schedulers: Vec<SchedulerState>,
}

impl SequentialLr {
    /// Chains `schedulers` (all built on `optimizer`) at `milestones`, which must be
    /// one fewer than the schedulers and strictly increasing.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        mut schedulers: Vec<Box<dyn LrScheduler>>,
        milestones: Vec<u64>,
    ) -> Result<SequentialLr, OptimError> {
        if schedulers.is_empty() {
            return Err(invalid(
                "SequentialLr expects at least one scheduler, but got no scheduler.".into(),
            ));
        }
        if milestones.len() != schedulers.len() - 1 {
            return Err(invalid(format!(
                "Sequential Schedulers expects number of schedulers provided to be one more \
                 than the number of milestone points, but got number of schedulers {} and the \
                 number of milestones to be equal to {}",
                schedulers.len(),
                milestones.len()
            )));
        }
        if milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(format!(
                "SequentialLr milestones must be strictly increasing, got {milestones:?}"
            )));
        }
        let initial = initial_lrs(optimizer);
        set_lrs(optimizer, &initial);
        let first = milestones.partition_point(|&m| m == 0);
        schedulers[first].restart(optimizer);
        let last_lrs = schedulers[first].last_lrs().to_vec();
        Ok(SequentialLr {
            schedulers,
            milestones,
            last_epoch: 0,
            last_lrs,
        })
    }

    /// The epochs at which the next scheduler takes over.
    pub fn milestones(&self) -> &[u64] {
        &self.milestones
    }
}

impl LrScheduler for SequentialLr {
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let epoch = self.last_epoch;
        let idx = self.milestones.partition_point(|&m| m <= epoch);
        let scheduler = &mut self.schedulers[idx];
        if idx > 0 && self.milestones[idx - 1] == epoch {
            scheduler.restart(optimizer);
        } else {
            scheduler.step(optimizer);
        }
        self.last_lrs = scheduler.last_lrs().to_vec();
    }

    /// Starts the sequence over, as at construction.
    fn restart(&mut self, optimizer: &mut dyn Optimizer) {
        let initial = initial_lrs(optimizer);
        set_lrs(optimizer, &initial);
        let first = self.milestones.partition_point(|&m| m == 0);
        self.schedulers[first].restart(optimizer);
        self.last_epoch = 0;
        self.last_lrs = self.schedulers[first].last_lrs().to_vec();
    }

    fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    fn state(&self) -> SchedulerState {
        SchedulerState::SequentialLr(SequentialLrState {
            milestones: self.milestones.clone(),
            last_epoch: self.last_epoch,
            last_lrs: self.last_lrs.clone(),
            schedulers: self.schedulers.iter().map(|s| s.state()).collect(),
        })
    }

    fn load_state(&mut self, state: &SchedulerState) -> Result<(), OptimError> {
        let SchedulerState::SequentialLr(s) = state else {
            return Err(kind_mismatch("SequentialLr", state));
        };
        if s.milestones != self.milestones || s.schedulers.len() != self.schedulers.len() {
            return Err(invalid(format!(
                "SequentialLr state has milestones {:?} over {} schedulers, this one {:?} over {}",
                s.milestones,
                s.schedulers.len(),
                self.milestones,
                self.schedulers.len()
            )));
        }
        // All or nothing: load into the schedulers, putting back the old states on failure.
        let old: Vec<SchedulerState> = self.schedulers.iter().map(|s| s.state()).collect();
        for (i, sub) in s.schedulers.iter().enumerate() {
            if let Err(e) = self.schedulers[i].load_state(sub) {
                for (sched, prev) in self.schedulers.iter_mut().zip(&old).take(i) {
                    sched.load_state(prev).expect("a state it exported itself");
                }
                return Err(e);
            }
        }
        self.last_epoch = s.last_epoch;
        self.last_lrs.clone_from(&s.last_lrs);
        Ok(())
    }
}
