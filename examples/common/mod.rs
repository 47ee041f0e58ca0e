//! What the examples share: where they write their outputs.
//!
//! Every example that writes files takes `--out DIR`. Without it, files go to the cargo
//! target directory: `$CARGO_TARGET_DIR` when that is set, else `target/` in the
//! repository, the folder `cargo run` itself builds into.

use std::path::PathBuf;

/// The folder named by `--out DIR` (or `--out=DIR`), else the default above; created if
/// missing.
pub fn out_dir() -> std::io::Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    let mut chosen = None;
    while let Some(arg) = args.next() {
        if arg == "--out" {
            chosen = args.next().map(PathBuf::from);
        } else if let Some(dir) = arg.strip_prefix("--out=") {
            chosen = Some(PathBuf::from(dir));
        }
    }
    let dir = chosen.unwrap_or_else(|| match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    });
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
