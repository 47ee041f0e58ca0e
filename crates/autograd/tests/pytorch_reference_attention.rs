//! Forward values and gradients of the attention ops (issue 8) against PyTorch.
//!
//! `tools/reference/attention_reference.py` (run by hand) wrote, for each case, the
//! inputs, PyTorch's output, a random weight tensor W and the gradients of
//! `(output · W).sum()`. Masks are inputs written as 0/1 floats; they take no gradient
//! (PyTorch's are bool tensors), so their reference gradient is zero.

use serde_json::Value;
use tapegrad_autograd::{AttnMask, Tensor};

#[path = "../../../tests/support/reference.rs"]
mod reference;

/// PyTorch agreement: |ours − theirs| ≤ TOL·max(|theirs|, 1).
const TOL: f32 = 2e-5;

const JSON: &str = include_str!("../../../tools/reference/attention_reference.json");

/// Multiplies the i-th piece by i + 1 and joins them again (as the script does), so
/// every piece's gradient is told apart.
fn rejoin(pieces: Vec<Tensor>, axis: usize) -> Tensor {
    let scaled: Vec<Tensor> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| p * (i as f32 + 1.0))
        .collect();
    Tensor::concat(&scaled.iter().collect::<Vec<_>>(), axis)
}

/// The op of each case, by name; integer arguments are the script's fixed ones.
fn run(name: &str, x: &[Tensor]) -> Tensor {
    match name {
        "permute_0213" => x[0].permute(&[0, 2, 1, 3]),
        "permute_201" => x[0].permute(&[2, 0, 1]),
        "narrow_1_1_2" => x[0].narrow(1, 1, 2),
        "expand" => x[0].expand(&[2, 3, 4]),
        "stack_1" => Tensor::stack(&[&x[0], &x[1]], 1),
        "chunk_3_0" => rejoin(x[0].chunk(3, 0), 0),
        "split_1_2_1" => rejoin(x[0].split(&[1, 2, 1], 1), 1),
        "tril_0" => x[0].tril(0),
        "triu_1" => x[0].triu(1),
        "tril_neg1" => x[0].tril(-1),
        "masked_fill" => x[0].masked_fill(&x[1], -2.5),
        "where" => Tensor::where_cond(&x[0], &x[1], &x[2]),
        "matmul_4d" | "matmul_4d_bcast" | "matmul_4d_2d" => x[0].matmul(&x[1]),
        "softmax_axis_1_of_3" => x[0].softmax(1),
        "log_softmax_axis_2_of_4" => x[0].log_softmax(2),
        "silu" => x[0].silu(),
        "elu" => x[0].elu(0.7),
        "softplus" => x[0].softplus(1.0, 20.0),
        "softplus_beta2_thr5" => x[0].softplus(2.0, 5.0),
        "sdpa" => x[0].scaled_dot_product_attention(&x[1], &x[2], None, false),
        "sdpa_causal" => x[0].scaled_dot_product_attention(&x[1], &x[2], None, true),
        "sdpa_additive" => {
            x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Additive(&x[3])), false)
        }
        "sdpa_bool" => {
            x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Keep(&x[3])), false)
        }
        "sdpa_bool_and_causal" => {
            x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Keep(&x[3])), true)
        }
        "sdpa_additive_and_causal" => {
            x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Additive(&x[3])), true)
        }
        "sdpa_cross_long" | "sdpa_bcast" => {
            x[0].scaled_dot_product_attention(&x[1], &x[2], None, false)
        }
        "sdpa_causal_long" | "sdpa_causal_tall" | "sdpa_causal_wide" => {
            x[0].scaled_dot_product_attention(&x[1], &x[2], None, true)
        }
        other => panic!("no Rust op for reference case {other}"),
    }
}

#[test]
fn attention_ops_match_pytorch() {
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
    assert!(checked >= 32);
}
