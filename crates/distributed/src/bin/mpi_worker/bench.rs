//! Measurements for `docs/distributed.md`: all-reduce time and bandwidth, and W2's
//! data-parallel step rate. Rank 0 prints one `key=value` line per measurement.

use std::error::Error;
use std::time::Instant;

use tapegrad_autograd::rand::rngs::StdRng;
use tapegrad_autograd::rand::{Rng, SeedableRng};
use tapegrad_autograd::{set_num_threads, Tensor};
use tapegrad_distributed::cost_model::AlphaBeta;
use tapegrad_distributed::{broadcast_parameters, Communicator, DistributedOptimizer, World};
use tapegrad_losses::CrossEntropyLoss;
use tapegrad_nn::{Linear, Module, Relu, Sequential};
use tapegrad_optim::{Adam, AdamConfig, Optimizer};

fn arg(args: &[String], i: usize, default: usize) -> Result<usize, Box<dyn Error>> {
    Ok(match args.get(i) {
        Some(v) => v.parse()?,
        None => default,
    })
}

fn threads_from_env() {
    if let Some(n) = std::env::var("TAPEGRAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        set_num_threads(n);
    }
}

/// Times `REPEATS` all-reduces of `ELEMENTS` f32s after a warm-up; prints the median.
pub fn all_reduce(world: &World, args: &[String]) -> Result<(), Box<dyn Error>> {
    let n = arg(args, 0, 1_333_770)?;
    let repeats = arg(args, 1, 20)?;
    let send = vec![1.0f32; n];
    let mut recv = vec![0.0f32; n];
    for _ in 0..3 {
        world.all_reduce_sum(&send, &mut recv);
    }
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        world.barrier();
        let start = Instant::now();
        world.all_reduce_sum(&send, &mut recv);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if world.rank() == 0 {
        let bytes = (n * 4) as f64;
        println!(
            "allreduce ranks={} elements={n} bytes={bytes} median_s={median:.6e} min_s={:.6e} bus_GBps={:.3}",
            world.size(),
            times[0],
            AlphaBeta::bus_bandwidth(world.size(), bytes, median) / 1e9
        );
    }
    Ok(())
}

/// W2's network (784-512-512-10, Adam) with a fixed global batch split over the ranks.
pub fn w2(world: &World, args: &[String]) -> Result<(), Box<dyn Error>> {
    threads_from_env();
    let global = arg(args, 0, 256)?;
    let steps = arg(args, 1, 30)?;
    let local = global / world.size();
    let mut rng = StdRng::seed_from_u64(1 + world.rank() as u64);
    let net = Sequential::new()
        .add(Linear::new_with_rng(784, 512, &mut rng)?)
        .add(Relu)
        .add(Linear::new_with_rng(512, 512, &mut rng)?)
        .add(Relu)
        .add(Linear::new_with_rng(512, 10, &mut rng)?);
    broadcast_parameters(world, &net.parameters());
    let x = Tensor::normal(&[local, 784], 0.0, 1.0, &mut rng)?;
    let y: Vec<i64> = (0..local).map(|_| rng.random_range(0..10)).collect();
    let criterion = CrossEntropyLoss::new();
    let adam = Adam::new(
        net.parameters(),
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let mut optimizer = DistributedOptimizer::new(Box::new(adam), world.clone());
    let step = |optimizer: &mut DistributedOptimizer<Adam>| {
        optimizer.zero_grad();
        criterion.forward(&net.forward(&x), &y).backward();
        optimizer.step();
    };
    for _ in 0..3 {
        step(&mut optimizer);
    }
    let comm_before = optimizer.comm_time();
    world.barrier();
    let start = Instant::now();
    for _ in 0..steps {
        step(&mut optimizer);
    }
    world.barrier();
    let elapsed = start.elapsed().as_secs_f64();
    let comm = (optimizer.comm_time() - comm_before).as_secs_f64();
    if world.rank() == 0 {
        println!(
            "w2 ranks={} threads={} global_batch={global} steps_per_s={:.2} step_ms={:.3} comm_ms={:.3} params={}",
            world.size(),
            tapegrad_autograd::num_threads(),
            steps as f64 / elapsed,
            elapsed * 1e3 / steps as f64,
            comm * 1e3 / steps as f64,
            net.num_parameters()
        );
    }
    Ok(())
}
