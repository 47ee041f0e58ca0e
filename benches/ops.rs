//! Baseline benchmarks of the core: matrix products, an elementwise add, and one
//! forward + backward pass of the seed network (10 → 5 → 1, batch 64).
//!
//! Run with `cargo bench --bench ops`; set `TAPEGRAD_THREADS=1` for single-threaded
//! products. Inputs are made once, outside the timed loop, from a fixed seed.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad::autograd::set_num_threads;
use tapegrad::Tensor;

fn threads_from_env() {
    if let Some(n) = std::env::var("TAPEGRAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        set_num_threads(n);
    }
}

fn matmul(c: &mut Criterion) {
    threads_from_env();
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("matmul");
    for n in [256usize, 1024] {
        let a = Tensor::normal(&[n, n], 0.0, 1.0, &mut rng).unwrap();
        let b = Tensor::normal(&[n, n], 0.0, 1.0, &mut rng).unwrap();
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| a.matmul(&b))
        });
    }
    group.finish();
}

fn add(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let a = Tensor::normal(&[1 << 20], 0.0, 1.0, &mut rng).unwrap();
    let b = Tensor::normal(&[1 << 20], 0.0, 1.0, &mut rng).unwrap();
    let mut group = c.benchmark_group("elementwise");
    group.throughput(Throughput::Elements(1 << 20));
    group.bench_function("add_1m", |bench| bench.iter(|| &a + &b));
    group.finish();
}

fn seed_forward_backward(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let x = Tensor::normal(&[64, 10], 0.0, 1.0, &mut rng).unwrap();
    let y = Tensor::normal(&[64, 1], 0.0, 1.0, &mut rng).unwrap();
    let bound = 1.0 / 10f32.sqrt();
    let w1 = Tensor::uniform(&[5, 10], -bound, bound, &mut rng)
        .unwrap()
        .with_requires_grad(true);
    let b1 = Tensor::uniform(&[5], -bound, bound, &mut rng)
        .unwrap()
        .with_requires_grad(true);
    let bound = 1.0 / 5f32.sqrt();
    let w2 = Tensor::uniform(&[1, 5], -bound, bound, &mut rng)
        .unwrap()
        .with_requires_grad(true);
    let b2 = Tensor::uniform(&[1], -bound, bound, &mut rng)
        .unwrap()
        .with_requires_grad(true);
    c.bench_function("seed_forward_backward", |bench| {
        bench.iter(|| {
            for p in [&w1, &b1, &w2, &b2] {
                p.zero_grad();
            }
            let h = x.linear(&w1, Some(&b1)).relu();
            let out = h.linear(&w2, Some(&b2));
            let loss = (&out - &y).pow(2.0).mean();
            loss.backward();
        })
    });
}

criterion_group!(benches, matmul, add, seed_forward_backward);
criterion_main!(benches);
