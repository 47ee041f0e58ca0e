//! The `DataLoader` over any `Dataset`: a hand-written one batches exactly as the same
//! samples in a `TensorDataset`, shuffled or not, and a sample of the wrong shape is a
//! clear error.

use tapegrad_autograd::Tensor;
use tapegrad_data::{DataError, DataLoader, Dataset, TensorDataset};

/// Sample i: features [i, i + 0.5, -i], target [i mod 3].
struct Generated {
    n: usize,
}

fn features(i: usize) -> Vec<f32> {
    let x = i as f32;
    vec![x, x + 0.5, -x]
}

impl Dataset for Generated {
    fn len(&self) -> usize {
        self.n
    }

    fn get(&self, index: usize) -> Result<(Tensor, Tensor), DataError> {
        Ok((
            Tensor::from_vec(features(index), &[3])?,
            Tensor::from_vec(vec![(index % 3) as f32], &[1])?,
        ))
    }
}

fn as_tensors(n: usize) -> TensorDataset {
    TensorDataset::new(
        Tensor::from_vec((0..n).flat_map(features).collect(), &[n, 3]).unwrap(),
        Tensor::from_vec((0..n).map(|i| (i % 3) as f32).collect(), &[n, 1]).unwrap(),
    )
    .unwrap()
}

fn epochs<D: Dataset>(
    loader: &mut DataLoader<D>,
    n: usize,
) -> Vec<(Vec<usize>, Vec<f32>, Vec<f32>)> {
    (0..n)
        .flat_map(|_| {
            loader
                .epoch()
                .map(|b| (b.x.shape().to_vec(), b.x.to_vec(), b.y.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn any_dataset_batches_like_a_tensor_dataset() {
    let mut custom = DataLoader::new(Generated { n: 11 }, 4).unwrap().shuffle(7);
    let mut tensors = DataLoader::new(as_tensors(11), 4).unwrap().shuffle(7);
    let a = epochs(&mut custom, 3);
    assert_eq!(a, epochs(&mut tensors, 3));
    assert_eq!(a.len(), 9);
    assert_eq!(a[2].0, [3, 3]);
    assert_eq!(custom.state(), tensors.state());
    assert_eq!(custom.dataset().len(), 11);
}

#[test]
fn tensor_dataset_get_is_one_row_without_the_batch_axis() {
    let data = as_tensors(5);
    let (x, y) = Dataset::get(&data, 4).unwrap();
    assert_eq!(x.shape(), &[3]);
    assert_eq!(x.to_vec(), features(4));
    assert_eq!(y.to_vec(), [1.0]);
    assert!(Dataset::get(&data, 5).is_err());
}

struct Ragged;

impl Dataset for Ragged {
    fn len(&self) -> usize {
        2
    }

    fn get(&self, index: usize) -> Result<(Tensor, Tensor), DataError> {
        Ok((Tensor::zeros(&[index + 1]), Tensor::zeros(&[1])))
    }
}

#[test]
fn samples_of_different_shapes_do_not_batch() {
    let err = Ragged.get_batch(&[0, 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot batch features: sample 0 has shape [1], sample 1 has [2]"
    );
}

#[test]
#[should_panic(
    expected = "DataLoader: the samples [0, 1] could not be loaded: cannot batch features"
)]
fn the_loader_panics_with_the_datasets_error() {
    let mut loader = DataLoader::new(Ragged, 2).unwrap();
    loader.epoch().for_each(drop);
}
