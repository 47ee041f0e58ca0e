//! Handwritten digits (8×8 pixels) with a small convolutional network:
//! Conv2d(1, 32, 3, padding 1) → ReLU → Conv2d(32, 64, 3, padding 1) → ReLU →
//! MaxPool2d(2) → Flatten → Linear(1024, 128) → ReLU → Linear(128, 10), trained with
//! cross-entropy and Adam (lr 1e-3) on mini-batches of 32 for 30 epochs, on the `digits`
//! example's 80/20 split (pixels / 16). `tools/reference/digits_cnn.py` is the same
//! protocol in PyTorch.
//!
//! Run: `cargo run --release --example digits_cnn [-- --seed N]` (the seed drives the
//! initialisation and the shuffling; the split is always the `digits` example's).
//! `-- --write-split FILE` writes the split's row indices as JSON for the PyTorch script.

mod common;

use std::error::Error;

use tapegrad::autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad::data::{read_csv, train_test_split, DataLoader, TensorDataset};
use tapegrad::losses::CrossEntropyLoss;
use tapegrad::nn::{Conv2d, Conv2dOptions, Flatten, Linear, MaxPool2d, Module, Relu, Sequential};
use tapegrad::optim::{Adam, AdamConfig, Optimizer};

const EPOCHS: usize = 30;
const BATCH: usize = 32;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let seed: u64 = flag("--seed").map_or(Ok(0), |s| s.parse())?;

    let table = read_csv(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"))?;
    let raw = TensorDataset::from_table(&table)?;
    // Pixels are 0..16.
    let all = TensorDataset::new(&raw.features / 16.0, raw.targets)?;
    let (train_rows, test_rows) = train_test_split(all.len(), 0.2, 0)?;
    if let Some(path) = flag("--write-split") {
        std::fs::write(
            &path,
            format!("{{\"train\": {train_rows:?}, \"test\": {test_rows:?}}}\n"),
        )?;
        println!("wrote the split to {path}");
        return Ok(());
    }
    let (train, test) = (all.subset(&train_rows)?, all.subset(&test_rows)?);
    let test_labels = test.class_targets()?;
    let test_images = test.features.reshape(&[test.len(), 1, 8, 8]);
    println!(
        "digits_cnn: {} train, {} test, seed {seed}",
        train.len(),
        test.len()
    );

    let mut rng = StdRng::seed_from_u64(seed);
    let same = Conv2dOptions::new().padding(1);
    let net = Sequential::new()
        .add(Conv2d::with_options_and_rng(
            1,
            32,
            [3, 3],
            same,
            true,
            &mut rng,
        )?)
        .add(Relu)
        .add(Conv2d::with_options_and_rng(
            32,
            64,
            [3, 3],
            same,
            true,
            &mut rng,
        )?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Flatten::new())
        .add(Linear::new_with_rng(1024, 128, &mut rng)?)
        .add(Relu)
        .add(Linear::new_with_rng(128, 10, &mut rng)?);
    let criterion = CrossEntropyLoss::new();
    let mut optimizer = Adam::new(
        net.parameters(),
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let mut loader = DataLoader::new(train, BATCH)?.shuffle(seed);

    let mut accuracy = 0.0;
    for epoch in 1..=EPOCHS {
        let (mut total, mut batches) = (0.0, 0);
        for batch in loader.epoch() {
            let images = batch.x.reshape(&[batch.x.shape()[0], 1, 8, 8]);
            optimizer.zero_grad();
            let loss = criterion.forward(&net.forward(&images), &batch.class_targets()?);
            loss.backward();
            optimizer.step();
            total += loss.item();
            batches += 1;
        }
        accuracy = common::accuracy(&net, &test_images, &test_labels);
        println!(
            "epoch {epoch:2}  train loss {:.4}  test accuracy {accuracy:.4}",
            total / batches as f32
        );
    }
    println!("test_accuracy={accuracy:.4}");
    Ok(())
}
