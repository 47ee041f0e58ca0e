//! Saving and resuming optimizer state: bit-identical continuation, rejected states.

use tapegrad_autograd::Tensor;
use tapegrad_optim::*;

mod common;
use common::{params, train_step};

/// Runs 3 steps, saves (through JSON), runs 4 more; a fresh optimizer over copies of the
/// parameters loads the save and runs the same 4: both must end bit for bit equal.
fn resume_is_exact(make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) {
    let (w, b) = params();
    let mut opt = make(vec![w.clone(), b.clone()]);
    for _ in 0..3 {
        train_step(opt.as_mut(), &w, &b);
    }
    let json = serde_json::to_string(&opt.state()).unwrap();
    let (w2, b2) = (
        w.detach().with_requires_grad(true),
        b.detach().with_requires_grad(true),
    );
    for _ in 0..4 {
        train_step(opt.as_mut(), &w, &b);
    }
    let mut resumed = make(vec![w2.clone(), b2.clone()]);
    let state: OptimizerState = serde_json::from_str(&json).unwrap();
    resumed.load_state(&state).unwrap();
    assert_eq!(resumed.state(), state);
    for _ in 0..4 {
        train_step(resumed.as_mut(), &w2, &b2);
    }
    assert_eq!(w.to_vec(), w2.to_vec(), "{}", opt.kind());
    assert_eq!(b.to_vec(), b2.to_vec(), "{}", opt.kind());
    assert_eq!(opt.state(), resumed.state());
}

#[test]
fn saved_state_resumes_bit_identically() {
    resume_is_exact(|p| {
        let c = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.01,
            ..Default::default()
        };
        Box::new(Sgd::new(p, c).unwrap())
    });
    resume_is_exact(|p| {
        Box::new(
            Adam::new(
                p,
                AdamConfig {
                    lr: 0.01,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    });
    resume_is_exact(|p| {
        Box::new(
            AdamW::new(
                p,
                AdamWConfig {
                    amsgrad: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    });
    resume_is_exact(|p| {
        let c = RMSpropConfig {
            momentum: 0.5,
            centered: true,
            ..Default::default()
        };
        Box::new(RMSprop::new(p, c).unwrap())
    });
    resume_is_exact(|p| {
        Box::new(
            Adagrad::new(
                p,
                AdagradConfig {
                    lr_decay: 0.01,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    });
    resume_is_exact(|p| {
        Box::new(GradientDescent::new(p, GradientDescentConfig { lr: 0.1 }).unwrap())
    });
}

#[test]
fn mismatched_states_are_rejected_and_change_nothing() {
    let (w, b) = params();
    let mut adam = Adam::new(vec![w.clone(), b.clone()], AdamConfig::default()).unwrap();
    train_step(&mut adam, &w, &b);
    let good = adam.state();
    assert_eq!(good.kind, "Adam");
    assert_eq!(good.steps, vec![1, 1]);
    assert_eq!(good.buffers["exp_avg"][0].as_ref().map(Vec::len), Some(6));

    let mut sgd = Sgd::new(vec![w.clone(), b.clone()], SgdConfig::default()).unwrap();
    assert!(matches!(
        sgd.load_state(&good),
        Err(OptimError::KindMismatch { .. })
    ));
    let mut adamw = AdamW::new(vec![w.clone(), b.clone()], AdamWConfig::default()).unwrap();
    assert_eq!(
        adamw.load_state(&good).unwrap_err().to_string(),
        "state is for an optimizer of kind Adam, this one is AdamW"
    );

    let mut one = Adam::new(vec![w.clone()], AdamConfig::default()).unwrap();
    assert_eq!(
        one.load_state(&good),
        Err(OptimError::ParamCountMismatch {
            expected: 1,
            found: 2
        })
    );
    // Same count, wrong sizes: b where w was.
    let mut swapped = Adam::new(vec![b.clone(), w.clone()], AdamConfig::default()).unwrap();
    let err = swapped.load_state(&good).unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::BufferLength {
                param: 0,
                expected: 3,
                found: 6,
                ..
            }
        ),
        "{err}"
    );

    let mut fresh = Adam::new(vec![w.clone(), b.clone()], AdamConfig::default()).unwrap();
    let mut missing = good.clone();
    missing.buffers.remove("exp_avg_sq");
    assert!(fresh
        .load_state(&missing)
        .unwrap_err()
        .to_string()
        .contains("exp_avg_sq"));
    let mut ams = good.clone();
    ams.groups[0].config = OptimizerConfig::Adam(AdamConfig {
        amsgrad: true,
        ..Default::default()
    });
    assert!(fresh
        .load_state(&ams)
        .unwrap_err()
        .to_string()
        .contains("max_exp_avg_sq"));
    let mut bad_lr = good.clone();
    bad_lr.groups[0].config = OptimizerConfig::Adam(AdamConfig {
        lr: -1.0,
        ..Default::default()
    });
    assert!(fresh.load_state(&bad_lr).is_err());
    let mut no_steps = good.clone();
    no_steps.steps = vec![0, 1];
    assert!(fresh.load_state(&no_steps).is_err());
    // Nothing was adopted by the failed loads.
    assert_eq!(fresh.state().steps, vec![0, 0]);
    fresh.load_state(&good).unwrap();
    assert_eq!(fresh.state(), good);
}
