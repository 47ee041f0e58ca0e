//! Every loss against central finite differences, for every reduction, on small random
//! inputs kept away from kinks (|d| = 0, β, δ) and from the edges of [0, 1].

use tapegrad_autograd::rand::rngs::StdRng;
use tapegrad_autograd::rand::SeedableRng;
use tapegrad_autograd::{gradcheck, Tensor};
use tapegrad_losses::*;

const TOL: f32 = 2e-2;
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

fn normal(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn uniform(shape: &[usize], low: f32, high: f32, seed: u64) -> Tensor {
    Tensor::uniform(shape, low, high, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// A target and a prediction whose differences lie in ±[0.2, 0.4] or ±[1.3, 1.7], or
/// ±[2.3, 2.7]: clear of 0 and of the β / δ values used here (0.5, 1, 2).
fn regression_pair(seed: u64) -> (Tensor, Tensor) {
    let target = normal(&[3, 4], seed);
    let offsets = uniform(&[3, 4], -0.1, 0.1, seed + 1).to_vec();
    let bases = [0.3, -0.3, 1.5, -1.5, 2.5, -2.5];
    let input: Vec<f32> = target
        .to_vec()
        .iter()
        .zip(&offsets)
        .enumerate()
        .map(|(i, (t, o))| t + bases[i % bases.len()] + o)
        .collect();
    (Tensor::from_vec(input, &[3, 4]).unwrap(), target)
}

/// Checks `loss` as a function of `inputs`, weighting an unreduced output by random
/// values so that every element's gradient matters.
fn check(name: &str, inputs: Vec<Tensor>, loss: impl Fn(&[Tensor]) -> Tensor) {
    let shape = loss(&inputs).shape().to_vec();
    let weights = normal(&shape, 99);
    let report = gradcheck(|xs| (&loss(xs) * &weights).sum(), &inputs).unwrap();
    assert!(report.checked > 0, "{name}: nothing checked");
    assert!(report.passes(TOL), "{name}: {report:?}");
}

#[test]
fn regression_losses() {
    let (x, y) = regression_pair(1);
    for r in REDUCTIONS {
        let xy = vec![x.clone(), y.clone()];
        check("mse", xy.clone(), |t| mse_loss(&t[0], &t[1], r).unwrap());
        check("l1", xy.clone(), |t| l1_loss(&t[0], &t[1], r).unwrap());
        for beta in [0.5, 1.0, 2.0] {
            check("smooth_l1", xy.clone(), |t| {
                smooth_l1_loss(&t[0], &t[1], r, beta).unwrap()
            });
            check("huber", xy.clone(), |t| {
                huber_loss(&t[0], &t[1], r, beta).unwrap()
            });
        }
        check("smooth_l1 beta 0", xy, |t| {
            smooth_l1_loss(&t[0], &t[1], r, 0.0).unwrap()
        });
    }
}

#[test]
fn binary_cross_entropy_on_probabilities() {
    let x = uniform(&[3, 4], 0.1, 0.9, 2);
    let y = uniform(&[3, 4], 0.0, 1.0, 3);
    let w = uniform(&[4], 0.5, 2.0, 4);
    for r in REDUCTIONS {
        check("bce", vec![x.clone(), y.clone()], |t| {
            binary_cross_entropy(&t[0], &t[1], None, r).unwrap()
        });
        check("bce weight", vec![x.clone(), y.clone()], |t| {
            binary_cross_entropy(&t[0], &t[1], Some(&w), r).unwrap()
        });
    }
}

#[test]
fn binary_cross_entropy_on_logits() {
    let x = normal(&[3, 4], 5).mul_scalar(2.0);
    let y = uniform(&[3, 4], 0.0, 1.0, 6);
    let w = uniform(&[3, 1], 0.5, 2.0, 7);
    let pw = uniform(&[4], 0.5, 3.0, 8);
    for r in REDUCTIONS {
        check("bce_with_logits", vec![x.clone(), y.clone()], |t| {
            binary_cross_entropy_with_logits(&t[0], &t[1], None, None, r).unwrap()
        });
        check("bce_with_logits weights", vec![x.clone(), y.clone()], |t| {
            binary_cross_entropy_with_logits(&t[0], &t[1], Some(&w), Some(&pw), r).unwrap()
        });
    }
}

#[test]
fn cross_entropy_and_nll() {
    let logits = normal(&[4, 5], 9).mul_scalar(1.5);
    let targets = [0, 4, -100, 2];
    let w = uniform(&[5], 0.5, 2.0, 10);
    for r in REDUCTIONS {
        check("ce", vec![logits.clone()], |t| {
            CrossEntropyLoss::new()
                .reduction(r)
                .forward(&t[0], &targets)
        });
        check("ce weight smoothing", vec![logits.clone()], |t| {
            CrossEntropyLoss::new()
                .reduction(r)
                .weight(w.clone())
                .label_smoothing(0.2)
                .forward(&t[0], &targets)
        });
        check("nll weight", vec![logits.clone()], |t| {
            NllLoss::new()
                .reduction(r)
                .weight(w.clone())
                .forward(&t[0], &targets)
        });
    }
    // One class map per position: [N, C, d].
    let maps = normal(&[2, 3, 4], 11);
    let map_targets = [0, 1, 2, 1, 2, 2, 0, -100];
    for r in REDUCTIONS {
        check("ce k-dim", vec![maps.clone()], |t| {
            CrossEntropyLoss::new()
                .reduction(r)
                .label_smoothing(0.1)
                .forward(&t[0], &map_targets)
        });
    }
}

#[test]
fn kl_divergence() {
    let log_q = normal(&[3, 4], 12).log_softmax(1);
    let p = normal(&[3, 4], 13).softmax(1);
    let log_p = p.log();
    for r in [
        KlReduction::None,
        KlReduction::BatchMean,
        KlReduction::Sum,
        KlReduction::Mean,
    ] {
        check("kl", vec![log_q.clone(), p.clone()], |t| {
            kl_div(&t[0], &t[1], r, false).unwrap()
        });
        check("kl log_target", vec![log_q.clone(), log_p.clone()], |t| {
            kl_div(&t[0], &t[1], r, true).unwrap()
        });
    }
}
