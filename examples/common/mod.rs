//! What the examples share: where they write their outputs, and how a classifier is scored.
//!
//! Every example that writes files takes `--out DIR`. Without it, files go to the cargo
//! target directory: `$CARGO_TARGET_DIR` when that is set, else `target/` in the
//! repository, the folder `cargo run` itself builds into.

#![allow(dead_code)] // each example uses its own subset

use std::path::PathBuf;

use tapegrad::nn::Module;
use tapegrad::{no_grad, Tensor};

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

/// How many rows of `x` the network classifies as `labels` says (arg-max of its output,
/// evaluated without recording a graph).
pub fn correct_predictions(net: &dyn Module, x: &Tensor, labels: &[i64]) -> usize {
    let predicted = no_grad(|| net.forward(x)).argmax_axis(1);
    predicted
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p as i64 == **y)
        .count()
}

/// The fraction of rows of `x` classified as `labels` says.
pub fn accuracy(net: &dyn Module, x: &Tensor, labels: &[i64]) -> f32 {
    correct_predictions(net, x, labels) as f32 / labels.len() as f32
}
