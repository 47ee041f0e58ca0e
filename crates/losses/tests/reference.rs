//! Every case of `tools/reference/loss_reference.json` (PyTorch's output and the gradient
//! of `output.sum()` with respect to the input) replayed through the criterion structs.

use serde_json::Value;
use tapegrad_autograd::Tensor;
use tapegrad_losses::{
    BceLoss, BceWithLogitsLoss, CrossEntropyLoss, HuberLoss, KlDivLoss, KlReduction, L1Loss,
    MseLoss, NllLoss, Reduction, SmoothL1Loss,
};

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::{floats, shape, tensor};

const REFERENCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tools/reference/loss_reference.json"
));

fn classes(v: &Value) -> Vec<i64> {
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_i64().expect("integer class"))
        .collect()
}

fn option_f32(options: &Value, key: &str) -> Option<f32> {
    options.get(key).map(|v| v.as_f64().expect(key) as f32)
}

fn option_tensor(options: &Value, key: &str) -> Option<Tensor> {
    options.get(key).map(tensor)
}

fn reduction(name: &str) -> Reduction {
    match name {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        other => panic!("unknown reduction {other}"),
    }
}

fn kl_reduction(name: &str) -> KlReduction {
    match name {
        "batchmean" => KlReduction::BatchMean,
        other => reduction(other).into(),
    }
}

/// Builds the case's criterion and runs it on `input`.
fn run(case: &Value, input: &Tensor) -> Tensor {
    let options = &case["options"];
    let red = case["reduction"].as_str().expect("reduction");
    let target = &case["target"];
    match case["loss"].as_str().expect("loss") {
        "MSELoss" => MseLoss::new()
            .reduction(reduction(red))
            .forward(input, &tensor(target)),
        "L1Loss" => L1Loss::new()
            .reduction(reduction(red))
            .forward(input, &tensor(target)),
        "SmoothL1Loss" => {
            let mut loss = SmoothL1Loss::new().reduction(reduction(red));
            if let Some(beta) = option_f32(options, "beta") {
                loss = loss.beta(beta);
            }
            loss.forward(input, &tensor(target))
        }
        "HuberLoss" => {
            let mut loss = HuberLoss::new().reduction(reduction(red));
            if let Some(delta) = option_f32(options, "delta") {
                loss = loss.delta(delta);
            }
            loss.forward(input, &tensor(target))
        }
        "BCELoss" => {
            let mut loss = BceLoss::new().reduction(reduction(red));
            if let Some(w) = option_tensor(options, "weight") {
                loss = loss.weight(w);
            }
            loss.forward(input, &tensor(target))
        }
        "BCEWithLogitsLoss" => {
            let mut loss = BceWithLogitsLoss::new().reduction(reduction(red));
            if let Some(w) = option_tensor(options, "weight") {
                loss = loss.weight(w);
            }
            if let Some(p) = option_tensor(options, "pos_weight") {
                loss = loss.pos_weight(p);
            }
            loss.forward(input, &tensor(target))
        }
        "CrossEntropyLoss" => {
            let mut loss = CrossEntropyLoss::new().reduction(reduction(red));
            if let Some(w) = option_tensor(options, "weight") {
                loss = loss.weight(w);
            }
            if let Some(i) = options.get("ignore_index") {
                loss = loss.ignore_index(i.as_i64().expect("ignore_index"));
            }
            if let Some(eps) = option_f32(options, "label_smoothing") {
                loss = loss.label_smoothing(eps);
            }
            loss.forward(input, &classes(target))
        }
        "NLLLoss" => {
            let mut loss = NllLoss::new().reduction(reduction(red));
            if let Some(w) = option_tensor(options, "weight") {
                loss = loss.weight(w);
            }
            if let Some(i) = options.get("ignore_index") {
                loss = loss.ignore_index(i.as_i64().expect("ignore_index"));
            }
            loss.forward(input, &classes(target))
        }
        "KLDivLoss" => {
            let log_target = options
                .get("log_target")
                .is_some_and(|v| v.as_bool().expect("log_target"));
            KlDivLoss::new()
                .reduction(kl_reduction(red))
                .log_target(log_target)
                .forward(input, &tensor(target))
        }
        other => panic!("unknown loss {other}"),
    }
}

/// |a − b| ≤ 1e-6 + 1e-5·|b| element by element, with a message naming the case.
fn assert_close(case: &str, what: &str, got: &Tensor, want: &Value) {
    assert_eq!(got.shape(), shape(want).as_slice(), "{case}: {what} shape");
    let what = format!("{case}: {what}");
    reference::assert_slices_close(&what, &got.to_vec(), &floats(&want["data"]), 1e-6, 1e-5);
}

#[test]
fn matches_pytorch_on_every_reference_case() {
    let json: Value = serde_json::from_str(REFERENCE).expect("valid JSON");
    let cases = json["cases"].as_array().expect("cases");
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let input = tensor(&case["input"]).with_requires_grad(true);
        let out = run(case, &input);
        assert_close(name, "output", &out, &case["output"]);
        out.sum().backward();
        let grad = input.grad().expect("a gradient");
        // The generator stores null for a non-finite gradient; none is expected here.
        assert!(
            !case["grad"].is_null(),
            "{name}: PyTorch's gradient is null"
        );
        assert_close(name, "grad", &grad, &case["grad"]);
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    assert_eq!(
        checked, 74,
        "the reference file changed; review the new cases"
    );
}
