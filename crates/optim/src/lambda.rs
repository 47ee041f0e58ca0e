//! `LambdaLr` (`torch.optim.lr_scheduler.LambdaLR`): the learning rate is the base lr
//! times a function of the epoch.

use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::scheduler::Progress;
use crate::scheduler_state::kind_mismatch;
use crate::{LrScheduler, OptimError, Optimizer, SchedulerState};

/// A multiplier of the base learning rate as a function of the epoch.
pub type LrLambda = Box<dyn Fn(u64) -> f64>;

/// `LambdaLR`: η_t = η₀·λ(t) for each group, λ a closure of the epoch t (0 at
/// construction). Not chainable: it ignores the current lr.
///
/// Its saved state is its progress (base lrs, epoch, last lrs), never the closure:
/// restore it into a `LambdaLr` built with the same closure.
///
/// ```
/// use tapegrad_autograd::Tensor;
/// use tapegrad_optim::*;
///
/// let w = Tensor::zeros(&[2]).with_requires_grad(true);
/// let mut opt = Sgd::new(vec![w], SgdConfig { lr: 0.1, ..Default::default() }).unwrap();
/// let mut sched = LambdaLr::new(&mut opt, |epoch| 0.5f64.powi(epoch as i32));
/// sched.step(&mut opt);
/// assert_eq!(opt.lr(), 0.05);
/// ```
pub struct LambdaLr {
    lambdas: Vec<LrLambda>,
    progress: Progress,
}

/// A [`LambdaLr`]'s saved progress (without its closures).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LambdaLrState {
    /// Every group's base learning rate (PyTorch's `initial_lr`).
    pub base_lrs: Vec<f64>,
    /// Steps taken so far.
    pub last_epoch: u64,
    /// Every group's learning rate as last set.
    pub last_lrs: Vec<f64>,
}

impl LambdaLr {
    /// One closure for every group; sets η₀·λ(0) at once.
    pub fn new(
        optimizer: &mut dyn Optimizer,
        lr_lambda: impl Fn(u64) -> f64 + 'static,
    ) -> LambdaLr {
        let lr_lambda: std::rc::Rc<dyn Fn(u64) -> f64> = std::rc::Rc::new(lr_lambda);
        let lambdas = (0..optimizer.num_groups())
            .map(|_| {
                let f = lr_lambda.clone();
                Box::new(move |epoch| f(epoch)) as LrLambda
            })
            .collect();
        LambdaLr::start(optimizer, lambdas)
    }

    /// One closure per group, in group order (PyTorch's list of `lr_lambda`s); an error
    /// unless there are as many as groups.
    pub fn with_lambdas(
        optimizer: &mut dyn Optimizer,
        lambdas: Vec<LrLambda>,
    ) -> Result<LambdaLr, OptimError> {
        if lambdas.len() != optimizer.num_groups() {
            return Err(invalid(format!(
                "Expected {} lr_lambdas, but got {}",
                optimizer.num_groups(),
                lambdas.len()
            )));
        }
        Ok(LambdaLr::start(optimizer, lambdas))
    }

    fn start(optimizer: &mut dyn Optimizer, lambdas: Vec<LrLambda>) -> LambdaLr {
        let mut sched = LambdaLr {
            lambdas,
            progress: Progress::start(optimizer, |lr| lr),
        };
        // The first lrs are η₀·λ(0), from the base lrs, not the current ones.
        sched.set(optimizer, 0);
        sched
    }

    #[track_caller]
    fn set(&mut self, optimizer: &mut dyn Optimizer, epoch: u64) {
        let lambdas = &self.lambdas;
        let mut group = 0;
        self.progress.set(optimizer, epoch, |epoch, _, base| {
            let lr = base * lambdas[group](epoch);
            group += 1;
            lr
        });
    }
}

impl LrScheduler for LambdaLr {
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        self.set(optimizer, self.progress.last_epoch + 1);
    }

    fn restart(&mut self, optimizer: &mut dyn Optimizer) {
        self.set(optimizer, 0);
    }

    fn last_lrs(&self) -> &[f64] {
        &self.progress.last_lrs
    }

    fn last_epoch(&self) -> u64 {
        self.progress.last_epoch
    }

    fn state(&self) -> SchedulerState {
        SchedulerState::LambdaLr(LambdaLrState {
            base_lrs: self.progress.base_lrs.clone(),
            last_epoch: self.progress.last_epoch,
            last_lrs: self.progress.last_lrs.clone(),
        })
    }

    fn load_state(&mut self, state: &SchedulerState) -> Result<(), OptimError> {
        let SchedulerState::LambdaLr(s) = state else {
            return Err(kind_mismatch("LambdaLr", state));
        };
        if s.base_lrs.len() != self.lambdas.len() || s.last_lrs.len() != self.lambdas.len() {
            return Err(invalid(format!(
                "LambdaLr state is for {} parameter groups, this one has {}",
                s.base_lrs.len(),
                self.lambdas.len()
            )));
        }
        self.progress = Progress {
            base_lrs: s.base_lrs.clone(),
            last_epoch: s.last_epoch,
            last_lrs: s.last_lrs.clone(),
        };
        Ok(())
    }
}
