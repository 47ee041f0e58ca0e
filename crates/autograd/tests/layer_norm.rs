//! The fused layer norm (`Tensor::layer_norm`) against PyTorch's `F.layer_norm` and
//! against finite differences.
//!
//! `tools/reference/layer_norm_reference.py` (run by hand) wrote, for each case, the
//! inputs, eps, PyTorch's output, a random weight tensor W and the gradients of
//! `(output · W).sum()` with respect to every input.

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use tapegrad_autograd::{gradcheck, Tensor};

#[path = "../../../tests/support/reference.rs"]
mod reference;

const JSON: &str = include_str!("../../../tools/reference/layer_norm_reference.json");

/// PyTorch agreement: |ours − theirs| ≤ TOL·max(|theirs|, 1).
const TOL: f32 = 2e-5;

#[test]
fn layer_norm_matches_pytorch() {
    let json: Value = serde_json::from_str(JSON).unwrap();
    let cases = json["cases"].as_array().unwrap();
    for case in cases {
        let inputs = reference::inputs(case);
        let mut rest = inputs[1..].iter();
        let weight = case["has_weight"]
            .as_bool()
            .unwrap()
            .then(|| rest.next().unwrap());
        let bias = case["has_bias"]
            .as_bool()
            .unwrap()
            .then(|| rest.next().unwrap());
        let eps = case["eps"].as_f64().unwrap() as f32;
        let out = inputs[0].layer_norm(weight, bias, eps);
        reference::check_output_and_grads(case, &inputs, &out, TOL);
    }
    assert_eq!(cases.len(), 7);
}

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

#[test]
fn layer_norm_gradients_match_finite_differences() {
    // 37 rows span two backward blocks; width 11 leaves a remainder after 8 lanes.
    let x = rand_t(&[37, 11], 1);
    let w = rand_t(&[11], 2);
    let b = rand_t(&[11], 3);
    let weights = rand_t(&[37, 11], 4);
    let affine = gradcheck(
        |t| (&t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5) * &weights).sum(),
        &[x.clone(), w, b],
    )
    .unwrap();
    assert!(affine.checked > 0 && affine.passes(2e-2), "{affine:?}");
    let plain = gradcheck(
        |t| (&t[0].layer_norm(None, None, 1e-5) * &weights).sum(),
        &[x],
    )
    .unwrap();
    assert!(plain.checked > 0 && plain.passes(2e-2), "{plain:?}");
}

#[test]
fn layer_norm_equals_its_composition() {
    let x = rand_t(&[3, 4, 10], 5);
    let (w, b) = (rand_t(&[10], 6), rand_t(&[10], 7));
    let fused = x.layer_norm(Some(&w), Some(&b), 1e-5).to_vec();
    let centered = &x - &x.mean_axis(2, true);
    let var = centered.pow(2.0).mean_axis(2, true);
    let composed = (&(&(&centered / &(&var + 1e-5).sqrt()) * &w) + &b).to_vec();
    for (f, c) in fused.iter().zip(&composed) {
        assert!((f - c).abs() <= 1e-5 * c.abs().max(1.0), "{f} vs {c}");
    }
}

#[test]
fn layer_norm_rejects_bad_parameters() {
    let x = Tensor::zeros(&[2, 4]);
    let err = x
        .try_layer_norm(Some(&Tensor::ones(&[3])), None, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer_norm") && err.contains("[4]") && err.contains("[3]"),
        "{err}"
    );
    assert!(Tensor::scalar(1.0)
        .try_layer_norm(None, None, 1e-5)
        .is_err());
    // Empty inputs give empty outputs.
    assert_eq!(
        Tensor::zeros(&[0, 4]).layer_norm(None, None, 1e-5).numel(),
        0
    );
}
