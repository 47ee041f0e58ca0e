//! [`SchedulerState`]: any scheduler's saved progress, one serde enum so that a checkpoint
//! holds whichever kind a training run uses.

use serde::{Deserialize, Serialize};

use crate::{
    CosineAnnealingLr, ExponentialLr, LambdaLrState, LinearLr, OneCycleLr, OptimError,
    ReduceLrOnPlateau, SequentialLrState, StepLr,
};

/// A learning-rate scheduler's saved state, whichever kind. The plain-data schedulers
/// are stored whole; [`crate::LambdaLr`] and [`crate::SequentialLr`] store their progress
/// only (closures and boxed schedulers do not serialise), so they are restored into a
/// scheduler built the same way with `load_state`.
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
    /// A [`crate::SequentialLr`]'s progress and its schedulers' states.
    SequentialLr(SequentialLrState),
    /// A [`OneCycleLr`].
    OneCycleLr(OneCycleLr),
    /// A [`crate::LambdaLr`]'s progress (the closure is not saved).
    LambdaLr(LambdaLrState),
    /// A [`ReduceLrOnPlateau`].
    ReduceLrOnPlateau(ReduceLrOnPlateau),
}

impl SchedulerState {
    /// The scheduler kind's name, as its Rust type is called.
    pub fn kind(&self) -> &'static str {
        match self {
            SchedulerState::StepLr(_) => "StepLr",
            SchedulerState::ExponentialLr(_) => "ExponentialLr",
            SchedulerState::CosineAnnealingLr(_) => "CosineAnnealingLr",
            SchedulerState::LinearLr(_) => "LinearLr",
            SchedulerState::SequentialLr(_) => "SequentialLr",
            SchedulerState::OneCycleLr(_) => "OneCycleLr",
            SchedulerState::LambdaLr(_) => "LambdaLr",
            SchedulerState::ReduceLrOnPlateau(_) => "ReduceLrOnPlateau",
        }
    }
}

/// The error for a state of another scheduler kind.
pub(crate) fn kind_mismatch(expected: &str, state: &SchedulerState) -> OptimError {
    OptimError::KindMismatch {
        expected: expected.to_string(),
        found: state.kind().to_string(),
    }
}

macro_rules! from_plain {
    ($($ty:ident),*) => {$(
        impl From<$ty> for SchedulerState {
            fn from(s: $ty) -> Self {
                SchedulerState::$ty(s)
            }
        }
    )*};
}
from_plain!(
    StepLr,
    ExponentialLr,
    CosineAnnealingLr,
    LinearLr,
    OneCycleLr,
    ReduceLrOnPlateau
);
