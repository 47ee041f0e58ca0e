//! The optimizer crate's error type and the hyper-parameter checks every constructor shares.

use std::fmt;

/// Why an optimizer or scheduler could not be built, or a saved state could not be loaded.
#[derive(Clone, PartialEq)]
pub enum OptimError {
    /// A hyper-parameter outside its valid range; the message names the value,
    /// worded as PyTorch words it (e.g. "Invalid learning rate: -0.1").
    InvalidHyperParameter(String),
    /// An optimizer was given no parameters to optimize.
    EmptyParameters,
    /// A saved state belongs to another kind of optimizer.
    KindMismatch {
        /// The kind of the optimizer loading the state.
        expected: String,
        /// The kind recorded in the state.
        found: String,
    },
    /// A saved state holds a different number of parameters than the optimizer.
    ParamCountMismatch {
        /// Parameters held by the optimizer.
        expected: usize,
        /// Entries in the state.
        found: usize,
    },
    /// A saved state lacks a per-parameter buffer its configuration needs, or has one
    /// it does not use.
    BufferSet {
        /// The buffer's name (e.g. `exp_avg`).
        buffer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same parameter tensor was given twice: in two groups, or twice in one group
    /// (it would be updated twice per step).
    DuplicateParameter {
        /// The group and the position in it of the first occurrence.
        first: (usize, usize),
        /// The group and the position in it of the repeat.
        second: (usize, usize),
        /// The parameter's shape.
        shape: Vec<usize>,
    },
    /// A saved state has a different number of parameter groups than the optimizer.
    GroupCountMismatch {
        /// Groups of the optimizer.
        expected: usize,
        /// Groups in the state.
        found: usize,
    },
    /// A saved state's parameter group holds a different number of parameters than the
    /// optimizer's group of the same index.
    GroupSizeMismatch {
        /// The group's index.
        group: usize,
        /// Parameters in the optimizer's group.
        expected: usize,
        /// Parameters in the state's group.
        found: usize,
    },
    /// A saved buffer's length differs from its parameter's number of elements.
    BufferLength {
        /// The buffer's name.
        buffer: String,
        /// Position of the parameter in the optimizer's list.
        param: usize,
        /// The parameter's number of elements.
        expected: usize,
        /// The buffer's length.
        found: usize,
    },
    /// `clip_grad_norm_with(.., error_if_nonfinite = true)` met a NaN or infinite norm.
    NonFiniteGradNorm {
        /// The norm's order.
        norm_type: f32,
        /// The total norm found.
        total_norm: f32,
    },
}

impl fmt::Display for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptimError::InvalidHyperParameter(msg) => f.write_str(msg),
            OptimError::EmptyParameters => f.write_str("optimizer got an empty parameter list"),
            OptimError::KindMismatch { expected, found } => {
                write!(
                    f,
                    "state is for an optimizer of kind {found}, this one is {expected}"
                )
            }
            OptimError::ParamCountMismatch { expected, found } => write!(
                f,
                "state holds {found} parameters but the optimizer has {expected}"
            ),
            OptimError::BufferSet { buffer, reason } => {
                write!(f, "state buffer `{buffer}`: {reason}")
            }
            OptimError::DuplicateParameter {
                first,
                second,
                shape,
            } => write!(
                f,
                "parameter {} of group {} (shape {shape:?}) is also parameter {} of group {}: \
                 a parameter may appear in one parameter group only, and once",
                second.1, second.0, first.1, first.0
            ),
            OptimError::GroupCountMismatch { expected, found } => write!(
                f,
                "state holds {found} parameter groups but the optimizer has {expected}"
            ),
            OptimError::GroupSizeMismatch {
                group,
                expected,
                found,
            } => write!(
                f,
                "state's parameter group {group} holds {found} parameters but the \
                 optimizer's has {expected}"
            ),
            OptimError::BufferLength {
                buffer,
                param,
                expected,
                found,
            } => write!(
                f,
                "state buffer `{buffer}` for parameter {param} has {found} elements, \
                 the parameter has {expected}"
            ),
            OptimError::NonFiniteGradNorm {
                norm_type,
                total_norm,
            } => write!(
                f,
                "the total norm of order {norm_type} of the gradients is {total_norm}, so it \
                 cannot be clipped; the gradients were left unchanged (pass \
                 error_if_nonfinite = false to scale them by it anyway)"
            ),
        }
    }
}

/// Debug prints the same sentence as Display: `?` in `main` shows an error with
/// `{:?}`, and a user should read the message there, not the fields it is built from.
impl fmt::Debug for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for OptimError {}

/// Fails unless `0 <= value < ∞` (NaN fails too), with PyTorch's message
/// `Invalid {what}: {value}`. PyTorch lets an infinite learning rate through; no
/// hyper-parameter checked here has a use for infinity, and an infinite learning rate
/// turns every parameter into NaN or infinity on the first step.
pub(crate) fn non_negative(what: &str, value: f64) -> Result<(), OptimError> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(invalid(format!("Invalid {what}: {value}")))
    }
}

/// The check of a new learning rate: finite and non-negative, as constructors require.
pub(crate) fn check_lr(lr: f64) -> Result<(), OptimError> {
    non_negative("learning rate", lr)
}

/// What every `set_lr` does first: panics with the checked message (naming the value)
/// rather than let NaN or infinity into the parameters; see `Optimizer::try_set_lr`.
#[track_caller]
pub(crate) fn or_panic_lr(lr: f64) {
    if let Err(e) = check_lr(lr) {
        panic!("set_lr: {e}");
    }
}

/// What a scheduler's per-group rate must be: finite. (It may go below zero: a linear
/// one-cycle schedule ends slightly negative, as PyTorch's does.)
#[track_caller]
pub(crate) fn or_panic_nonfinite_lr(lr: f64) {
    if !lr.is_finite() {
        panic!("set_group_lr: Invalid learning rate: {lr}");
    }
}

/// Shorthand for an [`OptimError::InvalidHyperParameter`].
pub(crate) fn invalid(message: String) -> OptimError {
    OptimError::InvalidHyperParameter(message)
}
