//! The error type of the data crate.

use std::fmt;

use tapegrad_autograd::TensorError;

/// What went wrong reading or batching data. CSV errors name the line and column.
#[derive(Clone, PartialEq)]
pub enum DataError {
    /// The file could not be read.
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// No header line, or no data rows.
    Empty {
        /// What was empty.
        what: String,
    },
    /// A row with a different number of fields than the header.
    Ragged {
        /// 1-based line number.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields on this line.
        got: usize,
    },
    /// A field that is not a number.
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The offending text.
        text: String,
    },
    /// A byte sequence that is not UTF-8.
    InvalidUtf8 {
        /// 1-based line number.
        line: usize,
        /// 1-based column (field) number, counted as the other CSV errors count it.
        column: usize,
        /// 0-based offset of the first bad byte in the file.
        offset: usize,
        /// The first bad byte.
        byte: u8,
    },
    /// A parse error in a named file.
    InFile {
        /// The file.
        path: String,
        /// What was wrong, and where.
        error: Box<DataError>,
    },
    /// A bad argument (a batch size of 0, a split fraction outside [0, 1], ...).
    InvalidArgument(String),
    /// A tensor operation refused (mismatched sizes).
    Tensor(TensorError),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, message } => write!(f, "{path}: {message}"),
            DataError::Empty { what } => write!(f, "{what} is empty"),
            DataError::Ragged {
                line,
                expected,
                got,
            } => {
                write!(
                    f,
                    "line {line}: expected {expected} fields like the header, found {got}"
                )
            }
            DataError::NotANumber { line, column, text } => {
                write!(f, "line {line}, column {column}: {text:?} is not a number")
            }
            DataError::InvalidUtf8 {
                line,
                column,
                offset,
                byte,
            } => write!(
                f,
                "line {line}, column {column}: invalid UTF-8 (byte {byte:#04x} at offset {offset})"
            ),
            DataError::InFile { path, error } => write!(f, "{path}: {error}"),
            DataError::InvalidArgument(reason) => write!(f, "{reason}"),
            DataError::Tensor(e) => write!(f, "{e}"),
        }
    }
}

/// Debug prints the same sentence as Display: `?` in `main` shows an error with
/// `{:?}`, and a user should read the message there, not the fields it is built from.
impl fmt::Debug for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DataError {}

impl From<TensorError> for DataError {
    fn from(e: TensorError) -> Self {
        DataError::Tensor(e)
    }
}
