//! `qkv_attention`, multi-head attention read from a packed `[..., T, 3E]` projection:
//! PyTorch reference values, a finite-difference gradient check, equality with the same
//! computation written from the separate ops (split, head views, fused attention,
//! merge), independence from the thread count, and the errors bad shapes get.

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use tapegrad_autograd::{gradcheck, num_threads, set_num_threads, Tensor, TensorError};

#[path = "../../../tests/support/reference.rs"]
mod reference;

const JSON: &str = include_str!("../../../tools/reference/qkv_attention_reference.json");

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// The op from the separate ops, on `[B, T, 3E]`: chunk, view as heads, attend, merge.
fn unfused(qkv: &Tensor, heads: usize, causal: bool) -> Tensor {
    let (b, t, e) = (qkv.shape()[0], qkv.shape()[1], qkv.shape()[2] / 3);
    let parts: Vec<Tensor> = qkv
        .chunk(3, 2)
        .iter()
        .map(|p| p.reshape(&[b, t, heads, e / heads]).permute(&[0, 2, 1, 3]))
        .collect();
    parts[0]
        .scaled_dot_product_attention(&parts[1], &parts[2], None, causal)
        .permute(&[0, 2, 1, 3])
        .reshape(&[b, t, e])
}

#[test]
fn qkv_attention_matches_pytorch() {
    let json: Value = serde_json::from_str(JSON).unwrap();
    let cases = json["cases"].as_array().unwrap();
    for case in cases {
        let inputs = reference::inputs(case);
        let heads = case["heads"].as_u64().unwrap() as usize;
        let causal = case["causal"].as_bool().unwrap();
        let out = inputs[0].qkv_attention(heads, causal);
        reference::check_output_and_grads(case, &inputs, &out, 2e-5);
    }
    assert_eq!(cases.len(), 5);
}

#[test]
fn qkv_attention_gradient_check() {
    for (shape, heads, causal) in [
        (vec![2, 4, 12], 2, true),
        (vec![3, 18], 3, false),
        (vec![2, 1, 3, 6], 1, true),
    ] {
        let weights = rand_t(
            &{
                let mut s = shape.clone();
                let last = s.len() - 1;
                s[last] /= 3;
                s
            },
            7,
        );
        let x = rand_t(&shape, 5);
        let report = gradcheck(
            |xs| (&xs[0].qkv_attention(heads, causal) * &weights).sum(),
            &[x],
        )
        .unwrap();
        assert!(report.checked > 0);
        assert!(report.passes(2e-2), "{shape:?} heads {heads}: {report:?}");
    }
}

#[test]
fn qkv_attention_equals_the_separate_ops_bit_for_bit() {
    // 70 positions: two query and key tiles, the causal mask crossing them.
    for causal in [true, false] {
        let x = rand_t(&[2, 70, 24], 11).with_requires_grad(true);
        let x2 = x.detach().with_requires_grad(true);
        let w = rand_t(&[2, 70, 8], 12);
        // One graph at a time: a backward releases the whole tape.
        let fused = x.qkv_attention(4, causal);
        (&fused * &w).sum().backward();
        let plain = unfused(&x2, 4, causal);
        (&plain * &w).sum().backward();
        assert_eq!(fused.to_vec(), plain.to_vec());
        assert_eq!(x.grad().unwrap().to_vec(), x2.grad().unwrap().to_vec());
    }
}

#[test]
fn saved_probabilities_give_the_recomputed_gradient() {
    // 40 positions, one key tile: the fused op's backward reads the probabilities its
    // forward saved; the separate ops' attention recomputes them from the log-sum-exp.
    // The forward is the same bit for bit, the gradient within float rounding.
    for causal in [true, false] {
        let x = rand_t(&[2, 40, 24], 13).with_requires_grad(true);
        let x2 = x.detach().with_requires_grad(true);
        let w = rand_t(&[2, 40, 8], 14);
        let fused = x.qkv_attention(4, causal);
        (&fused * &w).sum().backward();
        let plain = unfused(&x2, 4, causal);
        (&plain * &w).sum().backward();
        assert_eq!(fused.to_vec(), plain.to_vec());
        let (saved, recomputed) = (x.grad().unwrap().to_vec(), x2.grad().unwrap().to_vec());
        let scale = recomputed.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in saved.iter().zip(&recomputed) {
            assert!((a - b).abs() <= 1e-5 * scale, "causal {causal}: {a} vs {b}");
        }
        assert!(saved != vec![0.0; saved.len()]);
    }
}

#[test]
fn qkv_attention_does_not_depend_on_the_thread_count() {
    let run = |threads| {
        set_num_threads(threads);
        let x = rand_t(&[4, 64, 48], 20).with_requires_grad(true);
        let out = x.qkv_attention(2, true);
        (&out * &rand_t(&[4, 64, 16], 21)).sum().backward();
        let mut all = out.to_vec();
        all.extend(x.grad().unwrap().to_vec());
        all
    };
    let before = num_threads();
    let (one, two) = (run(1), run(2));
    set_num_threads(before);
    assert_eq!(one, two);
}

#[test]
fn qkv_attention_bad_shapes_name_the_op() {
    let cases = [
        (Tensor::zeros(&[2, 4, 10]), 1), // 10 is not 3E
        (Tensor::zeros(&[2, 4, 12]), 3), // E = 4 in 3 heads
        (Tensor::zeros(&[2, 4, 12]), 0),
        (Tensor::zeros(&[12]), 1), // no T axis
        (Tensor::zeros(&[2, 4, 0]), 1),
    ];
    for (x, heads) in cases {
        match x.try_qkv_attention(heads, true) {
            Err(TensorError::InvalidArgument { op, reason }) => {
                assert_eq!(op, "qkv_attention");
                assert!(reason.contains(&format!("{:?}", x.shape())), "{reason}");
            }
            other => panic!("{:?} with {heads} heads: {other:?}", x.shape()),
        }
    }
}
