//! `Checkpoint::restore_scheduler`: the saved scheduler comes back into a scheduler of
//! the same kind; another kind, or none saved, is an error that says so.

use tapegrad_autograd::Tensor;
use tapegrad_io::{Checkpoint, IoError, SchedulerState};
use tapegrad_nn::Identity;
use tapegrad_optim::{ExponentialLr, LrScheduler, Optimizer, Sgd, SgdConfig, StepLr};

fn sgd() -> Sgd {
    let p = vec![Tensor::zeros(&[2]).with_requires_grad(true)];
    Sgd::new(
        p,
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn a_saved_scheduler_continues_where_it_stopped() {
    let mut opt = sgd();
    let mut sched = StepLr::new(&mut opt, 2, 0.5).unwrap();
    for _ in 0..3 {
        sched.step(&mut opt);
    }
    let bytes = Checkpoint::new(&Identity)
        .with_optimizer(&opt)
        .with_scheduler(sched.clone())
        .to_bytes()
        .unwrap();
    let ckpt = Checkpoint::from_bytes(&bytes).unwrap();

    let mut opt2 = sgd();
    let mut resumed = StepLr::new(&mut opt2, 2, 0.5).unwrap();
    ckpt.restore_optimizer(&mut opt2).unwrap();
    ckpt.restore_scheduler(&mut resumed).unwrap();
    assert_eq!(resumed, sched);
    assert_eq!(resumed.last_epoch(), 3);
    sched.step(&mut opt);
    resumed.step(&mut opt2);
    assert_eq!(opt2.lr(), opt.lr());
    assert_eq!(resumed.last_lr(), 0.025);
}

#[test]
fn another_kind_or_none_is_an_error_naming_both() {
    let mut opt = sgd();
    let sched = StepLr::new(&mut opt, 2, 0.5).unwrap();
    let ckpt = Checkpoint::new(&Identity).with_scheduler(sched);
    assert_eq!(ckpt.scheduler.as_ref().unwrap().kind(), "StepLr");
    let mut other = ExponentialLr::new(&mut opt, 0.9);
    let err = ckpt.restore_scheduler(&mut other).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, IoError::Mismatch(_))
            && message.contains("StepLr")
            && message.contains("ExponentialLr"),
        "{message}"
    );
    let err = Checkpoint::new(&Identity)
        .restore_scheduler(&mut other)
        .unwrap_err();
    assert!(err.to_string().contains("no scheduler state"), "{err}");
    assert!(matches!(
        SchedulerState::from(other.clone()),
        SchedulerState::ExponentialLr(_)
    ));
}
