//! The one error type of the tensor library.
//!
//! Every fallible operation has a `try_` form returning [`Result`]; the panicking
//! forms (`a + b`, `a.matmul(&b)`) print the same message. Messages name the op
//! and the shapes involved, so a user can find the bad line without a debugger.

use std::fmt;

/// What went wrong in a tensor operation.
#[derive(Clone, PartialEq)]
pub enum TensorError {
    /// Two operands whose shapes do not fit together, e.g. `matmul: cannot multiply [3, 4] by [5, 2]`.
    ShapeMismatch {
        /// The op that refused, e.g. `"matmul"`.
        op: &'static str,
        /// The left operand's shape.
        lhs: Vec<usize>,
        /// The right operand's shape.
        rhs: Vec<usize>,
        /// The complaint, with `{}` where the two shapes go, e.g. `"cannot multiply {} by {}"`.
        detail: &'static str,
    },
    /// A data buffer whose length does not match the shape it was given.
    LengthMismatch {
        /// The op or constructor that refused.
        op: &'static str,
        /// Elements the shape asks for.
        expected: usize,
        /// Elements provided.
        got: usize,
    },
    /// An axis outside the tensor's rank.
    AxisOutOfRange {
        /// The op that refused.
        op: &'static str,
        /// The axis given.
        axis: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index outside the extent of the axis it selects from.
    IndexOutOfRange {
        /// The op that refused.
        op: &'static str,
        /// The index given.
        index: usize,
        /// The axis length.
        len: usize,
    },
    /// A value argument the op cannot accept (an empty concat, a bad rank, ...).
    InvalidArgument {
        /// The op that refused.
        op: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// `backward()` on something the tape cannot differentiate.
    Backward(String),
    /// A shape with more elements than one buffer can hold: the product of its extents
    /// (zeros counted as ones, so that every stride fits too) exceeds
    /// [`crate::shape::MAX_ELEMENTS`] or overflows `usize`.
    ShapeTooLarge {
        /// The op or constructor that refused.
        op: &'static str,
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// The allocator could not provide a buffer of this many bytes.
    OutOfMemory {
        /// The op or constructor that asked.
        op: &'static str,
        /// Elements asked for.
        elements: usize,
    },
    /// An error inside a module, with which module and the caller's line, e.g.
    /// `src/main.rs:9:17: Sequential[2] (Linear 10 → 5): linear: ...`.
    InModule {
        /// The failing module's place and kind, e.g. `Sequential[2] (Linear 10 → 5)`.
        module: String,
        /// Where the user called the container.
        location: &'static std::panic::Location<'static>,
        /// The error the module returned.
        source: Box<TensorError>,
    },
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorError::ShapeMismatch {
                op,
                lhs,
                rhs,
                detail,
            } => {
                let text = detail.replacen("{}", &format!("{lhs:?}"), 1).replacen(
                    "{}",
                    &format!("{rhs:?}"),
                    1,
                );
                write!(f, "{op}: {text}")
            }
            TensorError::LengthMismatch { op, expected, got } => write!(
                f,
                "{op}: shape needs {expected} elements but the data has {got}"
            ),
            TensorError::AxisOutOfRange { op, axis, rank } => {
                write!(
                    f,
                    "{op}: axis {axis} is out of range for a tensor of rank {rank}"
                )
            }
            TensorError::IndexOutOfRange { op, index, len } => {
                write!(
                    f,
                    "{op}: index {index} is out of range for an axis of length {len}"
                )
            }
            TensorError::InvalidArgument { op, reason } => write!(f, "{op}: {reason}"),
            TensorError::Backward(reason) => write!(f, "backward: {reason}"),
            TensorError::ShapeTooLarge { op, shape } => write!(
                f,
                "{op}: shape {shape:?} is too large: the product of its extents overflows \
                 (at most {} elements fit in one buffer)",
                crate::shape::MAX_ELEMENTS
            ),
            TensorError::OutOfMemory { op, elements } => write!(
                f,
                "{op}: out of memory: cannot allocate {elements} elements ({} bytes)",
                (*elements as u128) * 4
            ),
            TensorError::InModule {
                module,
                location,
                source,
            } => write!(f, "{location}: {module}: {source}"),
        }
    }
}

/// Debug prints the same sentence as Display: `?` in `main` shows an error with
/// `{:?}`, and a user should read the message there, not the fields it is built from.
impl fmt::Debug for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for TensorError {}

/// Result of a fallible tensor operation.
pub type Result<T> = std::result::Result<T, TensorError>;

/// Unwraps a `try_` result for a panicking API (`a + b`, `criterion.forward`), with
/// the error's message and the caller's line, PyTorch-style. Used by every crate's
/// panicking forms so they all fail the same way.
#[track_caller]
pub fn or_panic<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}
