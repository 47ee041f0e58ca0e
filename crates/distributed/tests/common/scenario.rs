//! The training job the distributed tests run: a small MLP classifier on synthetic data,
//! trained with a `DistributedSampler` and a `DistributedOptimizer` over any
//! `Communicator`. The MPI worker binary runs it under `mpirun`; the tests run it on
//! `SingleProcess` for the one-process reference.

use std::error::Error;
use std::path::PathBuf;

use tapegrad_autograd::rand::rngs::StdRng;
use tapegrad_autograd::rand::SeedableRng;
use tapegrad_autograd::Tensor;
use tapegrad_data::{DataLoader, DistributedSampler, TensorDataset};
use tapegrad_distributed::{
    broadcast_parameters, load_checkpoint, micro_batch_rows, save_checkpoint, Communicator,
    DistributedOptimizer,
};
use tapegrad_io::Checkpoint;
use tapegrad_losses::CrossEntropyLoss;
use tapegrad_nn::{Linear, Module, Sequential, Tanh};
use tapegrad_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};

/// Samples in the data set: divisible by the global batch, whose shards divide by 1..4.
pub const SAMPLES: usize = 72;
/// Samples per step over all ranks.
pub const GLOBAL_BATCH: usize = 12;
/// Virtual shards of the ordered reduction: one sample each.
pub const VIRTUAL_SHARDS: usize = 12;

/// How a rank is made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `panic!`.
    Panic,
    /// SIGKILL to itself.
    Kill,
    /// An `Err` returned from the training function.
    Error,
}

/// One job.
#[derive(Clone, Debug)]
pub struct Job {
    /// "sgd" (with momentum) or "adam".
    pub optimizer: String,
    /// Train until this many optimizer steps in all.
    pub steps: usize,
    /// Ordered (rank-count independent) reduction instead of averaging.
    pub ordered: bool,
    /// Save a checkpoint after this step to this file.
    pub save_at: Option<(usize, PathBuf)>,
    /// Start from this checkpoint.
    pub resume: Option<PathBuf>,
    /// Make `rank` fail after `step` steps.
    pub fail: Option<(usize, usize, Failure)>,
}

impl Job {
    /// A plain job of `steps` steps.
    pub fn new(optimizer: &str, steps: usize) -> Job {
        Job {
            optimizer: optimizer.to_string(),
            steps,
            ordered: false,
            save_at: None,
            resume: None,
            fail: None,
        }
    }
}

fn dataset() -> TensorDataset {
    let mut rng = StdRng::seed_from_u64(42);
    let x = Tensor::uniform(&[SAMPLES, 6], -1.0, 1.0, &mut rng).unwrap();
    let w = Tensor::normal(&[6, 3], 0.0, 1.0, &mut rng).unwrap();
    let labels: Vec<f32> = x
        .matmul(&w)
        .argmax_axis(1)
        .iter()
        .map(|&c| c as f32)
        .collect();
    TensorDataset::new(x, Tensor::from_vec(labels, &[SAMPLES, 1]).unwrap()).unwrap()
}

/// Trains; returns the final parameters, flattened. After every step all ranks' parameters
/// are compared bit for bit, and a difference is an error.
pub fn train<C: Communicator + Clone + 'static>(
    comm: &C,
    job: &Job,
) -> Result<Vec<f32>, Box<dyn Error>> {
    let (rank, size) = (comm.rank(), comm.size());
    // Each rank initialises differently; the broadcast makes rank 0's model everyone's.
    let mut rng = StdRng::seed_from_u64(rank as u64);
    let net = Sequential::new()
        .add(Linear::new_with_rng(6, 16, &mut rng)?)
        .add(Tanh)
        .add(Linear::new_with_rng(16, 3, &mut rng)?);
    broadcast_parameters(comm, &net.parameters());
    let inner: Box<dyn Optimizer> = match job.optimizer.as_str() {
        "sgd" => Box::new(Sgd::new(
            net.parameters(),
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            },
        )?),
        "adam" => Box::new(Adam::new(
            net.parameters(),
            AdamConfig {
                lr: 0.01,
                ..Default::default()
            },
        )?),
        other => return Err(format!("unknown optimizer {other}").into()),
    };
    let mut optimizer = DistributedOptimizer::with_bucket_elements(inner, comm.clone(), 40);
    if job.ordered {
        optimizer = optimizer.ordered(VIRTUAL_SHARDS)?;
    }
    let sampler = DistributedSampler::new(SAMPLES, size, rank)?.shuffle(true, 11);
    let mut loader = DataLoader::new(dataset(), GLOBAL_BATCH / size)?.with_sampler(sampler)?;
    let criterion = CrossEntropyLoss::new();

    let mut step = 0;
    if let Some(path) = &job.resume {
        let ckpt = load_checkpoint(comm, path)?;
        ckpt.restore_model(&net)?;
        ckpt.restore_optimizer(&mut optimizer)?;
        ckpt.restore_loader(&mut loader)?;
        step = ckpt.step as usize;
    }
    while step < job.steps {
        // One batch at a time, so the loader is free to checkpoint between steps.
        let Some(batch) = loader.epoch().next() else {
            continue; // the epoch ended; the loader moved to the next one
        };
        let labels = batch.class_targets()?;
        optimizer.zero_grad();
        if job.ordered {
            let k = optimizer.micro_batches_per_rank();
            for rows in micro_batch_rows(labels.len(), k) {
                let x = batch.x.index_select(0, &rows);
                let y: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
                criterion.forward(&net.forward(&x), &y).backward();
                optimizer.accumulate_micro_batch();
            }
        } else {
            criterion
                .forward(&net.forward(&batch.x), &labels)
                .backward();
        }
        optimizer.step();
        step += 1;
        check_identical(comm, &net)?;
        if let Some((fail_rank, fail_step, how)) = job.fail {
            if fail_rank == rank && fail_step == step {
                match how {
                    Failure::Panic => panic!("rank {rank} fails on purpose at step {step}"),
                    Failure::Kill => {
                        let pid = std::process::id().to_string();
                        std::process::Command::new("kill")
                            .args(["-9", &pid])
                            .status()?;
                        std::thread::sleep(std::time::Duration::from_secs(60));
                    }
                    Failure::Error => {
                        return Err(format!("rank {rank} returns an error at step {step}").into())
                    }
                }
            }
        }
        if let Some((at, path)) = &job.save_at {
            if *at == step {
                save_checkpoint(comm, path, || {
                    Checkpoint::new(&net)
                        .with_optimizer(&optimizer)
                        .with_loader(&loader)
                        .with_counters(loader.state().epoch, step as u64)
                })?;
            }
        }
    }
    Ok(flat(&net))
}

fn flat(net: &Sequential) -> Vec<f32> {
    net.parameters().iter().flat_map(|p| p.to_vec()).collect()
}

/// Gathers every rank's parameters and checks they are the same bits as rank 0's.
fn check_identical<C: Communicator>(comm: &C, net: &Sequential) -> Result<(), Box<dyn Error>> {
    let mine = flat(net);
    let mut all = vec![0.0; mine.len() * comm.size()];
    comm.all_gather(&mine, &mut all);
    for (r, theirs) in all.chunks(mine.len()).enumerate() {
        let same = theirs
            .iter()
            .zip(&all[..mine.len()])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            return Err(format!("rank {r}'s parameters differ from rank 0's").into());
        }
    }
    Ok(())
}
