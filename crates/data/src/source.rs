//! The `Dataset` trait (PyTorch's map-style `torch.utils.data.Dataset`): a length and
//! one sample by index. The `DataLoader` batches any implementation.

use tapegrad_autograd::Tensor;

use crate::error::DataError;
use crate::loader::Batch;

/// A map-style data set: `len` samples, each a pair (features, target) of tensors
/// without the batch axis. The loader stacks samples into batches along a new first
/// axis, so every sample's features (and every target) must have one shape.
///
/// ```
/// use tapegrad_autograd::Tensor;
/// use tapegrad_data::{DataError, DataLoader, Dataset};
///
/// /// y = 2x, generated on demand.
/// struct Doubles(usize);
///
/// impl Dataset for Doubles {
///     fn len(&self) -> usize {
///         self.0
///     }
///     fn get(&self, index: usize) -> Result<(Tensor, Tensor), DataError> {
///         let x = index as f32;
///         Ok((Tensor::from_vec(vec![x], &[1])?, Tensor::from_vec(vec![2.0 * x], &[1])?))
///     }
/// }
///
/// let mut loader = DataLoader::new(Doubles(5), 2)?;
/// let shapes: Vec<Vec<usize>> = loader.epoch().map(|b| b.x.shape().to_vec()).collect();
/// assert_eq!(shapes, [vec![2, 1], vec![2, 1], vec![1, 1]]);
/// # Ok::<(), DataError>(())
/// ```
pub trait Dataset {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` (`0 ≤ index < len`): its features and its target.
    fn get(&self, index: usize) -> Result<(Tensor, Tensor), DataError>;

    /// The samples at `indices`, stacked along a new first axis. The default calls
    /// [`Dataset::get`] per index; a data set held as whole tensors overrides it with
    /// one gather.
    fn get_batch(&self, indices: &[usize]) -> Result<Batch, DataError> {
        let mut xs = Vec::with_capacity(indices.len());
        let mut ys = Vec::with_capacity(indices.len());
        for &i in indices {
            let (x, y) = self.get(i)?;
            xs.push(x);
            ys.push(y);
        }
        Ok(Batch {
            x: stack(&xs, "features")?,
            y: stack(&ys, "targets")?,
        })
    }
}

/// Copies same-shaped samples into one `[n, ...]` tensor (data loading records no graph).
fn stack(samples: &[Tensor], what: &str) -> Result<Tensor, DataError> {
    let Some(first) = samples.first() else {
        return Err(DataError::Empty {
            what: format!("a batch's {what}"),
        });
    };
    let shape = first.shape().to_vec();
    let mut data = Vec::with_capacity(samples.len() * first.numel());
    for (i, s) in samples.iter().enumerate() {
        if s.shape() != shape.as_slice() {
            return Err(DataError::InvalidArgument(format!(
                "cannot batch {what}: sample 0 has shape {shape:?}, sample {i} has {:?}",
                s.shape()
            )));
        }
        data.extend_from_slice(&s.data());
    }
    let mut batch_shape = vec![samples.len()];
    batch_shape.extend_from_slice(&shape);
    Ok(Tensor::from_vec(data, &batch_shape)?)
}
