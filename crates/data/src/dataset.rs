//! In-memory data sets: features and targets as tensors whose first axis is the sample.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tapegrad_autograd::{no_grad, Tensor};

use crate::csv::Table;
use crate::error::DataError;
use crate::loader::Batch;
use crate::source::Dataset;

/// Samples as rows: `features[i]` goes with `targets[i]` (PyTorch's `TensorDataset`).
#[derive(Clone, Debug)]
pub struct TensorDataset {
    /// `[N, ...]`.
    pub features: Tensor,
    /// `[N, ...]`; class labels are stored as whole numbers.
    pub targets: Tensor,
}

impl TensorDataset {
    /// Pairs features and targets; their first axes must agree.
    pub fn new(features: Tensor, targets: Tensor) -> Result<TensorDataset, DataError> {
        let n = |t: &Tensor| t.shape().first().copied();
        if n(&features).is_none() || n(&features) != n(&targets) {
            return Err(DataError::InvalidArgument(format!(
                "features {:?} and targets {:?} must have the same number of samples along axis 0",
                features.shape(),
                targets.shape()
            )));
        }
        Ok(TensorDataset { features, targets })
    }

    /// Features from all columns but the last, targets `[N, 1]` from the last.
    pub fn from_table(table: &Table) -> Result<TensorDataset, DataError> {
        if table.cols() < 2 {
            return Err(DataError::InvalidArgument(
                "a table needs a feature column and a target column".into(),
            ));
        }
        let (features, targets) = table.split_last_column();
        let n = table.rows();
        TensorDataset::new(
            Tensor::from_vec(features, &[n, table.cols() - 1])?,
            Tensor::from_vec(targets, &[n, 1])?,
        )
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.features.shape()[0]
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<TensorDataset, DataError> {
        no_grad(|| {
            Ok(TensorDataset {
                features: self.features.try_index_select(0, indices)?,
                targets: self.targets.try_index_select(0, indices)?,
            })
        })
    }

    /// Targets as class indices (they must be whole numbers), e.g. for cross-entropy.
    pub fn class_targets(&self) -> Result<Vec<i64>, DataError> {
        class_indices(&self.targets)
    }
}

/// Samples are rows of the two tensors; a batch is one gather per tensor.
impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        TensorDataset::len(self)
    }

    fn get(&self, index: usize) -> Result<(Tensor, Tensor), DataError> {
        let row = |t: &Tensor| -> Result<Tensor, DataError> {
            let row = no_grad(|| t.try_index_select(0, &[index]))?;
            Ok(row.try_reshape(&t.shape()[1..])?)
        };
        Ok((row(&self.features)?, row(&self.targets)?))
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Batch, DataError> {
        let part = self.subset(indices)?;
        Ok(Batch {
            x: part.features,
            y: part.targets,
        })
    }
}

/// Whole-number values of a tensor as `i64` class indices.
pub(crate) fn class_indices(t: &Tensor) -> Result<Vec<i64>, DataError> {
    t.data()
        .iter()
        .map(|&v| {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                Ok(v as i64)
            } else {
                Err(DataError::InvalidArgument(format!(
                    "class target {v} is not a whole number"
                )))
            }
        })
        .collect()
}

/// Row indices `0..n` shuffled by `seed` and cut into (train, test), with
/// `round(n · test_fraction)` rows in test.
pub fn train_test_split(
    n: usize,
    test_fraction: f32,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(DataError::InvalidArgument(format!(
            "test_fraction must be in [0, 1], got {test_fraction}"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let test_len = (n as f32 * test_fraction).round() as usize;
    let train = order.split_off(test_len);
    Ok((train, order))
}

/// Per-column mean and standard deviation (population, like scikit-learn's
/// `StandardScaler`), fitted on one set and applied to any.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f32>,
    /// Column standard deviations (1 where a column is constant).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits on the columns of a `[N, D]` tensor.
    pub fn fit(x: &Tensor) -> Result<Standardizer, DataError> {
        let [n, d] = *x.shape() else {
            return Err(DataError::InvalidArgument(format!(
                "Standardizer needs [N, D] data, got {:?}",
                x.shape()
            )));
        };
        if n == 0 {
            return Err(DataError::Empty {
                what: "the data to standardise".into(),
            });
        }
        let data = x.data();
        let mut mean = vec![0.0f64; d];
        for row in data.chunks_exact(d) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0f64; d];
        for row in data.chunks_exact(d) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|s| (s / n as f64).sqrt())
            .map(|s| if s > 0.0 { s as f32 } else { 1.0 })
            .collect();
        Ok(Standardizer {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        })
    }

    /// (x − mean) / std, column-wise, as a new tensor.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor, DataError> {
        let d = self.mean.len();
        if x.shape().last() != Some(&d) || x.rank() != 2 {
            return Err(DataError::InvalidArgument(format!(
                "Standardizer was fitted on {d} columns, got data of shape {:?}",
                x.shape()
            )));
        }
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
        Ok(Tensor::from_vec(out, x.shape())?)
    }
}
