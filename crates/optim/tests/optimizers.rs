//! Optimizer behaviour beyond the PyTorch replay: hyper-parameter validation, defaults,
//! parameters without gradients, learning-rate changes.

use tapegrad_autograd::Tensor;
use tapegrad_optim::*;

mod common;
use common::{params, train_step};

fn message(err: OptimError) -> String {
    err.to_string()
}

#[test]
fn invalid_hyper_parameters_are_named() {
    let p = || vec![params().0];
    let sgd = |c: SgdConfig| message(Sgd::new(p(), c).err().unwrap());
    assert_eq!(
        sgd(SgdConfig {
            lr: -0.1,
            ..Default::default()
        }),
        "Invalid learning rate: -0.1"
    );
    assert_eq!(
        sgd(SgdConfig {
            momentum: -0.5,
            ..Default::default()
        }),
        "Invalid momentum value: -0.5"
    );
    assert_eq!(
        sgd(SgdConfig {
            weight_decay: -1.0,
            ..Default::default()
        }),
        "Invalid weight_decay value: -1"
    );
    assert!(sgd(SgdConfig {
        nesterov: true,
        ..Default::default()
    })
    .starts_with("Nesterov momentum requires"));
    let damped = SgdConfig {
        nesterov: true,
        momentum: 0.9,
        dampening: 0.1,
        ..Default::default()
    };
    assert!(sgd(damped).contains("zero dampening"));
    assert!(matches!(
        Sgd::new(
            p(),
            SgdConfig {
                lr: f64::NAN,
                ..Default::default()
            }
        ),
        Err(OptimError::InvalidHyperParameter(_))
    ));

    let adam = |c: AdamConfig| message(Adam::new(p(), c).err().unwrap());
    assert_eq!(
        adam(AdamConfig {
            betas: (1.0, 0.999),
            ..Default::default()
        }),
        "Invalid beta parameter at index 0: 1"
    );
    assert_eq!(
        adam(AdamConfig {
            betas: (0.9, -0.1),
            ..Default::default()
        }),
        "Invalid beta parameter at index 1: -0.1"
    );
    assert_eq!(
        adam(AdamConfig {
            eps: -1e-8,
            ..Default::default()
        }),
        "Invalid epsilon value: -0.00000001"
    );
    let adamw = AdamW::new(
        p(),
        AdamWConfig {
            weight_decay: -0.01,
            ..Default::default()
        },
    );
    assert_eq!(
        message(adamw.err().unwrap()),
        "Invalid weight_decay value: -0.01"
    );
    let rms = RMSprop::new(
        p(),
        RMSpropConfig {
            alpha: -0.9,
            ..Default::default()
        },
    );
    assert_eq!(message(rms.err().unwrap()), "Invalid alpha value: -0.9");
    let ada = Adagrad::new(
        p(),
        AdagradConfig {
            lr_decay: -1.0,
            ..Default::default()
        },
    );
    assert_eq!(message(ada.err().unwrap()), "Invalid lr_decay value: -1");
    let ada = Adagrad::new(
        p(),
        AdagradConfig {
            initial_accumulator_value: -1.0,
            ..Default::default()
        },
    );
    assert_eq!(
        message(ada.err().unwrap()),
        "Invalid initial_accumulator_value value: -1"
    );
    let gd = GradientDescent::new(p(), GradientDescentConfig { lr: -2.0 });
    assert_eq!(message(gd.err().unwrap()), "Invalid learning rate: -2");
    assert_eq!(
        Sgd::new(vec![], SgdConfig::default()).err(),
        Some(OptimError::EmptyParameters)
    );
}

#[test]
fn defaults_are_pytorchs() {
    assert_eq!(SgdConfig::default().lr, 1e-3);
    assert_eq!(AdamConfig::default().betas, (0.9, 0.999));
    assert_eq!(AdamConfig::default().eps, 1e-8);
    assert_eq!(AdamConfig::default().weight_decay, 0.0);
    assert_eq!(AdamWConfig::default().weight_decay, 0.01);
    assert_eq!(RMSpropConfig::default().lr, 1e-2);
    assert_eq!(RMSpropConfig::default().alpha, 0.99);
    assert_eq!(AdagradConfig::default().eps, 1e-10);
}

#[test]
fn parameters_without_gradient_are_skipped() {
    let (w, b) = params();
    let frozen = Tensor::from_vec(vec![1.0, 2.0], &[2])
        .unwrap()
        .with_requires_grad(true);
    let mut opt = Adam::new(
        vec![w.clone(), frozen.clone(), b.clone()],
        AdamConfig::default(),
    )
    .unwrap();
    train_step(&mut opt, &w, &b);
    assert_eq!(frozen.to_vec(), vec![1.0, 2.0]);
    let state = opt.state();
    assert_eq!(state.steps, vec![1, 0, 1]);
    assert!(state.buffers["exp_avg"][1].is_none());
    assert!(state.buffers["exp_avg"][2].is_some());

    let mut sgd = Sgd::new(
        vec![frozen.clone()],
        SgdConfig {
            lr: 0.5,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    sgd.step();
    assert_eq!(frozen.to_vec(), vec![1.0, 2.0]);
    frozen.set_grad(Some(&Tensor::ones(&[2]))).unwrap();
    sgd.step();
    assert_eq!(frozen.to_vec(), vec![0.5, 1.5]);
    sgd.zero_grad();
    assert!(frozen.grad().is_none());
}

#[test]
fn set_lr_changes_the_next_step() {
    let p = Tensor::from_vec(vec![1.0], &[1])
        .unwrap()
        .with_requires_grad(true);
    let mut opt = GradientDescent::new(vec![p.clone()], GradientDescentConfig { lr: 0.5 }).unwrap();
    assert_eq!(opt.lr(), 0.5);
    opt.set_lr(0.25);
    assert_eq!(opt.lr(), 0.25);
    p.set_grad(Some(&Tensor::ones(&[1]))).unwrap();
    opt.step();
    assert_eq!(p.to_vec(), vec![0.75]);
    assert_eq!(
        opt.state().groups[0].config,
        OptimizerConfig::GradientDescent(GradientDescentConfig { lr: 0.25 })
    );
}
