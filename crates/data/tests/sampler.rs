//! The distributed sampler: disjoint shards of one permutation per epoch, PyTorch's
//! padding, and a loader state that resumes on the same or another number of ranks.

use std::collections::BTreeSet;

use tapegrad_autograd::Tensor;
use tapegrad_data::{DataLoader, DistributedSampler, TensorDataset};

fn shards(len: usize, n: usize, epoch: u64, drop_last: bool) -> Vec<Vec<usize>> {
    (0..n)
        .map(|r| {
            let mut s = DistributedSampler::new(len, n, r)
                .unwrap()
                .shuffle(true, 7)
                .drop_last(drop_last);
            s.set_epoch(epoch);
            s.indices()
        })
        .collect()
}

#[test]
fn shards_are_disjoint_equal_and_cover_the_epoch_with_padding() {
    let parts = shards(10, 3, 0, false);
    assert!(parts.iter().all(|p| p.len() == 4), "{parts:?}");
    let all: Vec<usize> = parts.concat();
    let distinct: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(distinct, (0..10).collect());
    // 12 slots for 10 samples: exactly two are repeated, and they are the permutation's
    // first two (PyTorch pads with `indices[:padding]`).
    let global = DistributedSampler::new(10, 3, 0)
        .unwrap()
        .shuffle(true, 7)
        .global_indices();
    assert_eq!(global.len(), 12);
    assert_eq!(&global[10..], &global[..2]);
}

#[test]
fn drop_last_trims_instead_of_padding() {
    let parts = shards(10, 3, 0, true);
    assert!(parts.iter().all(|p| p.len() == 3));
    let distinct: BTreeSet<usize> = parts.concat().into_iter().collect();
    assert_eq!(distinct.len(), 9);
}

#[test]
fn padding_longer_than_the_data_repeats_it() {
    let s = DistributedSampler::new(2, 5, 0).unwrap().shuffle(false, 0);
    assert_eq!(s.global_indices(), vec![0, 1, 0, 1, 0]);
    assert_eq!(s.num_samples(), 1);
}

#[test]
fn unshuffled_matches_pytorch() {
    // list(DistributedSampler(range(7), num_replicas=3, rank=1, shuffle=False)) == [1, 4, 0]
    let s = DistributedSampler::new(7, 3, 1).unwrap().shuffle(false, 0);
    assert_eq!(s.indices(), vec![1, 4, 0]);
}

#[test]
fn every_rank_draws_the_same_permutation_and_epochs_differ() {
    let perm = |rank: usize, epoch: u64| {
        let mut s = DistributedSampler::new(50, 4, rank)
            .unwrap()
            .shuffle(true, 3);
        s.set_epoch(epoch);
        s.global_indices()
    };
    assert_eq!(perm(0, 1), perm(3, 1));
    assert_ne!(perm(0, 1), perm(0, 2));
    assert_eq!(perm(2, 5), perm(1, 5));
}

#[test]
fn global_batches_do_not_depend_on_the_rank_count() {
    // Local batches of B / N: step s uses permutation positions s·B .. (s+1)·B.
    let global_batch = 8;
    let step_sets = |n: usize| -> Vec<BTreeSet<usize>> {
        let parts = shards(64, n, 2, false);
        let local = global_batch / n;
        (0..64 / global_batch)
            .map(|s| {
                parts
                    .iter()
                    .flat_map(|p| p[s * local..(s + 1) * local].iter().copied())
                    .collect()
            })
            .collect()
    };
    assert_eq!(step_sets(1), step_sets(2));
    assert_eq!(step_sets(1), step_sets(4));
}

#[test]
fn one_replica_is_the_shuffling_loaders_order() {
    let data = dataset(20);
    let mut plain = DataLoader::new(data.clone(), 20).unwrap().shuffle(9);
    let sampler = DistributedSampler::new(20, 1, 0).unwrap().shuffle(true, 9);
    let mut sharded = DataLoader::new(data, 20)
        .unwrap()
        .with_sampler(sampler)
        .unwrap();
    for _ in 0..3 {
        let a: Vec<_> = plain.epoch().map(|b| b.x.to_vec()).collect();
        let b: Vec<_> = sharded.epoch().map(|b| b.x.to_vec()).collect();
        assert_eq!(a, b);
    }
}

#[test]
fn invalid_arguments_are_errors() {
    let err = DistributedSampler::new(10, 2, 2).unwrap_err().to_string();
    assert!(err.contains("rank 2"), "{err}");
    assert!(DistributedSampler::new(10, 0, 0).is_err());
    assert!(DistributedSampler::new(0, 2, 0).is_err());
    let wrong = DistributedSampler::new(11, 2, 0).unwrap();
    assert!(DataLoader::new(dataset(10), 2)
        .unwrap()
        .with_sampler(wrong)
        .is_err());
}

fn dataset(n: usize) -> TensorDataset {
    let x = Tensor::from_vec((0..n).map(|i| i as f32).collect(), &[n, 1]).unwrap();
    TensorDataset::new(x.clone(), x).unwrap()
}

fn loader(n: usize, ranks: usize, rank: usize, local_batch: usize) -> DataLoader {
    let sampler = DistributedSampler::new(n, ranks, rank)
        .unwrap()
        .shuffle(true, 5);
    DataLoader::new(dataset(n), local_batch)
        .unwrap()
        .with_sampler(sampler)
        .unwrap()
}

#[test]
fn the_loader_advances_epochs_by_itself_and_resumes_from_its_state() {
    let mut a = loader(30, 2, 1, 4);
    assert_eq!(a.batches_per_epoch(), 4); // 15 samples: 4 + 4 + 4 + 3
    let first: Vec<_> = a.epoch().map(|b| b.x.to_vec()).collect();
    let second: Vec<_> = a.epoch().map(|b| b.x.to_vec()).collect();
    assert_ne!(first, second, "the loader must reshuffle each epoch");
    let mut epoch = a.epoch();
    epoch.next();
    drop(epoch);
    let state = a.state();
    let rest: Vec<_> = a.epoch().map(|b| b.x.to_vec()).collect();
    let mut b = loader(30, 2, 1, 4);
    b.load_state(state).unwrap();
    let resumed: Vec<_> = b.epoch().map(|b| b.x.to_vec()).collect();
    assert_eq!(rest, resumed);
}

#[test]
fn a_state_saved_on_two_ranks_resumes_on_four_at_the_same_global_samples() {
    // Global batch 8: 4 per rank on 2 ranks, 2 per rank on 4.
    let mut two: Vec<DataLoader> = (0..2).map(|r| loader(64, 2, r, 4)).collect();
    for l in &mut two {
        l.epoch().take(3).for_each(drop);
    }
    let state = two[0].state();
    let next_on = |loaders: &mut [DataLoader]| -> BTreeSet<u32> {
        loaders
            .iter_mut()
            .flat_map(|l| l.epoch().next().unwrap().x.to_vec())
            .map(|v| v as u32)
            .collect()
    };
    let mut four: Vec<DataLoader> = (0..4).map(|r| loader(64, 4, r, 2)).collect();
    for l in &mut four {
        l.load_state(state).unwrap();
    }
    assert_eq!(next_on(&mut two), next_on(&mut four));
}
