//! The error type of saving and loading.

use std::fmt;

/// What went wrong saving or loading; a bad file says which way it is bad.
#[derive(Clone, PartialEq)]
pub enum IoError {
    /// The operating system refused (missing file, permissions, full disk).
    Io {
        /// The file.
        path: String,
        /// The system's message.
        message: String,
    },
    /// The file does not start with tapegrad's magic bytes: not a checkpoint.
    BadMagic,
    /// A format version this build cannot read.
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build writes and reads.
        supported: u32,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// The payload's checksum does not match: the file was corrupted.
    ChecksumMismatch,
    /// The payload decodes to nonsense (or claims absurd sizes).
    Corrupt(String),
    /// A state that does not fit its target: each line names a parameter and why.
    Mismatch(Vec<String>),
    /// A safetensors file that cannot be read or written.
    Safetensors(String),
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Io { path, message } => write!(f, "{path}: {message}"),
            IoError::BadMagic => write!(f, "not a tapegrad file (bad magic bytes)"),
            IoError::UnsupportedVersion { found, supported } => {
                write!(f, "format version {found} is not supported (this build reads version {supported})")
            }
            IoError::Truncated { expected, got } => {
                write!(
                    f,
                    "truncated file: the header promises {expected} payload bytes, found {got}"
                )
            }
            IoError::ChecksumMismatch => {
                write!(f, "corrupted file: the payload checksum does not match")
            }
            IoError::Corrupt(reason) => write!(f, "corrupted file: {reason}"),
            IoError::Mismatch(lines) => write!(f, "state does not fit:\n  {}", lines.join("\n  ")),
            IoError::Safetensors(reason) => write!(f, "safetensors: {reason}"),
        }
    }
}

/// Debug prints the same sentence as Display: `?` in `main` shows an error with
/// `{:?}`, and a user should read the message there, not the fields it is built from.
impl fmt::Debug for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for IoError {}

impl IoError {
    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> IoError {
        IoError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
