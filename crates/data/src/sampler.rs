//! The distributed sampler: which samples each of `num_replicas` data-parallel ranks
//! serves in an epoch (PyTorch's `torch.utils.data.distributed.DistributedSampler`).
//!
//! Every rank draws the same permutation of the whole data set for an epoch (from the
//! seed and the epoch number alone, so no communication is needed), pads or trims it to
//! a multiple of the rank count, and takes every `num_replicas`-th index starting at its
//! rank. The shards are disjoint (but for the padding) and together cover the epoch, and
//! every rank has the same number of samples, so every rank runs the same number of
//! steps: a rank with one step more would wait forever in its gradient all-reduce.
//!
//! Because rank `r` of `N` takes positions `r, r + N, r + 2N, ...`, local batches of
//! `B / N` samples on every rank make global step `s` use exactly the positions
//! `s·B .. (s+1)·B` of the permutation whatever `N` is: a run can resume on another
//! number of ranks with the same global batch and see the same samples.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::DataError;

/// The shard of each epoch that one rank of a data-parallel job serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedSampler {
    len: usize,
    num_replicas: usize,
    rank: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    epoch: u64,
}

impl DistributedSampler {
    /// Rank `rank`'s shard of a data set of `len` samples split over `num_replicas`
    /// ranks; shuffled with seed 0 unless [`DistributedSampler::shuffle`] says otherwise
    /// (PyTorch's defaults: `shuffle=True, seed=0, drop_last=False`).
    pub fn new(len: usize, num_replicas: usize, rank: usize) -> Result<Self, DataError> {
        if num_replicas == 0 || rank >= num_replicas {
            return Err(DataError::InvalidArgument(format!(
                "DistributedSampler: invalid rank {rank}, rank should be in the interval [0, {}]",
                num_replicas as i64 - 1
            )));
        }
        if len == 0 {
            return Err(DataError::Empty {
                what: "the data set to shard (DistributedSampler)".into(),
            });
        }
        Ok(DistributedSampler {
            len,
            num_replicas,
            rank,
            shuffle: true,
            seed: 0,
            drop_last: false,
            epoch: 0,
        })
    }

    /// Whether to reshuffle every epoch, and from which seed. The seed must be the same
    /// on every rank.
    pub fn shuffle(mut self, shuffle: bool, seed: u64) -> Self {
        self.shuffle = shuffle;
        self.seed = seed;
        self
    }

    /// Drops the tail of the permutation that does not divide evenly over the ranks,
    /// instead of padding it with samples from the start (PyTorch's `drop_last`).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Selects the epoch whose permutation [`DistributedSampler::indices`] draws. A
    /// [`crate::DataLoader`] holding the sampler sets it from its own epoch counter.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The epoch set last.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This sampler's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks sharing the data.
    pub fn num_replicas(&self) -> usize {
        self.num_replicas
    }

    /// The shuffle seed (0 when not shuffling).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether epochs are reshuffled.
    pub fn is_shuffled(&self) -> bool {
        self.shuffle
    }

    /// The number of samples of the data set sharded.
    pub fn dataset_len(&self) -> usize {
        self.len
    }

    /// Samples per rank per epoch: `ceil(len / N)`, or `floor(len / N)` with `drop_last`.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.num_replicas
        } else {
            self.len.div_ceil(self.num_replicas)
        }
    }

    /// Samples over all ranks per epoch, padding included.
    pub fn total_size(&self) -> usize {
        self.num_samples() * self.num_replicas
    }

    /// The whole epoch's permutation of `0..len`, padded or trimmed to
    /// [`DistributedSampler::total_size`]: the same on every rank.
    pub fn global_indices(&self) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            // The DataLoader's per-epoch seeding, so one process with a shuffling loader
            // and N ranks with this sampler see the same permutation.
            indices.shuffle(&mut StdRng::seed_from_u64(epoch_seed(
                self.seed, self.epoch,
            )));
        }
        let total = self.total_size();
        if total <= indices.len() {
            indices.truncate(total);
        } else {
            // Repeat the permutation from its start as many times as needed (PyTorch pads
            // with `indices[:padding]`, repeated when the padding is longer than the data).
            let mut k = 0;
            while indices.len() < total {
                indices.push(indices[k]);
                k += 1;
            }
        }
        indices
    }

    /// This rank's sample indices for the current epoch: positions `rank, rank + N, ...`
    /// of [`DistributedSampler::global_indices`].
    pub fn indices(&self) -> Vec<usize> {
        self.global_indices()
            .into_iter()
            .skip(self.rank)
            .step_by(self.num_replicas)
            .collect()
    }
}

/// The seed of epoch `epoch`'s shuffle: a fresh generator per epoch, so the whole random
/// state to checkpoint is the epoch number.
pub(crate) fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
