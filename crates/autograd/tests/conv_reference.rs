//! Convolution, pooling and batch-norm ops against PyTorch.
//!
//! `tools/reference/conv_reference.py` (run by hand) wrote, for each case, the inputs,
//! PyTorch's output, random weights W and the gradients of `(output · W).sum()`; the
//! op's other arguments are repeated here by case name.

use serde_json::Value;
use tapegrad_autograd::{
    Conv2dOptions as C, ConvTranspose2dOptions as T, Pool2dOptions as P, Tensor,
};

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::tensor;

/// PyTorch agreement: |ours − theirs| ≤ TOL·max(|theirs|, 1).
const TOL: f32 = 2e-5;

const JSON: &str = include_str!("../../../tools/reference/conv_reference.json");

/// The op of each case, with the script's fixed arguments. Batch-norm cases also return
/// the running statistics they updated.
fn run(name: &str, x: &[Tensor]) -> (Tensor, Option<(Tensor, Tensor)>) {
    let b = x.get(2);
    let y = match name {
        "conv2d_basic" => x[0].conv2d(&x[1], b, C::new()),
        "conv2d_stride_pad" => x[0].conv2d(&x[1], b, C::new().stride(2).padding(1)),
        "conv2d_same_even" => x[0].conv2d(&x[1], None, C::new().same()),
        "conv2d_dilation" => x[0].conv2d(&x[1], b, C::new().padding(2).dilation(2)),
        "conv2d_groups" => x[0].conv2d(
            &x[1],
            b,
            C {
                stride: [1, 2],
                padding: [1, 0],
                ..C::new().groups(2)
            },
        ),
        "conv2d_depthwise" => x[0].conv2d(&x[1], None, C::new().groups(3).padding(1)),
        "conv2d_1x1" => x[0].conv2d(&x[1], b, C::new()),
        "conv2d_winograd" => x[0].conv2d(&x[1], b, C::new().padding(1)),
        "conv1d" => x[0].conv1d(&x[1], b, C::new().stride(2).padding(1)),
        "conv1d_same_groups" => x[0].conv1d(&x[1], None, C::new().same().groups(2).dilation(2)),
        "conv_transpose2d" => x[0].conv_transpose2d(&x[1], b, T::new()),
        "conv_transpose2d_stride" => {
            x[0].conv_transpose2d(&x[1], b, T::new().stride(2).padding(1).output_padding(1))
        }
        "conv_transpose2d_groups" => x[0].conv_transpose2d(
            &x[1],
            None,
            T {
                stride: [2, 1],
                ..T::new().groups(2).dilation(2)
            },
        ),
        "max_pool2d" | "max_pool2d_ties" => x[0].max_pool2d(P::new(2)),
        "max_pool2d_stride_pad" => x[0].max_pool2d(P::new(3).stride(2).padding(1)),
        "max_pool2d_ceil" => x[0].max_pool2d(P::new(2).ceil_mode(true)),
        "avg_pool2d" => x[0].avg_pool2d(P::new(2)),
        "avg_pool2d_pad_include" => x[0].avg_pool2d(P::new(3).stride(2).padding(1)),
        "avg_pool2d_pad_exclude" => {
            x[0].avg_pool2d(P::new(3).stride(2).padding(1).count_include_pad(false))
        }
        "avg_pool2d_ceil" => x[0].avg_pool2d(
            P::new(2)
                .padding(1)
                .ceil_mode(true)
                .count_include_pad(false),
        ),
        "adaptive_avg_pool2d" => x[0].adaptive_avg_pool2d([3, 2]),
        "adaptive_avg_pool2d_1" => x[0].adaptive_avg_pool2d([1, 1]),
        "flatten" => x[0].flatten(1, 3),
        bn if bn.starts_with("batch_norm") => {
            let c = x[1].numel();
            let (rm, rv) = (Tensor::full(&[c], 0.5), Tensor::full(&[c], 2.0));
            let training = bn.contains("train");
            let y = x[0].batch_norm(
                Some(&rm),
                Some(&rv),
                Some(&x[1]),
                Some(&x[2]),
                training,
                0.1,
                1e-5,
            );
            return (y, Some((rm, rv)));
        }
        other => panic!("no Rust op for reference case {other}"),
    };
    (y, None)
}

#[test]
fn every_conv_and_pool_op_matches_pytorch() {
    let json: Value = serde_json::from_str(JSON).unwrap();
    let cases = json["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let inputs = reference::inputs(case);
        let (out, running) = run(name, &inputs);
        if let Some((rm, rv)) = running {
            reference::assert_close(
                &format!("{name} running_mean"),
                &rm,
                &tensor(&case["extra"]["running_mean"]),
                TOL,
            );
            reference::assert_close(
                &format!("{name} running_var"),
                &rv,
                &tensor(&case["extra"]["running_var"]),
                TOL,
            );
        }
        reference::check_output_and_grads(case, &inputs, &out, TOL);
    }
    assert_eq!(cases.len(), 27);
}
