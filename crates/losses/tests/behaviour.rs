//! Errors for bad targets and options, stability for extreme logits, and the PyTorch
//! behaviours the reference file does not cover (K-dim inputs, all-ignored batches).

use tapegrad_autograd::{Tensor, TensorError};
use tapegrad_losses::*;

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape).unwrap()
}

fn all_finite(x: &Tensor) -> bool {
    x.to_vec().iter().all(|v| v.is_finite())
}

#[test]
fn elementwise_losses_reject_a_target_of_another_shape() {
    let x = Tensor::zeros(&[2, 3]);
    let y = Tensor::zeros(&[3, 2]);
    let err = mse_loss(&x, &y, Reduction::Mean).unwrap_err();
    assert!(matches!(
        err,
        TensorError::ShapeMismatch { op: "mse_loss", .. }
    ));
    assert_eq!(
        err.to_string(),
        "mse_loss: input [2, 3] and target [3, 2] must have the same shape"
    );
    assert!(l1_loss(&x, &y, Reduction::Sum).is_err());
    assert!(SmoothL1Loss::new().try_forward(&x, &y).is_err());
    assert!(HuberLoss::new().try_forward(&x, &y).is_err());
    assert!(BceWithLogitsLoss::new().try_forward(&x, &y).is_err());
    assert!(KlDivLoss::new().try_forward(&x, &y).is_err());
    let p = Tensor::full(&[2, 3], 0.5);
    let err = BceLoss::new().try_forward(&p, &y).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("binary_cross_entropy: input [2, 3]"));
}

#[test]
#[should_panic(expected = "mse_loss: input [2] and target [3] must have the same shape")]
fn forward_panics_with_the_errors_message() {
    MseLoss::new().forward(&Tensor::zeros(&[2]), &Tensor::zeros(&[3]));
}

#[test]
fn class_losses_reject_a_wrong_target_count() {
    let logits = Tensor::zeros(&[3, 4]);
    let err = CrossEntropyLoss::new()
        .try_forward(&logits, &[0, 1])
        .unwrap_err();
    assert!(matches!(
        err,
        TensorError::ShapeMismatch {
            op: "cross_entropy",
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("[3, 4]") && msg.contains("[2]"), "{msg}");
    assert!(NllLoss::new().try_forward(&logits, &[0, 1, 2, 3]).is_err());
}

#[test]
fn class_losses_reject_a_bad_class_index() {
    let logits = Tensor::zeros(&[3, 4]);
    let err = CrossEntropyLoss::new()
        .try_forward(&logits, &[0, 4, 1])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("cross_entropy: target 4 at position 1 is not a class index in 0..4"),
        "{msg}"
    );
    let err = NllLoss::new()
        .try_forward(&logits, &[0, -1, 1])
        .unwrap_err();
    assert!(err.to_string().contains("target -1 at position 1"), "{err}");
    // ignore_index is honoured before the range check, whatever its value.
    assert!(NllLoss::new()
        .ignore_index(-1)
        .try_forward(&logits, &[0, -1, 1])
        .is_ok());
}

#[test]
fn bad_weights_and_options_are_errors() {
    let logits = Tensor::zeros(&[3, 4]);
    let err = CrossEntropyLoss::new()
        .weight(Tensor::ones(&[3]))
        .try_forward(&logits, &[0, 1, 2])
        .unwrap_err();
    assert!(err.to_string().contains("[3]"), "{err}");
    assert!(CrossEntropyLoss::new()
        .label_smoothing(1.5)
        .try_forward(&logits, &[0, 1, 2])
        .is_err());
    assert!(CrossEntropyLoss::new()
        .try_forward(&Tensor::scalar(1.0), &[0])
        .is_err());

    let p = Tensor::full(&[2, 3], 0.5);
    assert!(BceLoss::new()
        .weight(Tensor::ones(&[2]))
        .try_forward(&p, &p)
        .is_err());
    assert!(BceWithLogitsLoss::new()
        .pos_weight(Tensor::ones(&[4]))
        .try_forward(&p, &p)
        .is_err());
    let outside = t(&[0.5, 1.5], &[2]);
    let err = BceLoss::new().try_forward(&outside, &outside).unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");

    assert!(SmoothL1Loss::new().beta(-1.0).try_forward(&p, &p).is_err());
    assert!(HuberLoss::new().delta(0.0).try_forward(&p, &p).is_err());
}

#[test]
fn cross_entropy_stays_finite_for_logits_of_1000() {
    let logits = t(&[1000.0, -1000.0, 0.0, -1000.0, 1000.0, 0.0], &[2, 3]).with_requires_grad(true);
    let loss = CrossEntropyLoss::new()
        .label_smoothing(0.1)
        .forward(&logits, &[1, 1]);
    assert!(loss.item().is_finite());
    // Row 0 is 2000 nats off, row 1 exactly right: the mean is dominated by row 0.
    assert!(loss.item() > 900.0, "{}", loss.item());
    loss.backward();
    assert!(all_finite(&logits.grad().unwrap()));
}

#[test]
fn bce_with_logits_stays_finite_for_logits_of_1000() {
    let x = t(&[1000.0, -1000.0, 1000.0, -1000.0], &[4]).with_requires_grad(true);
    let y = t(&[1.0, 0.0, 0.0, 1.0], &[4]);
    let loss = BceWithLogitsLoss::new()
        .pos_weight(Tensor::full(&[4], 3.0))
        .reduction(Reduction::None)
        .forward(&x, &y);
    assert_eq!(loss.to_vec(), vec![0.0, 0.0, 1000.0, 3000.0]);
    loss.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 0.0, 1.0, -3.0]);
}

