//! Scheduler state round trips and validation, and clipping edge cases.

use tapegrad_autograd::Tensor;
use tapegrad_optim::*;

#[test]
fn schedulers_serialise_and_resume() {
    let p = Tensor::zeros(&[1]).with_requires_grad(true);
    let mut opt = Sgd::new(
        vec![p],
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut sched = CosineAnnealingLr::new(&mut opt, 10, 0.0).unwrap();
    for _ in 0..3 {
        sched.step(&mut opt);
    }
    let json = serde_json::to_string(&sched).unwrap();
    let mut resumed: CosineAnnealingLr = serde_json::from_str(&json).unwrap();
    assert_eq!(resumed.last_epoch(), 3);
    let mut opt2 = Sgd::new(
        vec![Tensor::zeros(&[1]).with_requires_grad(true)],
        SgdConfig::default(),
    )
    .unwrap();
    opt2.load_state(&opt.state()).unwrap();
    for _ in 0..5 {
        sched.step(&mut opt);
        resumed.step(&mut opt2);
    }
    assert_eq!(sched, resumed);
    assert_eq!(opt.lr(), opt2.lr());

    assert!(StepLr::new(&mut opt, 0, 0.5).is_err());
    assert!(CosineAnnealingLr::new(&mut opt, 0, 0.0).is_err());
    assert!(LinearLr::new(&mut opt, 0.0, 1.0, 5).is_err());
    assert!(LinearLr::new(&mut opt, 0.5, 1.5, 5).is_err());
}

#[test]
fn clipping_edges() {
    let a = Tensor::zeros(&[3]).with_requires_grad(true);
    let none = Tensor::zeros(&[2]).with_requires_grad(true);
    assert_eq!(clip_grad_norm(std::slice::from_ref(&none), 1.0, 2.0), 0.0);
    a.set_grad(Some(&Tensor::from_vec(vec![3.0, -4.0, 0.0], &[3]).unwrap()))
        .unwrap();
    // Below the limit: norm returned, gradients untouched.
    assert_eq!(clip_grad_norm(&[a.clone(), none.clone()], 10.0, 2.0), 5.0);
    assert_eq!(a.grad().unwrap().to_vec(), vec![3.0, -4.0, 0.0]);
    assert_eq!(
        clip_grad_norm(std::slice::from_ref(&a), 2.0, f32::INFINITY),
        4.0
    );
    let g = a.grad().unwrap().to_vec();
    assert!((g[1] + 2.0).abs() < 1e-5 && (g[0] - 1.5).abs() < 1e-5);
    clip_grad_value(&[a.clone(), none.clone()], 1.0);
    assert_eq!(a.grad().unwrap().to_vec(), vec![1.0, -1.0, 0.0]);
    assert!(none.grad().is_none());
}
