//! Atomic file replacement: a save either leaves the new file or the old one, whole.
//!
//! The bytes go to a temporary file in the same folder (a rename is atomic only within
//! one file system), which is flushed and fsynced before it is renamed over the target;
//! then the folder is fsynced so the rename itself survives a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::IoError;

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| IoError::Io {
        path: path.display().to_string(),
        message: "not a file path".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.flush()?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Persist the rename; some platforms cannot open folders, which is not an error.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        IoError::io(path, e)
    })
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, IoError> {
    fs::read(path).map_err(|e| IoError::io(path, e))
}