#[test]
fn bce_clamps_the_log_at_minus_100() {
    let x = t(&[0.0, 1.0], &[2]).with_requires_grad(true);
    let y = t(&[1.0, 0.0], &[2]);
    let loss = BceLoss::new().reduction(Reduction::None).forward(&x, &y);
    assert_eq!(loss.to_vec(), vec![100.0, 100.0]);
    loss.sum().backward();
    let g = x.grad().unwrap().to_vec();
    assert!(g[0] < -9.9e11 && g[1] > 9.9e11, "{g:?}");
}

#[test]
fn k_dim_cross_entropy_equals_the_flattened_one() {
    // [N=2, C=3, d=2] against the same scores laid out as [N·d = 4, C = 3].
    let maps = [
        0.1, 0.5, 1.0, -1.0, 2.0, 0.3, 0.0, 0.2, -0.5, 0.7, 1.5, -2.0,
    ];
    let rows = [
        0.1, 1.0, 2.0, 0.5, -1.0, 0.3, 0.0, -0.5, 1.5, 0.2, 0.7, -2.0,
    ];
    let targets = [2, 0, 1, -100];
    let ce = CrossEntropyLoss::new().reduction(Reduction::None);
    let a = ce.forward(&t(&maps, &[2, 3, 2]), &targets);
    let b = ce.forward(&t(&rows, &[4, 3]), &targets);
    assert_eq!(a.shape(), &[2, 2]);
    assert_eq!(a.to_vec(), b.to_vec());
}

#[test]
fn a_single_sample_without_batch_axis_gives_a_scalar() {
    let logits = t(&[1.0, 2.0, 3.0], &[3]);
    let one = CrossEntropyLoss::new()
        .reduction(Reduction::None)
        .forward(&logits, &[2]);
    let batch = CrossEntropyLoss::new().forward(&logits.reshape(&[1, 3]), &[2]);
    assert_eq!(one.shape(), &[] as &[usize]);
    assert_eq!(one.item(), batch.item());
}

#[test]
fn a_batch_whose_targets_are_all_ignored_has_a_nan_mean_like_pytorch() {
    let logits = Tensor::zeros(&[2, 3]);
    let loss = CrossEntropyLoss::new().forward(&logits, &[-100, -100]);
    assert!(loss.item().is_nan());
    let sum = CrossEntropyLoss::new()
        .reduction(Reduction::Sum)
        .forward(&logits, &[-100, -100]);
    assert_eq!(sum.item(), 0.0);
}

#[test]
fn kl_div_takes_either_reduction_enum_and_is_zero_for_equal_distributions() {
    let p = t(&[0.25, 0.75, 0.5, 0.5], &[2, 2]);
    let loss = KlDivLoss::new()
        .reduction(Reduction::Sum)
        .forward(&p.log(), &p);
    assert!(loss.item().abs() < 1e-7);
    let with_zero = t(&[0.0, 1.0], &[1, 2]);
    let loss = KlDivLoss::new()
        .reduction(KlReduction::BatchMean)
        .forward(&t(&[-1.0, -0.5], &[1, 2]), &with_zero);
    assert_eq!(loss.item(), 0.5);
}

#[test]
fn defaults_are_pytorchs() {
    let x = t(&[0.0, 3.0], &[2]);
    let y = Tensor::zeros(&[2]);
    // β = δ = 1 and mean reduction: (0 + (3 − 0.5)) / 2.
    assert_eq!(SmoothL1Loss::new().forward(&x, &y).item(), 1.25);
    assert_eq!(HuberLoss::new().forward(&x, &y).item(), 1.25);
    assert_eq!(Reduction::default(), Reduction::Mean);
    assert_eq!(KlReduction::default(), KlReduction::Mean);
}

#[test]
fn nll_skips_ignored_samples_even_with_log_zero() {
    // Row 1 is ignored and holds log 0 = −∞; it must not turn the loss into NaN.
    let logp = t(&[-0.5, -1.0, f32::NEG_INFINITY, 0.0], &[2, 2]).with_requires_grad(true);
    let loss = NllLoss::new().forward(&logp, &[1, -100]);
    assert_eq!(loss.item(), 1.0);
    loss.backward();
    assert_eq!(logp.grad().unwrap().to_vec(), vec![0.0, -1.0, 0.0, 0.0]);
}
