//! A whole training run in one file: the model's parameters, the optimizer's state,
//! the scheduler, the data loader's position and the loop counters. Restoring all of
//! them continues the run to the bit.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tapegrad_autograd::random;
use tapegrad_data::{DataLoader, LoaderState};
use tapegrad_nn::Module;
use tapegrad_optim::{
    CosineAnnealingLr, ExponentialLr, LinearLr, Optimizer, OptimizerState, StepLr,
};

use crate::atomic::{read_file, write_atomic};
use crate::error::IoError;
use crate::format;
use crate::state_dict::StateDict;

/// A learning-rate scheduler, whichever kind (schedulers are plain serialisable data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SchedulerState {
    /// A [`StepLr`].
    StepLr(StepLr),
    /// An [`ExponentialLr`].
    ExponentialLr(ExponentialLr),
    /// A [`CosineAnnealingLr`].
    CosineAnnealingLr(CosineAnnealingLr),
    /// A [`LinearLr`].
    LinearLr(LinearLr),
}

impl From<StepLr> for SchedulerState {
    fn from(s: StepLr) -> Self {
        SchedulerState::StepLr(s)
    }
}
impl From<ExponentialLr> for SchedulerState {
    fn from(s: ExponentialLr) -> Self {
        SchedulerState::ExponentialLr(s)
    }
}
impl From<CosineAnnealingLr> for SchedulerState {
    fn from(s: CosineAnnealingLr) -> Self {
        SchedulerState::CosineAnnealingLr(s)
    }
}
impl From<LinearLr> for SchedulerState {
    fn from(s: LinearLr) -> Self {
        SchedulerState::LinearLr(s)
    }
}

/// Everything a training loop needs to stop and resume exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The model's parameters by name.
    pub model: StateDict,
    /// The optimizer's hyper-parameters, step counts and buffers.
    pub optimizer: Option<OptimizerState>,
    /// The learning-rate scheduler.
    pub scheduler: Option<SchedulerState>,
    /// The data loader's position (seed, epoch, batch).
    pub loader: Option<LoaderState>,
    /// The training loop's epoch counter.
    pub epoch: u64,
    /// The training loop's step counter.
    pub step: u64,
    /// The default random generator's position when the checkpoint was taken
    /// (`tapegrad_autograd::random::RngState::to_bytes`): Dropout's masks come from it.
    pub rng_state: Vec<u8>,
}

impl Checkpoint {
    /// A checkpoint of the model's parameters and of the default random generator's
    /// position; add the rest with the `with_` methods.
    pub fn new(model: &dyn Module) -> Checkpoint {
        Checkpoint {
            model: StateDict::from_module(model),
            optimizer: None,
            scheduler: None,
            loader: None,
            epoch: 0,
            step: 0,
            rng_state: random::default_rng_state().to_bytes(),
        }
    }

    /// Adds the optimizer's state.
    pub fn with_optimizer(mut self, optimizer: &dyn Optimizer) -> Checkpoint {
        self.optimizer = Some(optimizer.state());
        self
    }

    /// Adds the scheduler.
    pub fn with_scheduler(mut self, scheduler: impl Into<SchedulerState>) -> Checkpoint {
        self.scheduler = Some(scheduler.into());
        self
    }

    /// Adds the data loader's position.
    pub fn with_loader(mut self, loader: &DataLoader) -> Checkpoint {
        self.loader = Some(loader.state());
        self
    }

    /// Records the loop counters.
    pub fn with_counters(mut self, epoch: u64, step: u64) -> Checkpoint {
        self.epoch = epoch;
        self.step = step;
        self
    }

    /// The file's bytes (see `docs/checkpoints.md`).
    pub fn to_bytes(&self) -> Result<Vec<u8>, IoError> {
        format::encode(self)
    }

    /// Decodes a file's bytes; any damage is an error saying which.
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, IoError> {
        format::decode(bytes)
    }

    /// Saves atomically: a crash mid-save leaves the previous file intact.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IoError> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads a checkpoint file.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, IoError> {
        Checkpoint::from_bytes(&read_file(path.as_ref())?)
    }

    /// Copies the saved parameters into `model` (all or nothing), and puts this thread's
    /// default random generator back where it was, so the model's random layers
    /// (Dropout) draw the masks an uninterrupted run would have drawn.
    pub fn restore_model(&self, model: &dyn Module) -> Result<(), IoError> {
        let rng = random::RngState::from_bytes(&self.rng_state)
            .map_err(|e| IoError::Corrupt(format!("random generator state: {e}")))?;
        self.model.load_into(model)?;
        random::set_default_rng_state(&rng);
        Ok(())
    }

    /// Loads the saved state into an optimizer of the same kind over the same shapes.
    pub fn restore_optimizer(&self, optimizer: &mut dyn Optimizer) -> Result<(), IoError> {
        let state = self
            .optimizer
            .as_ref()
            .ok_or_else(|| missing("optimizer"))?;
        optimizer
            .load_state(state)
            .map_err(|e| IoError::Mismatch(vec![e.to_string()]))
    }

    /// Moves a loader to the saved position.
    pub fn restore_loader(&self, loader: &mut DataLoader) -> Result<(), IoError> {
        let state = self.loader.ok_or_else(|| missing("data loader"))?;
        loader
            .load_state(state)
            .map_err(|e| IoError::Mismatch(vec![e.to_string()]))
    }
}

fn missing(what: &str) -> IoError {
    IoError::Mismatch(vec![format!("the checkpoint holds no {what} state")])
}
