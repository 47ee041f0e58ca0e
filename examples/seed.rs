//! The reference PyTorch program, line for line: Linear(10, 5) → ReLU → Linear(5, 1),
//! MSE loss, SGD with lr 0.01, 1000 full-batch epochs, on the diabetes data set
//! (10 standardised features; standardised target).
//!
//! Run: `cargo run --release --example seed`

use std::error::Error;

use tapegrad::prelude::*;

struct Net {
    fc1: Linear,
    fc2: Linear,
}

impl Net {
    fn new() -> Result<Net, Box<dyn Error>> {
        Ok(Net {
            fc1: Linear::new(10, 5)?,
            fc2: Linear::new(5, 1)?,
        })
    }
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).relu())
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed_parameters(&[("fc1", &self.fc1), ("fc2", &self.fc2)])
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let table = read_csv(concat!(env!("CARGO_MANIFEST_DIR"), "/data/diabetes.csv"))?;
    let data = TensorDataset::from_table(&table)?;
    let inputs = Standardizer::fit(&data.features)?.apply(&data.features)?;
    let labels = Standardizer::fit(&data.targets)?.apply(&data.targets)?;
    println!(
        "diabetes: {} samples, {} features",
        data.len(),
        inputs.shape()[1]
    );

    manual_seed(0);
    let net = Net::new()?;
    let criterion = MseLoss::new();
    let mut optimizer = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.01,
            ..Default::default()
        },
    )?;

    let mut last = f32::NAN;
    for epoch in 0..1000 {
        optimizer.zero_grad();
        let outputs = net.forward(&inputs);
        let loss = criterion.forward(&outputs, &labels);
        loss.backward();
        optimizer.step();
        last = loss.item();
        if (epoch + 1) % 100 == 0 {
            println!("epoch {:4}  loss {last:.6}", epoch + 1);
        }
    }
    println!("final_loss={last:.6}");
    Ok(())
}
