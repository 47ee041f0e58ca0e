//! Every differentiable op against central finite differences, including the
//! broadcasting cases. Each check reduces the op's output with fixed random weights, so
//! every output element's gradient matters.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad_autograd::{gradcheck, GeluApprox, Tensor};

const TOL: f32 = 2e-2;

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// Values kept away from 0 (for log, sqrt, div and the kinks of relu, abs, clamp).
fn positive_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, 0.5, 2.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// Values at least 0.1 away from 0, with both signs.
fn off_zero_t(shape: &[usize], seed: u64) -> Tensor {
    let x = rand_t(shape, seed).to_vec();
    let data = x
        .iter()
        .map(|v| {
            if v.abs() < 0.1 {
                v.signum() * 0.1 + v
            } else {
                *v
            }
        })
        .collect();
    Tensor::from_vec(data, shape).unwrap()
}

/// Checks `op` as a function of `inputs`, weighting its output by random values.
fn check(name: &str, inputs: Vec<Tensor>, op: impl Fn(&[Tensor]) -> Tensor) {
    let shape = op(&inputs).shape().to_vec();
    let weights = rand_t(&shape, 99);
    let report = gradcheck(|xs| (&op(xs) * &weights).sum(), &inputs).unwrap();
    assert!(report.checked > 0, "{name}: nothing checked");
    assert!(report.passes(TOL), "{name}: {report:?}");
}

#[test]
fn binary_ops_same_shape() {
    let (a, b) = (rand_t(&[3, 4], 1), positive_t(&[3, 4], 2));
    check("add", vec![a.clone(), b.clone()], |x| &x[0] + &x[1]);
    check("sub", vec![a.clone(), b.clone()], |x| &x[0] - &x[1]);
    check("mul", vec![a.clone(), b.clone()], |x| &x[0] * &x[1]);
    check("div", vec![a, b], |x| &x[0] / &x[1]);
}

#[test]
fn binary_ops_broadcast() {
    let cases: [(&[usize], &[usize]); 5] = [
        (&[3, 4], &[4]),
        (&[2, 3, 4], &[3, 1]),
        (&[3, 1], &[1, 4]),
        (&[2, 3], &[]),
        (&[1], &[2, 3]),
    ];
    for (i, (sa, sb)) in cases.into_iter().enumerate() {
        let (a, b) = (rand_t(sa, 10 + i as u64), positive_t(sb, 20 + i as u64));
        check("add bcast", vec![a.clone(), b.clone()], |x| &x[0] + &x[1]);
        check("sub bcast", vec![a.clone(), b.clone()], |x| &x[0] - &x[1]);
        check("mul bcast", vec![a.clone(), b.clone()], |x| &x[0] * &x[1]);
        check("div bcast", vec![a.clone(), b.clone()], |x| &x[0] / &x[1]);
        check(
            "div bcast reversed",
            vec![b.clone(), positive_t(sa, 30)],
            |x| &x[0] / &x[1],
        );
    }
}

#[test]
fn scalar_ops() {
    let a = rand_t(&[2, 5], 3);
    let p = positive_t(&[2, 5], 4);
    check("add_scalar", vec![a.clone()], |x| &x[0] + 1.5);
    check("sub_scalar", vec![a.clone()], |x| &x[0] - 1.5);
    check("mul_scalar", vec![a.clone()], |x| &x[0] * -2.5);
    check("div_scalar", vec![a.clone()], |x| &x[0] / 4.0);
    check("rsub_scalar", vec![a.clone()], |x| 3.0 - &x[0]);
    check("rdiv_scalar", vec![p.clone()], |x| 3.0 / &x[0]);
    check("neg", vec![a], |x| -&x[0]);
    check("pow 3", vec![p.clone()], |x| x[0].pow(3.0));
    check("pow -0.5", vec![p], |x| x[0].pow(-0.5));
}

#[test]
fn math_and_activations() {
    let a = off_zero_t(&[3, 4], 5);
    let p = positive_t(&[3, 4], 6);
    check("exp", vec![a.clone()], |x| x[0].exp());
    check("log", vec![p.clone()], |x| x[0].log());
    check("sqrt", vec![p], |x| x[0].sqrt());
    check("abs", vec![a.clone()], |x| x[0].abs());
    check("relu", vec![a.clone()], |x| x[0].relu());
    check("sigmoid", vec![a.clone()], |x| x[0].sigmoid());
    check("tanh", vec![a.clone()], |x| x[0].tanh());
    check("leaky_relu", vec![a.clone()], |x| x[0].leaky_relu(0.1));
    check("gelu erf", vec![a.clone()], |x| x[0].gelu(GeluApprox::None));
    check("gelu tanh", vec![a.clone()], |x| {
        x[0].gelu(GeluApprox::Tanh)
    });
    // Bounds chosen away from the data so no element sits on a kink.
    let data: Vec<f32> = a
        .to_vec()
        .iter()
        .map(|v| {
            if (v.abs() - 0.5).abs() < 0.05 {
                v * 1.2
            } else {
                *v
            }
        })
        .collect();
    let c = Tensor::from_vec(data, &[3, 4]).unwrap();
    check("clamp", vec![c], |x| x[0].clamp(-0.5, 0.5));
}

