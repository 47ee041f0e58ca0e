//! Parameter groups (construction errors, lr access, saved state), the new schedulers'
//! errors and checkpointing, and gradient accumulation.

use tapegrad_autograd::Tensor;
use tapegrad_optim::*;

mod common;
use common::{params, train_step};

fn two_group_adamw(w: &Tensor, b: &Tensor) -> AdamW {
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

#[test]
fn a_parameter_given_twice_is_an_error_naming_it() {
    let (w, b) = params();
    let err = AdamW::with_groups(vec![
        ParamGroup::new(vec![w.clone(), b.clone()], AdamWConfig::default()),
        ParamGroup::new(vec![w.clone()], AdamWConfig::default()),
    ])
    .err()
    .unwrap();
    assert_eq!(
        err,
        OptimError::DuplicateParameter {
            first: (0, 0),
            second: (1, 0),
            shape: vec![3, 2]
        }
    );
    assert_eq!(
        err.to_string(),
        "parameter 0 of group 1 (shape [3, 2]) is also parameter 0 of group 0: a parameter \
         may appear in one parameter group only, and once"
    );
    // Twice in one group would update it twice per step.
    assert!(matches!(
        Sgd::new(vec![b.clone(), b.clone()], SgdConfig::default()),
        Err(OptimError::DuplicateParameter {
            first: (0, 0),
            second: (0, 1),
            ..
        })
    ));
    // A clone of the handle is the same parameter; a detached copy is not.
    assert!(Adam::new(vec![w.clone(), w.detach()], AdamConfig::default()).is_ok());
    assert!(matches!(
        Adagrad::with_groups(vec![]),
        Err(OptimError::EmptyParameters)
    ));
    assert!(matches!(
        RMSprop::with_groups(vec![ParamGroup::new(vec![], RMSpropConfig::default())]),
        Err(OptimError::EmptyParameters)
    ));
    let bad = GradientDescent::with_groups(vec![
        ParamGroup::new(vec![w.clone()], GradientDescentConfig { lr: 0.1 }),
        ParamGroup::new(vec![b.clone()], GradientDescentConfig { lr: -0.1 }),
    ]);
    assert_eq!(
        bad.err().unwrap().to_string(),
        "Invalid learning rate: -0.1 (parameter group 1)"
    );
}

#[test]
fn groups_have_their_own_learning_rates() {
    let (w, b) = params();
    let mut opt = two_group_adamw(&w, &b);
    assert_eq!(opt.num_groups(), 2);
    assert_eq!(opt.params().len(), 2);
    assert!(opt.group_params(0)[0].same_storage(&w));
    assert_eq!(opt.group_configs()[1].weight_decay, 0.0);
    opt.set_group_lr(1, 0.5);
    assert_eq!(opt.lrs(), vec![0.01, 0.5]);
    assert_eq!(opt.lr(), 0.01, "lr() is group 0's");
    opt.set_lr(0.2);
    assert_eq!(opt.lrs(), vec![0.2, 0.2], "set_lr sets every group");
    assert_eq!(opt.group_momentum(1), Some(0.9), "Adam's momentum is beta1");
    opt.set_group_momentum(1, 0.8).unwrap();
    assert_eq!(opt.group_configs()[1].betas, (0.8, 0.999));
    assert!(opt.set_group_momentum(0, 1.0).is_err(), "beta1 must be < 1");
    let mut gd = GradientDescent::new(vec![w.clone()], GradientDescentConfig { lr: 0.1 }).unwrap();
    assert_eq!(gd.group_momentum(0), None);
    assert!(gd.set_group_momentum(0, 0.9).is_err());
}

#[test]
#[should_panic(expected = "parameter group 2 does not exist: the optimizer has 2")]
fn a_group_index_past_the_end_panics_with_its_count() {
    let (w, b) = params();
    two_group_adamw(&w, &b).group_lr(2);
}

/// AdamW with two groups under warm-up then cosine: stop after 3 steps, save both states
/// through JSON, resume into freshly built ones: bit-identical to not stopping.
#[test]
fn grouped_optimizer_and_sequential_schedule_resume_bit_identically() {
    fn schedule(opt: &mut AdamW) -> SequentialLr {
        let warmup = LinearLr::new(opt, 0.1, 1.0, 2).unwrap();
        let cosine = CosineAnnealingLr::new(opt, 6, 0.001).unwrap();
        SequentialLr::new(opt, vec![Box::new(warmup), Box::new(cosine)], vec![2]).unwrap()
    }
    let (w, b) = params();
    let mut opt = two_group_adamw(&w, &b);
    let mut sched = schedule(&mut opt);
    for _ in 0..3 {
        train_step(&mut opt, &w, &b);
        sched.step(&mut opt);
    }
    let saved_opt = serde_json::to_string(&opt.state()).unwrap();
    let saved_sched = serde_json::to_string(&sched.state()).unwrap();
    let (w2, b2) = (
        w.detach().with_requires_grad(true),
        b.detach().with_requires_grad(true),
    );
    for _ in 0..4 {
        train_step(&mut opt, &w, &b);
        sched.step(&mut opt);
    }
    let mut opt2 = two_group_adamw(&w2, &b2);
    let mut sched2 = schedule(&mut opt2);
    opt2.load_state(&serde_json::from_str(&saved_opt).unwrap())
        .unwrap();
    sched2
        .load_state(&serde_json::from_str(&saved_sched).unwrap())
        .unwrap();
    assert_eq!(opt2.group_initial_lr(1), Some(0.01));
    for _ in 0..4 {
        train_step(&mut opt2, &w2, &b2);
        sched2.step(&mut opt2);
    }
    assert_eq!(w.to_vec(), w2.to_vec());
    assert_eq!(b.to_vec(), b2.to_vec());
    assert_eq!(opt.state(), opt2.state());
    assert_eq!(sched.state(), sched2.state());
    assert_eq!(sched.last_epoch(), 7);

    // A state with other groups is refused and changes nothing.
    let one_group = AdamW::new(vec![w.clone(), b.clone()], AdamWConfig::default()).unwrap();
    assert_eq!(
        opt2.load_state(&one_group.state()),
        Err(OptimError::GroupCountMismatch {
            expected: 2,
            found: 1
        })
    );
    let mut swapped = AdamW::with_groups(vec![
        ParamGroup::new(vec![], AdamWConfig::default()),
        ParamGroup::new(vec![w.clone(), b.clone()], AdamWConfig::default()),
    ])
    .unwrap();
    assert_eq!(
        swapped.load_state(&opt.state()),
        Err(OptimError::GroupSizeMismatch {
            group: 0,
            expected: 0,
            found: 1
        })
    );
    assert_eq!(opt2.state(), opt.state());
    // A scheduler state of another kind is refused.
    let mut exp = ExponentialLr::new(&mut opt2, 0.9);
    assert!(matches!(
        exp.load_state(&sched.state()),
        Err(OptimError::KindMismatch { .. })
    ));
}

#[test]
fn sgd_that_gains_momentum_mid_run_still_saves_and_loads() {
    let (w, b) = params();
    let mut opt = Sgd::new(
        vec![w.clone(), b.clone()],
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    train_step(&mut opt, &w, &b);
    opt.set_group_momentum(0, 0.9).unwrap();
    let state = opt.state();
    assert!(state.buffers["momentum_buffer"].iter().all(Option::is_none));
    let mut fresh = Sgd::new(vec![w.clone(), b.clone()], SgdConfig::default()).unwrap();
    fresh.load_state(&state).unwrap();
    assert_eq!(fresh.config().momentum, 0.9);
}

#[test]
fn lambda_one_cycle_and_plateau_states_round_trip() {
    let (w, b) = params();
    let mut opt = Sgd::with_groups(vec![
        ParamGroup::new(
            vec![w.clone()],
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            },
        ),
        ParamGroup::new(
            vec![b.clone()],
            SgdConfig {
                lr: 0.2,
                momentum: 0.9,
                ..Default::default()
            },
        ),
    ])
    .unwrap();
    let mut lambda = LambdaLr::new(&mut opt, |e| 1.0 / (1 + e) as f64);
    lambda.step(&mut opt);
    lambda.step(&mut opt);
    assert_eq!(opt.lrs(), vec![0.1 / 3.0, 0.2 / 3.0]);
    let json = serde_json::to_string(&lambda.state()).unwrap();
    let mut again = LambdaLr::new(&mut opt, |e| 1.0 / (1 + e) as f64);
    again
        .load_state(&serde_json::from_str(&json).unwrap())
        .unwrap();
    assert_eq!(again.last_epoch(), 2);
    again.step(&mut opt);
    assert_eq!(
        opt.lrs(),
        vec![0.1 / 4.0, 0.2 / 4.0],
        "from the saved base lrs"
    );

    let mut cycle = OneCycleLr::new(&mut opt, OneCycleConfig::new(1.0, 4)).unwrap();
    cycle.step(&mut opt);
    let saved: SchedulerState =
        serde_json::from_str(&serde_json::to_string(&cycle.state()).unwrap()).unwrap();
    let mut resumed = OneCycleLr::new(&mut opt, OneCycleConfig::new(1.0, 4)).unwrap();
    resumed.load_state(&saved).unwrap();
    for _ in 0..3 {
        cycle.step(&mut opt);
        resumed.step(&mut opt);
        assert_eq!(cycle.last_lrs(), resumed.last_lrs());
    }
    let past = cycle.try_step(&mut opt).unwrap_err();
    assert_eq!(
        past.to_string(),
        "Tried to step 5 times. The specified number of total steps is 4"
    );
    assert_eq!(cycle.last_epoch(), 4, "a refused step changes nothing");

    let mut plateau = ReduceLrOnPlateau::new(
        &mut opt,
        ReduceLrOnPlateauConfig {
            patience: 0,
            factor: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    opt.set_lr(0.1);
    plateau.step(&mut opt, 1.0);
    plateau.step(&mut opt, 2.0);
    assert_eq!(opt.lrs(), vec![0.05, 0.05]);
    let json = serde_json::to_string(&plateau.state()).unwrap();
    let mut back = ReduceLrOnPlateau::new(&mut opt, ReduceLrOnPlateauConfig::default()).unwrap();
    back.load_state(&serde_json::from_str(&json).unwrap())
        .unwrap();
    assert_eq!(back, plateau);
    assert_eq!(back.best(), Some(1.0));
}

#[test]
fn scheduler_configuration_errors() {
    let (w, b) = params();
    let mut sgd = Sgd::new(
        vec![w.clone()],
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    let a = ExponentialLr::new(&mut sgd, 0.9);
    let c = ExponentialLr::new(&mut sgd, 0.8);
    let err = SequentialLr::new(
        &mut sgd,
        vec![Box::new(a.clone()), Box::new(c.clone())],
        vec![],
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("number of schedulers 2"), "{err}");
    let d = ExponentialLr::new(&mut sgd, 0.7);
    let err = SequentialLr::new(
        &mut sgd,
        vec![Box::new(a), Box::new(c), Box::new(d)],
        vec![3, 3],
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("strictly increasing"), "{err}");
    assert!(SequentialLr::new(&mut sgd, vec![], vec![]).is_err());

    let mut adagrad = Adagrad::new(vec![b.clone()], AdagradConfig::default()).unwrap();
    let err = OneCycleLr::new(&mut adagrad, OneCycleConfig::new(0.1, 10))
        .err()
        .unwrap();
    assert!(err.to_string().contains("momentum or beta1"), "{err}");
    let no_momentum = OneCycleConfig {
        cycle_momentum: false,
        ..OneCycleConfig::new(0.1, 10)
    };
    assert!(OneCycleLr::new(&mut adagrad, no_momentum.clone()).is_ok());
    for bad in [
        OneCycleConfig {
            total_steps: 0,
            ..no_momentum.clone()
        },
        OneCycleConfig {
            pct_start: 1.5,
            ..no_momentum.clone()
        },
        OneCycleConfig {
            max_lr: vec![0.1, 0.2],
            ..no_momentum.clone()
        },
        OneCycleConfig {
            pct_start: 0.1,
            ..no_momentum.clone()
        }, // a phase of no length
    ] {
        assert!(OneCycleLr::new(&mut adagrad, bad).is_err());
    }
    let mut adam = Adam::new(vec![w.clone()], AdamConfig::default()).unwrap();
    let bad_beta = OneCycleConfig {
        max_momentum: 1.0,
        ..OneCycleConfig::new(0.1, 10)
    };
    assert!(OneCycleLr::new(&mut adam, bad_beta).is_err());
    assert_eq!(
        adam.config().betas.0,
        0.9,
        "a refused one-cycle leaves beta1 alone"
    );

    let mut plateau = |factor, min_lr| {
        ReduceLrOnPlateau::new(
            &mut adagrad,
            ReduceLrOnPlateauConfig {
                factor,
                min_lr,
                ..Default::default()
            },
        )
    };
    assert!(plateau(1.0, vec![0.0]).is_err());
    assert!(plateau(0.5, vec![0.0, 0.0]).is_err());
    assert!(plateau(0.5, vec![0.001]).is_ok());
}

#[test]
#[should_panic(expected = "Tried to step 3 times")]
fn one_cycle_past_its_total_steps_panics_as_pytorch_raises() {
    let (w, _) = params();
    let mut sgd = Sgd::new(
        vec![w],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut sched = OneCycleLr::new(&mut sgd, OneCycleConfig::new(1.0, 2)).unwrap();
    for _ in 0..3 {
        sched.step(&mut sgd);
    }
}

/// k micro-batches, each loss divided by k, gradients accumulated by `backward`, one
/// step: the same update as one batch of k times the size (up to float rounding).
#[test]
fn gradient_accumulation_equals_one_large_batch() {
    let xs: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let ys: Vec<f32> = (0..24).map(|i| ((i * 5 % 13) as f32 - 6.0) / 5.0).collect();
    let rows = |t: &[f32], cols: usize, from: usize, n: usize| {
        Tensor::from_vec(t[from * cols..(from + n) * cols].to_vec(), &[n, cols]).unwrap()
    };
    let loss = |w: &Tensor, b: &Tensor, from: usize, n: usize| {
        rows(&xs, 2, from, n)
            .linear(w, Some(b))
            .sub(&rows(&ys, 3, from, n))
            .pow(2.0)
            .mean()
    };
    let config = AdamWConfig {
        lr: 0.05,
        weight_decay: 0.1,
        ..Default::default()
    };
    let (w1, b1) = params();
    let (w2, b2) = params();
    let mut full = AdamW::new(vec![w1.clone(), b1.clone()], config).unwrap();
    let mut accumulated = AdamW::new(vec![w2.clone(), b2.clone()], config).unwrap();
    let k = 4;
    for _ in 0..5 {
        full.zero_grad();
        loss(&w1, &b1, 0, 8).backward();
        full.step();

        accumulated.zero_grad();
        for micro in 0..k {
            loss(&w2, &b2, micro * 2, 2).div_scalar(k as f32).backward();
        }
        accumulated.step();
    }
    for (a, f) in w2
        .to_vec()
        .iter()
        .chain(&b2.to_vec())
        .zip(w1.to_vec().iter().chain(&b1.to_vec()))
    {
        assert!((a - f).abs() <= 1e-5, "accumulated {a}, full batch {f}");
    }
    assert_ne!(
        w1.to_vec(),
        params().0.to_vec(),
        "the steps moved the weights"
    );
}
