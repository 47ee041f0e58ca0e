//! The digits MLP of `examples/digits.rs`, data-parallel over MPI: every rank trains on
//! its shard of each global batch of 32 and the gradients are averaged before each Adam
//! step, so the run follows the one-process run's (same permutation, same global
//! batches, same initial model, broadcast from rank 0).
//!
//! Run (needs Open MPI; see docs/distributed.md):
//! `cargo build --release --features mpi --example ddp_digits &&
//!  mpirun -np 2 target/release/examples/ddp_digits`

mod common;

use tapegrad::autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad::data::{read_csv, train_test_split, DataLoader, DistributedSampler, TensorDataset};
use tapegrad::distributed::{
    broadcast_parameters, mean_over_ranks, rank0_println, run, save_checkpoint, sum_over_ranks,
    Communicator, DistributedOptimizer,
};
use tapegrad::io::Checkpoint;
use tapegrad::losses::CrossEntropyLoss;
use tapegrad::nn::{Linear, Module, Relu, Sequential};
use tapegrad::optim::{Adam, AdamConfig, Optimizer};

const EPOCHS: usize = 30;
const GLOBAL_BATCH: usize = 32;

fn main() {
    run(|world| {
        let (rank, size) = (world.rank(), world.size());
        let table = read_csv(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"))?;
        let raw = TensorDataset::from_table(&table)?;
        let all = TensorDataset::new(&raw.features / 16.0, raw.targets)?;
        let (train_rows, test_rows) = train_test_split(all.len(), 0.2, 0)?;
        let (train, test) = (all.subset(&train_rows)?, all.subset(&test_rows)?);
        if GLOBAL_BATCH % size != 0 {
            return Err(
                format!("the global batch {GLOBAL_BATCH} must divide over {size} ranks").into(),
            );
        }

        // Every rank builds the model; rank 0's initial values are broadcast to all.
        let mut rng = StdRng::seed_from_u64(rank as u64);
        let net = Sequential::new()
            .add(Linear::new_with_rng(64, 128, &mut rng)?)
            .add(Relu)
            .add(Linear::new_with_rng(128, 10, &mut rng)?);
        broadcast_parameters(world, &net.parameters());
        let criterion = CrossEntropyLoss::new();
        let adam = Adam::new(
            net.parameters(),
            AdamConfig {
                lr: 1e-3,
                ..Default::default()
            },
        )?;
        let mut optimizer = DistributedOptimizer::new(Box::new(adam), world.clone());
        let sampler = DistributedSampler::new(train.len(), size, rank)?.shuffle(true, 0);
        let mut loader = DataLoader::new(train, GLOBAL_BATCH / size)?.with_sampler(sampler)?;
        println!(
            "rank {rank} of {size}: shard of {} training samples per epoch, local batch {}",
            loader.samples_per_epoch(),
            GLOBAL_BATCH / size
        );

        // Each rank scores its own slice of the test set; the counts are summed.
        let test_shard: Vec<usize> = (rank..test.len()).step_by(size).collect();
        let test_part = test.subset(&test_shard)?;
        let test_labels = test_part.class_targets()?;
        let (mut accuracy, mut steps) = (0.0, 0);
        for epoch in 1..=EPOCHS {
            let (mut total, mut batches) = (0.0, 0);
            for batch in loader.epoch() {
                optimizer.zero_grad();
                let loss = criterion.forward(&net.forward(&batch.x), &batch.class_targets()?);
                loss.backward();
                optimizer.step();
                steps += 1;
                total += loss.item() as f64;
                batches += 1;
            }
            let loss = mean_over_ranks(world, total / batches as f64);
            let correct = common::correct_predictions(&net, &test_part.features, &test_labels);
            accuracy = sum_over_ranks(world, correct as f64) / test.len() as f64;
            rank0_println!(
                world,
                "epoch {epoch:2}  train loss {loss:.4}  test accuracy {accuracy:.4}"
            );
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/ddp_digits.ckpt");
        save_checkpoint(world, path, || {
            Checkpoint::new(&net)
                .with_optimizer(&optimizer)
                .with_loader(&loader)
                .with_counters(EPOCHS as u64, steps)
        })?;
        rank0_println!(world, "test_accuracy={accuracy:.4}");
        Ok(())
    });
}
