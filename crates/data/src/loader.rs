//! The mini-batch loader: batches of a data set in order or reshuffled every epoch.
//!
//! The shuffle of epoch `e` is drawn from a generator seeded by `(seed, e)`, so the
//! loader's whole random state is its [`LoaderState`] (seed, epoch, position in the
//! epoch): saving it in a checkpoint and loading it resumes the exact batch sequence.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tapegrad_autograd::Tensor;

use crate::dataset::{class_indices, TensorDataset};
use crate::error::DataError;
use crate::sampler::{epoch_seed, DistributedSampler};
use crate::source::Dataset;

/// One mini-batch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Features of the batch's samples.
    pub x: Tensor,
    /// Their targets.
    pub y: Tensor,
}

impl Batch {
    /// Targets as class indices, for cross-entropy.
    pub fn class_targets(&self) -> Result<Vec<i64>, DataError> {
        class_indices(&self.y)
    }
}

/// Where a loader is: everything needed to continue its batch sequence exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// The shuffle seed.
    pub seed: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Batches already served in the current epoch.
    pub batch: u64,
}

/// Serves a data set in mini-batches (PyTorch's `DataLoader`, in-process): any
/// [`Dataset`], a [`TensorDataset`] by default.
pub struct DataLoader<D = TensorDataset> {
    dataset: D,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    sampler: Option<DistributedSampler>,
    state: LoaderState,
}

impl<D: Dataset> DataLoader<D> {
    /// Batches of `batch_size` in data-set order; see [`DataLoader::shuffle`].
    pub fn new(dataset: D, batch_size: usize) -> Result<DataLoader<D>, DataError> {
        if batch_size == 0 {
            return Err(DataError::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        Ok(DataLoader {
            dataset,
            batch_size,
            shuffle: false,
            drop_last: false,
            sampler: None,
            state: LoaderState {
                seed: 0,
                epoch: 0,
                batch: 0,
            },
        })
    }

    /// Reshuffles every epoch, from `seed`.
    pub fn shuffle(mut self, seed: u64) -> DataLoader<D> {
        self.shuffle = true;
        self.state.seed = seed;
        self
    }

    /// Serves only this rank's shard of each epoch, as a [`DistributedSampler`] picks it
    /// (PyTorch's `DataLoader(dataset, sampler=DistributedSampler(...))`). The sampler's
    /// shuffle replaces [`DataLoader::shuffle`]'s, and the loader sets its epoch from its
    /// own epoch counter, so there is no `set_epoch` call to forget and the
    /// [`LoaderState`] is still the whole position to checkpoint.
    pub fn with_sampler(mut self, sampler: DistributedSampler) -> Result<DataLoader<D>, DataError> {
        if sampler.dataset_len() != self.dataset.len() {
            return Err(DataError::InvalidArgument(format!(
                "DistributedSampler is for {} samples, the data set has {}",
                sampler.dataset_len(),
                self.dataset.len()
            )));
        }
        self.shuffle = sampler.is_shuffled();
        self.state.seed = sampler.seed();
        self.sampler = Some(sampler);
        Ok(self)
    }

    /// The sampler given to [`DataLoader::with_sampler`], if any.
    pub fn sampler(&self) -> Option<&DistributedSampler> {
        self.sampler.as_ref()
    }

    /// Samples served per epoch (this rank's shard with a sampler).
    pub fn samples_per_epoch(&self) -> usize {
        match &self.sampler {
            Some(sampler) => sampler.num_samples(),
            None => self.dataset.len(),
        }
    }

    /// Drops a last batch smaller than `batch_size`.
    pub fn drop_last(mut self, drop_last: bool) -> DataLoader<D> {
        self.drop_last = drop_last;
        self
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.samples_per_epoch();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The data set served.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The loader's position, for a checkpoint.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Continues from a saved position; the seed must be this loader's.
    pub fn load_state(&mut self, state: LoaderState) -> Result<(), DataError> {
        if self.shuffle && state.seed != self.state.seed {
            return Err(DataError::InvalidArgument(format!(
                "loader state was saved with shuffle seed {}, this loader uses {}",
                state.seed, self.state.seed
            )));
        }
        if state.batch as usize > self.batches_per_epoch() {
            return Err(DataError::InvalidArgument(format!(
                "loader state is at batch {} of an epoch that has {}",
                state.batch,
                self.batches_per_epoch()
            )));
        }
        self.state = state;
        Ok(())
    }

    /// The sample order of the current epoch.
    fn order(&mut self) -> Vec<usize> {
        if let Some(sampler) = &mut self.sampler {
            sampler.set_epoch(self.state.epoch);
            return sampler.indices();
        }
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            // A fresh generator per epoch: the state to save is just the epoch number.
            let seed = epoch_seed(self.state.seed, self.state.epoch);
            order.shuffle(&mut StdRng::seed_from_u64(seed));
        }
        order
    }

    /// The remaining batches of the current epoch; when they run out the loader moves
    /// on to the next epoch.
    pub fn epoch(&mut self) -> Epoch<'_, D> {
        let order = self.order();
        Epoch {
            loader: self,
            order,
        }
    }
}

/// Iterator over one epoch's batches (see [`DataLoader::epoch`]). A sample the data set
/// fails to produce panics with the data set's error, as a failing `__getitem__` raises
/// in PyTorch.
pub struct Epoch<'a, D = TensorDataset> {
    loader: &'a mut DataLoader<D>,
    order: Vec<usize>,
}

impl<D: Dataset> Iterator for Epoch<'_, D> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let state = &mut self.loader.state;
        let start = state.batch as usize * self.loader.batch_size;
        let end = (start + self.loader.batch_size).min(self.order.len());
        let short = end.saturating_sub(start) < self.loader.batch_size;
        if start >= self.order.len() || (short && self.loader.drop_last) {
            state.epoch += 1;
            state.batch = 0;
            return None;
        }
        state.batch += 1;
        let indices = &self.order[start..end];
        match self.loader.dataset.get_batch(indices) {
            Ok(batch) => Some(batch),
            Err(e) => panic!("DataLoader: the samples {indices:?} could not be loaded: {e}"),
        }
    }
}
