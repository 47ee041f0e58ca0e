//! Atomic file replacement: a save either leaves the new file or the old one, whole.
//!
//! The bytes go to a temporary file in the same folder (a rename is atomic only within
//! one file system), which is flushed and fsynced before it is renamed over the target;
//! then the folder is fsynced so the rename itself survives a power cut.
//!
//! The temporary is `.<name>.tmp-<pid>`. A save killed before its rename leaves that
//! file behind, so each save first removes the temporaries of earlier saves to the same
//! target whose process no longer runs (see [`remove_stale_temporaries`]).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

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
    remove_stale_temporaries(dir, name);
    let tmp = dir.join(format!("{}{}", temp_prefix(name), std::process::id()));
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

/// The temporary files of saves to `name` are called this, then the saver's pid.
fn temp_prefix(name: &OsStr) -> String {
    format!(".{}.tmp-", name.to_string_lossy())
}

/// A temporary this old, whose process is gone, is surely abandoned: the age guard
/// keeps a save from deleting the live temporary of a process it cannot see (another
/// PID namespace or another machine sharing the folder), which keeps writing to it.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(60);

/// Removes the temporaries of earlier saves to `dir/name` that were killed before
/// their rename: files `.<name>.tmp-<pid>` whose process no longer runs on this
/// machine and which have not been written for [`STALE_AFTER`]. Liveness is read from
/// `/proc/<pid>`, so elsewhere than Linux (no `/proc`) nothing is removed. Errors are
/// ignored: cleaning up must never make a save fail.
pub(crate) fn remove_stale_temporaries(dir: &Path, name: &OsStr) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let idle = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        if idle.is_some_and(|idle| idle >= STALE_AFTER) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, IoError> {
    fs::read(path).map_err(|e| IoError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_removes_the_abandoned_temporaries_of_dead_savers_only() {
        if !Path::new("/proc/self").exists() {
            return; // Nothing is removed without /proc (documented).
        }
        let dir = std::env::temp_dir().join(format!("tapegrad-stale-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("run.ckpt");
        // pid 0 is never a user process, and /proc/0 does not exist.
        let old = SystemTime::now() - 2 * STALE_AFTER;
        let make = |file: &str, modified: SystemTime| {
            let path = dir.join(file);
            let f = File::create(&path).unwrap();
            f.set_modified(modified).unwrap();
            path
        };
        let dead_and_old = make(".run.ckpt.tmp-0", old);
        let dead_but_fresh = make(".run.ckpt.tmp-4294967295", SystemTime::now());
        let alive = make(".run.ckpt.tmp-1", old); // init
        let other_target = make(".other.ckpt.tmp-0", old);
        let not_ours = make(".run.ckpt.tmp-notapid", old);
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(!dead_and_old.exists(), "a dead saver's old temporary stays");
        for kept in [&dead_but_fresh, &alive, &other_target, &not_ours] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
