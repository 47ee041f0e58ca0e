//! The fixed workloads tapegrad is compared on against PyTorch
//! (`benches/compare/torch_workloads.py` runs the same ones):
//!
//! - `w1_seed_step`: Linear(10,5) → ReLU → Linear(5,1), MSE, Sgd lr 0.01, batch 64;
//!   one whole step (zero_grad, forward, loss, backward, step).
//! - `w2_mlp_adam_step`: Linear(784,512) → ReLU → Linear(512,512) → ReLU →
//!   Linear(512,10), cross-entropy on integer labels, Adam lr 1e-3, batch 128.
//! - `gemm_256`, `gemm_1024`: square f32 matmul.
//! - `optimizer_step`: an Adam step over 1M parameters with a fixed gradient.
//! - `w4_digits_cnn_step`: the `digits_cnn` example's CNN, Adam, batch 32 of [1, 8, 8].
//! - `w5_conv_step`: Conv-BN-ReLU-Pool ×2 → Linear on batch 32 of [3, 32, 32], SGD with
//!   momentum (both built by `tests/common`, which the allocation test shares).
//!
//! Data is synthetic, seeded and made once outside the timed loop. Set
//! `TAPEGRAD_THREADS=1` (or 2) to fix the thread count.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tapegrad::autograd::set_num_threads;
use tapegrad::losses::{CrossEntropyLoss, MseLoss};
use tapegrad::nn::{Linear, Module, Relu, Sequential};
use tapegrad::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tapegrad::Tensor;

#[path = "../tests/common/mod.rs"]
mod common;

fn threads_from_env() {
    if let Some(n) = std::env::var("TAPEGRAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        set_num_threads(n);
    }
}

fn w1_seed_step(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let net = Sequential::new()
        .add(Linear::new_with_rng(10, 5, &mut rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(5, 1, &mut rng).unwrap());
    let x = Tensor::normal(&[64, 10], 0.0, 1.0, &mut rng).unwrap();
    let y = Tensor::normal(&[64, 1], 0.0, 1.0, &mut rng).unwrap();
    let criterion = MseLoss::new();
    let mut optimizer = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.01,
            ..Default::default()
        },
    )
    .unwrap();
    c.bench_function("w1_seed_step", |b| {
        b.iter(|| {
            optimizer.zero_grad();
            let loss = criterion.forward(&net.forward(&x), &y);
            loss.backward();
            optimizer.step();
        })
    });
}

fn w2_mlp_adam_step(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let net = Sequential::new()
        .add(Linear::new_with_rng(784, 512, &mut rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(512, 512, &mut rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(512, 10, &mut rng).unwrap());
    let x = Tensor::normal(&[128, 784], 0.0, 1.0, &mut rng).unwrap();
    let y: Vec<i64> = (0..128).map(|_| rng.random_range(0..10)).collect();
    let criterion = CrossEntropyLoss::new();
    let mut optimizer = Adam::new(
        net.parameters(),
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )
    .unwrap();
    c.bench_function("w2_mlp_adam_step", |b| {
        b.iter(|| {
            optimizer.zero_grad();
            let loss = criterion.forward(&net.forward(&x), &y);
            loss.backward();
            optimizer.step();
        })
    });
}

fn gemm(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    for n in [256usize, 1024] {
        let a = Tensor::normal(&[n, n], 0.0, 1.0, &mut rng).unwrap();
        let b = Tensor::normal(&[n, n], 0.0, 1.0, &mut rng).unwrap();
        // A plain ID (criterion puts throughput only on grouped IDs, `group/name`); the
        // comparison runner turns the time into GFLOP/s, and `benches/ops.rs` reports
        // the same products with criterion's throughput.
        c.bench_function(&format!("gemm_{n}"), |bench| bench.iter(|| a.matmul(&b)));
    }
}

fn optimizer_step(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let p = Tensor::normal(&[1_000_000], 0.0, 1.0, &mut rng)
        .unwrap()
        .with_requires_grad(true);
    p.set_grad(Some(
        &Tensor::normal(&[1_000_000], 0.0, 1.0, &mut rng).unwrap(),
    ))
    .unwrap();
    let mut optimizer = Adam::new(
        vec![p],
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )
    .unwrap();
    c.bench_function("optimizer_step", |b| b.iter(|| optimizer.step()));
}

fn conv_steps(c: &mut Criterion) {
    let mut w4 = common::Workload::w4();
    c.bench_function("w4_digits_cnn_step", |b| b.iter(|| w4.step()));
    let mut w5 = common::Workload::w5();
    c.bench_function("w5_conv_step", |b| b.iter(|| w5.step()));
}

fn configure(c: &mut Criterion) {
    threads_from_env();
    w1_seed_step(c);
    w2_mlp_adam_step(c);
    gemm(c);
    optimizer_step(c);
    conv_steps(c);
}

criterion_group!(benches, configure);
criterion_main!(benches);
