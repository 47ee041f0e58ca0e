//! Grouped optimizer state and the schedulers of issue 8 through the checkpoint file
//! encoding (bincode, which unlike JSON is not self-describing): they decode to the same
//! values and restore a run that continues bit-identically.

use tapegrad_autograd::Tensor;
use tapegrad_io::{format, Checkpoint, SchedulerState, StateDict};
use tapegrad_optim::{
    AdamW, AdamWConfig, CosineAnnealingLr, LinearLr, LrScheduler, OneCycleConfig, OneCycleLr,
    Optimizer, OptimizerState, ParamGroup, ReduceLrOnPlateau, ReduceLrOnPlateauConfig,
    SequentialLr,
};

fn params() -> (Tensor, Tensor) {
    let w = Tensor::from_vec(vec![0.5, -0.3, 0.1, 0.8, -0.6, 0.2], &[3, 2]).unwrap();
    let b = Tensor::from_vec(vec![0.1, -0.2, 0.05], &[3]).unwrap();
    (w.with_requires_grad(true), b.with_requires_grad(true))
}

fn adamw(w: &Tensor, b: &Tensor) -> AdamW {
    let base = AdamWConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..Default::default()
    };
    AdamW::with_groups(vec![
        ParamGroup::new(vec![w.clone()], base),
        ParamGroup::new(
            vec![b.clone()],
            AdamWConfig {
                weight_decay: 0.0,
                ..base
            },
        ),
    ])
    .unwrap()
}

fn schedule(opt: &mut AdamW) -> SequentialLr {
    let warmup = LinearLr::new(opt, 0.1, 1.0, 2).unwrap();
    let cosine = CosineAnnealingLr::new(opt, 5, 0.0).unwrap();
    SequentialLr::new(opt, vec![Box::new(warmup), Box::new(cosine)], vec![2]).unwrap()
}

fn train(opt: &mut AdamW, sched: &mut SequentialLr, w: &Tensor, b: &Tensor, steps: usize) {
    let x = Tensor::from_vec(vec![1.0, 2.0, -0.5, 0.3], &[2, 2]).unwrap();
    for _ in 0..steps {
        opt.zero_grad();
        x.linear(w, Some(b)).pow(2.0).mean().backward();
        opt.step();
        sched.step(opt);
    }
}

#[test]
fn grouped_state_and_sequential_schedule_survive_the_checkpoint_encoding() {
    let (w, b) = params();
    let mut opt = adamw(&w, &b);
    let mut sched = schedule(&mut opt);
    train(&mut opt, &mut sched, &w, &b, 3);
    let bytes = format::encode(&(opt.state(), sched.state())).unwrap();
    let (w2, b2) = (
        w.detach().with_requires_grad(true),
        b.detach().with_requires_grad(true),
    );
    train(&mut opt, &mut sched, &w, &b, 3);

    let (opt_state, sched_state): (OptimizerState, SchedulerState) =
        format::decode(&bytes).unwrap();
    let mut opt2 = adamw(&w2, &b2);
    let mut sched2 = schedule(&mut opt2);
    let ckpt = Checkpoint {
        model: StateDict::default(),
        optimizer: Some(opt_state),
        scheduler: Some(sched_state),
        loader: None,
        epoch: 0,
        step: 3,
        rng_state: tapegrad_autograd::random::default_rng_state().to_bytes(),
    };
    let ckpt = Checkpoint::from_bytes(&ckpt.to_bytes().unwrap()).unwrap();
    ckpt.restore_optimizer(&mut opt2).unwrap();
    ckpt.restore_scheduler(&mut sched2).unwrap();
    train(&mut opt2, &mut sched2, &w2, &b2, 3);
    assert_eq!(w.to_vec(), w2.to_vec());
    assert_eq!(b.to_vec(), b2.to_vec());
    assert_eq!(sched.state(), sched2.state());
}

#[test]
fn one_cycle_and_plateau_states_survive_the_checkpoint_encoding() {
    let (w, b) = params();
    let mut opt = adamw(&w, &b);
    let mut cycle = OneCycleLr::new(&mut opt, OneCycleConfig::new(0.1, 10)).unwrap();
    cycle.step(&mut opt);
    let mut plateau = ReduceLrOnPlateau::new(&mut opt, ReduceLrOnPlateauConfig::default()).unwrap();
    let fresh = plateau.state();
    plateau.step(&mut opt, 0.5);
    for state in [cycle.state(), fresh, plateau.state()] {
        let back: SchedulerState = format::decode(&format::encode(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }
}
