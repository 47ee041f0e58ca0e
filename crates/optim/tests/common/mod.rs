//! Helpers shared by the integration tests: a small least-squares model.
// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use tapegrad_autograd::Tensor;
use tapegrad_optim::Optimizer;

/// The reference model's initial weight [3, 2] and bias [3], requiring grad.
pub fn params() -> (Tensor, Tensor) {
    let w = Tensor::from_vec(vec![0.5, -0.3, 0.1, 0.8, -0.6, 0.2], &[3, 2]).unwrap();
    let b = Tensor::from_vec(vec![0.1, -0.2, 0.05], &[3]).unwrap();
    (w.with_requires_grad(true), b.with_requires_grad(true))
}

/// One training step on a small least-squares problem.
pub fn train_step(opt: &mut dyn Optimizer, w: &Tensor, b: &Tensor) {
    let x = Tensor::from_vec(vec![1.0, 2.0, -0.5, 0.3, 0.7, -1.2, 2.0, 0.5], &[4, 2]).unwrap();
    let y = Tensor::from_vec(
        vec![
            0.3, -1.0, 0.8, 0.0, 0.5, -0.2, 1.1, 0.2, 0.4, -0.7, 1.5, 0.9,
        ],
        &[4, 3],
    )
    .unwrap();
    opt.zero_grad();
    x.linear(w, Some(b)).sub(&y).pow(2.0).mean().backward();
    opt.step();
}
