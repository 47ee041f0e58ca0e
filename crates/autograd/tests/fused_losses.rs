//! The fused loss ops (`pointwise_loss`, `nll_from_log_probs`) against finite
//! differences and against the same loss composed from ordinary ops, plus their errors.
//! (PyTorch's values for the criteria built on them are checked in `tapegrad-losses`.)

use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad_autograd::{
    gradcheck, nll_from_log_probs, pointwise_loss, PointwiseLoss, Tensor, TensorError,
};

const TOL: f32 = 2e-2;

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// (x − y)², with its derivatives.
fn squared(_: usize, x: f32, y: f32) -> PointwiseLoss {
    let d = x - y;
    PointwiseLoss {
        loss: d * d,
        d_input: 2.0 * d,
        d_target: -2.0 * d,
    }
}

/// The output weighted by fixed random values and summed, so every element counts.
fn weighted(out: &Tensor) -> Tensor {
    (out * &rand_t(out.shape(), 99)).sum()
}

#[test]
fn pointwise_loss_gradients_reach_both_inputs() {
    let inputs = [rand_t(&[3, 4], 1), rand_t(&[3, 4], 2)];
    let report = gradcheck(
        |x| weighted(&pointwise_loss("sq", &x[0], &x[1], squared).unwrap()),
        &inputs,
    )
    .unwrap();
    assert!(report.passes(TOL), "{report:?}");
    // A constant target gets no gradient and the input's is 2(x − y)·g.
    let x = rand_t(&[5], 3).with_requires_grad(true);
    let y = rand_t(&[5], 4);
    pointwise_loss("sq", &x, &y, squared)
        .unwrap()
        .sum()
        .backward();
    let expected: Vec<f32> = (x.to_vec().iter().zip(y.to_vec()))
        .map(|(x, y)| 2.0 * (x - y))
        .collect();
    assert_eq!(x.grad().unwrap().to_vec(), expected);
    assert!(y.grad().is_none());
}

#[test]
fn pointwise_loss_refuses_different_shapes() {
    let err = pointwise_loss("sq", &rand_t(&[2, 3], 1), &rand_t(&[3, 2], 2), squared);
    assert!(matches!(
        err,
        Err(TensorError::ShapeMismatch { op: "sq", .. })
    ));
}

#[test]
fn nll_gradients_with_weights_smoothing_and_ignored_targets() {
    // [N=2, C=3, d=2]: four samples, one of them ignored.
    let target = [2, -100, 0, 1];
    let weight = Tensor::from_vec(vec![0.5, 2.0, 1.0], &[3]).unwrap();
    let input = [rand_t(&[2, 3, 2], 5)];
    let report = gradcheck(
        |x| {
            let (loss, _) =
                nll_from_log_probs("nll", &x[0], &target, Some(&weight), -100, 0.2, &[2, 2])
                    .unwrap();
            weighted(&loss)
        },
        &input,
    )
    .unwrap();
    assert!(report.passes(TOL), "{report:?}");
}

#[test]
fn nll_matches_the_composed_loss() {
    // Without weights or smoothing: l_i = −x[i, t_i]; the divisor counts the samples kept.
    let x = rand_t(&[4, 3], 6).with_requires_grad(true);
    let target = [1, 0, -100, 2];
    let (loss, total) = nll_from_log_probs("nll", &x, &target, None, -100, 0.0, &[4]).unwrap();
    assert_eq!(total, 3.0);
    let values = x.to_vec();
    let expected = [-values[1], -values[3], 0.0, -values[11]];
    assert_eq!(loss.to_vec(), expected);
    loss.sum().backward();
    let mut grad = vec![0.0; 12];
    for (i, c) in [(0, 1), (1, 0), (3, 2)] {
        grad[i * 3 + c] = -1.0;
    }
    assert_eq!(x.grad().unwrap().to_vec(), grad);
}

#[test]
fn nll_refuses_bad_targets_and_weights() {
    let x = rand_t(&[2, 3], 7);
    let err = nll_from_log_probs("nll", &x, &[0, 3], None, -100, 0.0, &[2]).unwrap_err();
    assert!(err.to_string().contains("target 3 at position 1"), "{err}");
    let err = nll_from_log_probs("nll", &x, &[0], None, -100, 0.0, &[2]).unwrap_err();
    assert!(matches!(err, TensorError::ShapeMismatch { op: "nll", .. }));
    let w = Tensor::ones(&[2]);
    let err = nll_from_log_probs("nll", &x, &[0, 1], Some(&w), -100, 0.0, &[2]).unwrap_err();
    assert!(matches!(err, TensorError::ShapeMismatch { op: "nll", .. }));
}
