//! Metrics a training loop prints: classification accuracy (top-1 and top-k) and a
//! running mean of a per-batch value. They read tensors and record nothing on the tape.

use tapegrad_autograd::{Result, Tensor, TensorError};

/// Fraction of rows of `logits` (`[N, C]`, any scores) whose highest score is at the
/// target class; ties go to the lower class index, as `argmax` does.
///
/// ```
/// use tapegrad_autograd::Tensor;
/// use tapegrad_losses::metrics::{accuracy, top_k_accuracy};
///
/// let logits = Tensor::from_vec(vec![0.1, 0.7, 0.2, 0.5, 0.3, 0.2], &[2, 3])?;
/// assert_eq!(accuracy(&logits, &[1, 1])?, 0.5);
/// assert_eq!(top_k_accuracy(&logits, &[1, 1], 2)?, 1.0);
/// # Ok::<(), tapegrad_autograd::TensorError>(())
/// ```
pub fn accuracy(logits: &Tensor, targets: &[i64]) -> Result<f64> {
    top_k_accuracy(logits, targets, 1)
}

/// Fraction of rows whose target class is among the `k` highest scores (ranked as a
/// stable descending sort would: equal scores in class order).
pub fn top_k_accuracy(logits: &Tensor, targets: &[i64], k: usize) -> Result<f64> {
    let op = "top_k_accuracy";
    let &[n, c] = logits.shape() else {
        return Err(TensorError::InvalidArgument {
            op,
            reason: format!("expected logits of shape [N, C], got {:?}", logits.shape()),
        });
    };
    if targets.len() != n {
        return Err(TensorError::InvalidArgument {
            op,
            reason: format!("{n} rows of logits but {} targets", targets.len()),
        });
    }
    if k == 0 || n == 0 {
        return Err(TensorError::InvalidArgument {
            op,
            reason: format!("needs k ≥ 1 and at least one row, got k = {k} and {n} rows"),
        });
    }
    let data = logits.data();
    let mut correct = 0usize;
    for (row, &t) in data.chunks_exact(c).zip(targets) {
        let t = usize::try_from(t).ok().filter(|&t| t < c).ok_or_else(|| {
            TensorError::InvalidArgument {
                op,
                reason: format!("target {t} is out of bounds for {c} classes"),
            }
        })?;
        let score = row[t];
        let rank = row
            .iter()
            .enumerate()
            .filter(|&(j, &s)| s > score || (s == score && j < t))
            .count();
        if rank < k {
            correct += 1;
        }
    }
    Ok(correct as f64 / n as f64)
}

/// The mean of the values seen so far, weighted (e.g. by batch size) so that the mean
/// over an epoch of unequal batches is the mean over its samples.
///
/// ```
/// use tapegrad_losses::metrics::RunningMean;
///
/// let mut loss = RunningMean::new();
/// loss.add(0.5, 32); // a batch of 32 with mean loss 0.5
/// loss.add(2.0, 8);
/// assert_eq!(loss.mean(), 0.8);
/// assert_eq!(loss.count(), 40);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunningMean {
    sum: f64,
    count: u64,
}

impl RunningMean {
    /// Nothing seen yet.
    pub fn new() -> RunningMean {
        RunningMean::default()
    }

    /// Adds `value` with weight `count` (the number of samples it averages).
    pub fn add(&mut self, value: f64, count: usize) {
        self.sum += value * count as f64;
        self.count += count as u64;
    }

    /// The weighted mean so far; NaN before anything is added.
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// The total weight seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Starts over (at the start of an epoch).
    pub fn reset(&mut self) {
        *self = RunningMean::default();
    }
}
