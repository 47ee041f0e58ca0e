//! Issue 12: learning rates must be finite, and `clip_grad_norm_with` offers PyTorch's
//! `error_if_nonfinite`.

use tapegrad_autograd::Tensor;
use tapegrad_optim::{
    clip_grad_norm, clip_grad_norm_with, Adagrad, AdagradConfig, Adam, AdamConfig, AdamW,
    AdamWConfig, GradientDescent, GradientDescentConfig, OptimError, Optimizer, RMSprop,
    RMSpropConfig, Sgd, SgdConfig,
};

fn param() -> Tensor {
    Tensor::from_vec(vec![1.0, -2.0], &[2])
        .unwrap()
        .with_requires_grad(true)
}

/// Every optimizer built with learning rate `lr`.
fn all(lr: f64) -> Vec<Result<Box<dyn Optimizer>, OptimError>> {
    fn boxed<O: Optimizer + 'static>(
        r: Result<O, OptimError>,
    ) -> Result<Box<dyn Optimizer>, OptimError> {
        r.map(|o| Box::new(o) as Box<dyn Optimizer>)
    }
    let p = || vec![param()];
    vec![
        boxed(GradientDescent::new(p(), GradientDescentConfig { lr })),
        boxed(Sgd::new(
            p(),
            SgdConfig {
                lr,
                ..Default::default()
            },
        )),
        boxed(Adam::new(
            p(),
            AdamConfig {
                lr,
                ..Default::default()
            },
        )),
        boxed(AdamW::new(
            p(),
            AdamWConfig {
                lr,
                ..Default::default()
            },
        )),
        boxed(RMSprop::new(
            p(),
            RMSpropConfig {
                lr,
                ..Default::default()
            },
        )),
        boxed(Adagrad::new(
            p(),
            AdagradConfig {
                lr,
                ..Default::default()
            },
        )),
    ]
}

#[test]
fn constructors_refuse_an_infinite_learning_rate() {
    for lr in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.1] {
        for built in all(lr) {
            let err = built.err().expect("accepted a bad learning rate");
            assert_eq!(err.to_string(), format!("Invalid learning rate: {lr}"));
        }
    }
}

#[test]
fn set_lr_refuses_nan_and_infinity() {
    for opt in all(0.1) {
        let mut opt = opt.unwrap();
        for lr in [f64::NAN, f64::INFINITY, -1.0] {
            let err = opt.try_set_lr(lr).unwrap_err();
            assert_eq!(err.to_string(), format!("Invalid learning rate: {lr}"));
            assert_eq!(
                opt.lr(),
                0.1,
                "{}: a refused rate changed nothing",
                opt.kind()
            );
        }
        opt.try_set_lr(0.5).unwrap();
        assert_eq!(opt.lr(), 0.5);
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| opt.set_lr(f64::NAN)))
            .unwrap_err();
        let msg = panic.downcast_ref::<String>().unwrap();
        assert_eq!(msg, "set_lr: Invalid learning rate: NaN");
    }
}

#[test]
fn error_if_nonfinite_leaves_the_gradients_alone() {
    let p = param();
    p.set_grad(Some(
        &Tensor::from_vec(vec![f32::INFINITY, 1.0], &[2]).unwrap(),
    ))
    .unwrap();
    let err = clip_grad_norm_with(std::slice::from_ref(&p), 1.0, 2.0, true).unwrap_err();
    assert!(
        matches!(err, OptimError::NonFiniteGradNorm { total_norm, .. } if total_norm.is_infinite())
    );
    assert!(err.to_string().contains("cannot be clipped"), "{err}");
    assert_eq!(p.grad().unwrap().to_vec(), vec![f32::INFINITY, 1.0]);
    // Without the option the norm passes through as PyTorch's default does.
    assert!(
        clip_grad_norm_with(std::slice::from_ref(&p), 1.0, 2.0, false)
            .unwrap()
            .is_infinite()
    );
    // Finite norms clip the same either way.
    let (a, b) = (param(), param());
    for t in [&a, &b] {
        t.set_grad(Some(&Tensor::from_vec(vec![3.0, 4.0], &[2]).unwrap()))
            .unwrap();
    }
    assert_eq!(
        clip_grad_norm_with(std::slice::from_ref(&a), 1.0, 2.0, true).unwrap(),
        5.0
    );
    assert_eq!(clip_grad_norm(std::slice::from_ref(&b), 1.0, 2.0), 5.0);
    assert_eq!(a.grad().unwrap().to_vec(), b.grad().unwrap().to_vec());
}
