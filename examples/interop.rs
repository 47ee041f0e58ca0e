//! Weights moving both ways between PyTorch and tapegrad through safetensors.
//!
//! 1. PyTorch → tapegrad: `tests/fixtures/interop/net.safetensors` was trained and saved
//!    by PyTorch (`tools/reference/interop_fixtures.py`); loaded here by state-dict name
//!    into the same `Net`, it reproduces PyTorch's outputs on the saved inputs.
//! 2. tapegrad → PyTorch: a `Net` trained here on the diabetes data is written to
//!    `target/interop/net_from_tapegrad.safetensors`, which
//!    `net.load_state_dict(safetensors.torch.load_file(path))` reads in PyTorch.
//!
//! Run: `cargo run --release --example interop`

use std::error::Error;

use serde_json::Value;
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

fn tensor(v: &Value) -> Result<Tensor, Box<dyn Error>> {
    let numbers = |key: &str| -> Result<Vec<f64>, Box<dyn Error>> {
        v[key]
            .as_array()
            .ok_or("expected an array")?
            .iter()
            .map(|x| x.as_f64().ok_or("expected a number".into()))
            .collect()
    };
    let shape: Vec<usize> = numbers("shape")?.into_iter().map(|d| d as usize).collect();
    let data: Vec<f32> = numbers("data")?.into_iter().map(|x| x as f32).collect();
    Ok(Tensor::from_vec(data, &shape)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let root = env!("CARGO_MANIFEST_DIR");
    manual_seed(0);

    // 1. PyTorch → tapegrad.
    let from_torch = Net::new()?;
    load_safetensors(
        &from_torch,
        format!("{root}/tests/fixtures/interop/net.safetensors"),
    )?;
    let io: Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{root}/tests/fixtures/interop/net_io.json"
    ))?)?;
    let ours = from_torch.forward(&tensor(&io["input"])?).to_vec();
    let theirs = tensor(&io["output"])?.to_vec();
    let max_diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "PyTorch-trained Net loaded: {} outputs, max |tapegrad − PyTorch| = {max_diff:e}",
        ours.len()
    );

    // 2. tapegrad → PyTorch.
    let data = TensorDataset::from_table(&read_csv(format!("{root}/data/diabetes.csv"))?)?;
    let x = Standardizer::fit(&data.features)?.apply(&data.features)?;
    let y = Standardizer::fit(&data.targets)?.apply(&data.targets)?;
    let net = Net::new()?;
    let mut optimizer = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            ..Default::default()
        },
    )?;
    for _ in 0..300 {
        optimizer.zero_grad();
        MseLoss::new().forward(&net.forward(&x), &y).backward();
        optimizer.step();
    }
    let out_dir = format!("{root}/target/interop");
    std::fs::create_dir_all(&out_dir)?;
    let path = format!("{out_dir}/net_from_tapegrad.safetensors");
    save_safetensors(&net, &path)?;
    let first = net.forward(&x.index_select(0, &[0])).item();
    println!("trained Net saved to {path}; its prediction for sample 0 is {first:.6}. In PyTorch:");
    println!("  net.load_state_dict(safetensors.torch.load_file({path:?}))");
    println!("max_abs_diff_vs_pytorch={max_diff:e} saved={path} sample0_prediction={first:.6}");
    Ok(())
}