#[test]
fn matmul_2d_and_batched() {
    check(
        "matmul 2d",
        vec![rand_t(&[3, 4], 7), rand_t(&[4, 5], 8)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul 3d",
        vec![rand_t(&[2, 3, 4], 9), rand_t(&[2, 4, 5], 10)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul bcast lhs batch",
        vec![rand_t(&[1, 3, 4], 11), rand_t(&[3, 4, 2], 12)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul bcast rhs batch",
        vec![rand_t(&[3, 2, 4], 13), rand_t(&[1, 4, 2], 14)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul 3d by 2d",
        vec![rand_t(&[2, 3, 4], 15), rand_t(&[4, 5], 16)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul 2d by 3d",
        vec![rand_t(&[3, 4], 17), rand_t(&[2, 4, 5], 18)],
        |x| x[0].matmul(&x[1]),
    );
}

#[test]
fn linear_with_and_without_bias() {
    let (x, w, b) = (rand_t(&[4, 3], 19), rand_t(&[5, 3], 20), rand_t(&[5], 21));
    check("linear", vec![x.clone(), w.clone(), b], |t| {
        t[0].linear(&t[1], Some(&t[2]))
    });
    check("linear no bias", vec![x, w.clone()], |t| {
        t[0].linear(&t[1], None)
    });
    check("linear 3d input", vec![rand_t(&[2, 4, 3], 22), w], |t| {
        t[0].linear(&t[1], None)
    });
}

#[test]
fn shape_ops() {
    let a = rand_t(&[2, 3, 4], 23);
    check("reshape", vec![a.clone()], |x| x[0].reshape(&[6, 4]));
    check("unsqueeze", vec![a.clone()], |x| x[0].unsqueeze(1));
    check("squeeze", vec![rand_t(&[3, 1, 2], 24)], |x| x[0].squeeze(1));
    check("transpose 0 2", vec![a.clone()], |x| x[0].transpose(0, 2));
    check("transpose 1 2", vec![a.clone()], |x| x[0].transpose(1, 2));
    check("t", vec![rand_t(&[3, 5], 25)], |x| x[0].t());
    check("broadcast_to", vec![rand_t(&[3, 1], 26)], |x| {
        x[0].broadcast_to(&[2, 3, 4])
    });
    check("index_select rows", vec![rand_t(&[5, 3], 27)], |x| {
        x[0].index_select(0, &[4, 0, 4, 2])
    });
    check("index_select axis 1", vec![a.clone()], |x| {
        x[0].index_select(1, &[2, 2, 0])
    });
    check("gather classes", vec![rand_t(&[4, 3], 28)], |x| {
        x[0].gather(1, &[2, 0, 1, 1], 1)
    });
    check("gather axis 0", vec![rand_t(&[3, 2], 29)], |x| {
        x[0].gather(0, &[2, 0, 1, 1], 2)
    });
    check(
        "concat axis 0",
        vec![rand_t(&[2, 3], 30), rand_t(&[1, 3], 31)],
        |x| Tensor::concat(&[&x[0], &x[1]], 0),
    );
    check(
        "concat axis 1",
        vec![
            rand_t(&[2, 3], 32),
            rand_t(&[2, 2], 33),
            rand_t(&[2, 1], 34),
        ],
        |x| Tensor::concat(&[&x[0], &x[1], &x[2]], 1),
    );
}

#[test]
fn reductions() {
    let a = rand_t(&[3, 4, 2], 35);
    check("sum", vec![a.clone()], |x| x[0].sum());
    check("mean", vec![a.clone()], |x| x[0].mean());
    for axis in 0..3 {
        for keepdim in [false, true] {
            check("sum_axis", vec![a.clone()], |x| {
                x[0].sum_axis(axis, keepdim)
            });
            check("mean_axis", vec![a.clone()], |x| {
                x[0].mean_axis(axis, keepdim)
            });
            check("max_axis", vec![a.clone()], |x| {
                x[0].max_axis(axis, keepdim)
            });
        }
        check("softmax", vec![a.clone()], |x| x[0].softmax(axis));
        check("log_softmax", vec![a.clone()], |x| x[0].log_softmax(axis));
    }
}

#[test]
fn a_small_network_end_to_end() {
    let inputs = [
        rand_t(&[6, 10], 36),
        rand_t(&[5, 10], 37),
        rand_t(&[5], 38),
        rand_t(&[1, 5], 39),
        rand_t(&[1], 40),
    ];
    let report = gradcheck(
        |t| {
            let h = t[0].linear(&t[1], Some(&t[2])).tanh();
            let y = h.linear(&t[3], Some(&t[4]));
            (&y * &y).mean()
        },
        &inputs,
    )
    .unwrap();
    assert!(report.passes(TOL), "{report:?}");
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    // x · detach(x): the tape sees gradient x, the function's true gradient is 2x.
    let a = positive_t(&[4], 41);
    let wrong = gradcheck(|x| (&x[0] * &x[0].detach()).sum(), std::slice::from_ref(&a)).unwrap();
    assert!(!wrong.passes(TOL), "{wrong:?}");
    let right = gradcheck(|x| (&x[0] * &x[0]).sum(), &[a]).unwrap();
    assert!(right.passes(TOL), "{right:?}");
}

#[test]
fn a_custom_op_joins_the_tape() {
    use tapegrad_autograd::custom_op;
    // y = x² written as a custom op, then used inside a larger expression.
    let square = |x: &Tensor| {
        let data: Vec<f32> = x.data().iter().map(|v| v * v).collect();
        let saved = x.detach();
        custom_op("square", &[x], data, x.shape(), move |g| {
            vec![Some(
                g.iter()
                    .zip(saved.data().iter())
                    .map(|(g, x)| 2.0 * x * g)
                    .collect(),
            )]
        })
        .unwrap()
    };
    check("custom square", vec![rand_t(&[3, 2], 42)], |x| {
        square(&x[0]).exp()
    });
    assert!(custom_op("bad", &[], vec![1.0], &[2], |_| vec![]).is_err());
}
