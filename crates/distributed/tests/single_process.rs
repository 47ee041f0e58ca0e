//! The distributed API in one process, without MPI: wrapping an optimizer changes
//! nothing, checkpoints go through rank 0's helpers, and the ordered reduction equals
//! averaging of the same micro-batches.

mod common;

use common::scenario::{self, Job};
use tapegrad_autograd::rand::rngs::StdRng;
use tapegrad_autograd::rand::SeedableRng;
use tapegrad_autograd::Tensor;
use tapegrad_distributed::{
    broadcast_parameters, load_checkpoint, mean_over_ranks, micro_batch_rows, save_checkpoint,
    DistributedOptimizer, SingleProcess,
};
use tapegrad_io::Checkpoint;
use tapegrad_nn::{Linear, Module};
use tapegrad_optim::{Optimizer, Sgd, SgdConfig};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn wrapping_changes_nothing_in_one_process() {
    let w = Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3])
        .unwrap()
        .with_requires_grad(true);
    let v = w.detach().with_requires_grad(true);
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let mut plain = Sgd::new(vec![w.clone()], config).unwrap();
    let sgd = Sgd::new(vec![v.clone()], config).unwrap();
    let mut wrapped = DistributedOptimizer::with_bucket_elements(Box::new(sgd), SingleProcess, 2);
    for _ in 0..5 {
        plain.zero_grad();
        (&(&w * &w) * &w).sum().backward();
        plain.step();
        wrapped.zero_grad();
        (&(&v * &v) * &v).sum().backward();
        wrapped.step();
    }
    assert_eq!(bits(&w.to_vec()), bits(&v.to_vec()));
    assert_eq!(plain.state(), wrapped.state());
    assert_eq!(wrapped.kind(), "SGD");
}

#[test]
fn a_parameter_without_gradient_is_left_alone() {
    let used = Tensor::ones(&[2]).with_requires_grad(true);
    let unused = Tensor::ones(&[2]).with_requires_grad(true);
    let sgd = Sgd::new(vec![used.clone(), unused.clone()], SgdConfig::default()).unwrap();
    let mut opt = DistributedOptimizer::new(Box::new(sgd), SingleProcess);
    opt.zero_grad();
    used.sum().backward();
    opt.step();
    assert!(unused.grad().is_none());
    assert_eq!(opt.inner().state().steps, vec![1, 0]);
}

#[test]
fn the_job_runs_on_one_process_and_ordered_mode_is_close_to_averaging() {
    let averaged = scenario::train(&SingleProcess, &Job::new("sgd", 8)).unwrap();
    let mut job = Job::new("sgd", 8);
    job.ordered = true;
    let ordered = scenario::train(&SingleProcess, &job).unwrap();
    let diff = averaged
        .iter()
        .zip(&ordered)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-5, "ordered and averaged differ by {diff}");
}

#[test]
fn checkpoint_helpers_resume_to_the_bit_in_one_process() {
    let dir = std::env::temp_dir().join(format!("tapegrad-dist-single-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("half.ckpt");
    let whole = scenario::train(&SingleProcess, &Job::new("adam", 12)).unwrap();
    let mut first = Job::new("adam", 6);
    first.save_at = Some((6, ckpt.clone()));
    scenario::train(&SingleProcess, &first).unwrap();
    let mut second = Job::new("adam", 12);
    second.resume = Some(ckpt.clone());
    let resumed = scenario::train(&SingleProcess, &second).unwrap();
    assert_eq!(bits(&whole), bits(&resumed));
    let missing = load_checkpoint(&SingleProcess, dir.join("nope.ckpt")).unwrap_err();
    assert!(missing.to_string().contains("nope.ckpt"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn helpers_work_on_one_rank() {
    let mut rng = StdRng::seed_from_u64(3);
    let net = Linear::new_with_rng(3, 2, &mut rng).unwrap();
    let before: Vec<f32> = net.parameters().iter().flat_map(|p| p.to_vec()).collect();
    broadcast_parameters(&SingleProcess, &net.parameters());
    let after: Vec<f32> = net.parameters().iter().flat_map(|p| p.to_vec()).collect();
    assert_eq!(before, after);
    assert_eq!(mean_over_ranks(&SingleProcess, 2.5), 2.5);
    assert_eq!(
        micro_batch_rows(6, 3),
        vec![vec![0, 3], vec![1, 4], vec![2, 5]]
    );
    let dir = std::env::temp_dir().join(format!("tapegrad-dist-helpers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.ckpt");
    save_checkpoint(&SingleProcess, &path, || Checkpoint::new(&net)).unwrap();
    assert_eq!(
        load_checkpoint(&SingleProcess, &path).unwrap(),
        Checkpoint::new(&net)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ordered_mode_rejects_shard_counts_the_ranks_do_not_divide() {
    let w = Tensor::ones(&[1]).with_requires_grad(true);
    let sgd = Sgd::new(vec![w], SgdConfig::default()).unwrap();
    let opt = DistributedOptimizer::new(Box::new(sgd), SingleProcess);
    assert!(opt.ordered(0).is_err());
}
