//! Handwritten digits (8×8 pixels): a 64-128-10 MLP trained with cross-entropy and Adam
//! on mini-batches of 32, reshuffled each epoch from a seed, on an 80/20 split.
//!
//! Run: `cargo run --release --example digits`

mod common;

use std::error::Error;

use tapegrad::prelude::*;

const EPOCHS: usize = 30;
const BATCH: usize = 32;

fn main() -> Result<(), Box<dyn Error>> {
    let table = read_csv(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"))?;
    let raw = TensorDataset::from_table(&table)?;
    // Pixels are 0..16.
    let all = TensorDataset::new(&raw.features / 16.0, raw.targets)?;
    let (train_rows, test_rows) = train_test_split(all.len(), 0.2, 0)?;
    let (train, test) = (all.subset(&train_rows)?, all.subset(&test_rows)?);
    let test_labels = test.class_targets()?;
    println!("digits: {} train, {} test", train.len(), test.len());

    manual_seed(0);
    let net = Sequential::new()
        .add(Linear::new(64, 128)?)
        .add(Relu)
        .add(Linear::new(128, 10)?);
    let criterion = CrossEntropyLoss::new();
    let mut optimizer = Adam::new(
        net.parameters(),
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let mut loader = DataLoader::new(train, BATCH)?.shuffle(0);

    let mut accuracy = 0.0;
    for epoch in 1..=EPOCHS {
        let (mut total, mut batches) = (0.0, 0);
        for batch in loader.epoch() {
            optimizer.zero_grad();
            let loss = criterion.forward(&net.forward(&batch.x), &batch.class_targets()?);
            loss.backward();
            optimizer.step();
            total += loss.item();
            batches += 1;
        }
        accuracy = common::accuracy(&net, &test.features, &test_labels);
        println!(
            "epoch {epoch:2}  train loss {:.4}  test accuracy {accuracy:.4}",
            total / batches as f32
        );
    }
    println!("test_accuracy={accuracy:.4}");
    Ok(())
}
