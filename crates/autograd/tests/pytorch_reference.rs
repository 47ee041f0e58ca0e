//! Forward values and gradients of every op against PyTorch.
//!
//! `tools/reference/ops_reference.py` (run by hand) wrote, for each case, the inputs,
//! PyTorch's output, a random weight tensor W and the gradients of `(output · W).sum()`.
//! Here the same op runs on the same inputs and both must agree closely.

use serde_json::Value;
use tapegrad_autograd::{GeluApprox, Tensor};

#[path = "../../../tests/support/reference.rs"]
mod reference;

/// PyTorch agreement: |ours − theirs| ≤ TOL·max(|theirs|, 1).
const TOL: f32 = 1e-5;

const JSON: &str = include_str!("../../../tools/reference/ops_reference.json");

/// The op of each case, by name; index arguments are the script's fixed ones.
fn run(name: &str, x: &[Tensor]) -> Tensor {
    match name {
        "add_bcast" | "sub_bcast" | "mul_bcast" | "div" | "div_bcast" => match &name[..3] {
            "add" => &x[0] + &x[1],
            "sub" => &x[0] - &x[1],
            "mul" => &x[0] * &x[1],
            _ => &x[0] / &x[1],
        },
        "add_scalar" => &x[0] + 1.5,
        "mul_scalar" => &x[0] * -2.5,
        "div_scalar" => &x[0] / 3.0,
        "rsub_scalar" => 3.0 - &x[0],
        "rdiv_scalar" => 3.0 / &x[0],
        "neg" => -&x[0],
        "exp" => x[0].exp(),
        "abs" => x[0].abs(),
        "relu" => x[0].relu(),
        "sigmoid" => x[0].sigmoid(),
        "tanh" => x[0].tanh(),
        "log" => x[0].log(),
        "sqrt" => x[0].sqrt(),
        "pow_3" => x[0].pow(3.0),
        "pow_neg_half" => x[0].pow(-0.5),
        "leaky_relu" => x[0].leaky_relu(0.1),
        "gelu_none" => x[0].gelu(GeluApprox::None),
        "gelu_tanh" => x[0].gelu(GeluApprox::Tanh),
        "clamp" => x[0].clamp(-0.5, 0.5),
        "matmul_2d" | "matmul_bcast" | "matmul_3d_2d" | "matmul_3d" => x[0].matmul(&x[1]),
        "linear" => x[0].linear(&x[1], Some(&x[2])),
        "transpose_0_2" => x[0].transpose(0, 2),
        "reshape" => x[0].reshape(&[6, 4]),
        "broadcast_to" => x[0].broadcast_to(&[2, 3, 4]),
        "sum" => x[0].sum(),
        "mean" => x[0].mean(),
        "sum_axis_1" => x[0].sum_axis(1, false),
        "mean_axis_0_keepdim" => x[0].mean_axis(0, true),
        "max_axis_1" => x[0].max_axis(1, false),
        "softmax_1" | "softmax_extreme" => x[0].softmax(1),
        "softmax_0" => x[0].softmax(0),
        "log_softmax_1" | "log_softmax_extreme" => x[0].log_softmax(1),
        "index_select_0" => x[0].index_select(0, &[4, 0, 4, 2]),
        "gather_1" => x[0].gather(1, &[2, 0, 1, 1], 1),
        "concat_1" => Tensor::concat(&[&x[0], &x[1]], 1),
        "unsqueeze_1" => x[0].unsqueeze(1),
        other => panic!("no Rust op for reference case {other}"),
    }
}

#[test]
fn every_op_matches_pytorch() {
    let json: Value = serde_json::from_str(JSON).unwrap();
    let cases = json["cases"].as_array().unwrap();
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let inputs = reference::inputs(case);
        let out = run(name, &inputs);
        reference::check_output_and_grads(case, &inputs, &out, TOL);
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    assert!(checked >= 46);
}
