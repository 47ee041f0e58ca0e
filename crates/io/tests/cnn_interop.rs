//! A CNN with BatchNorm trained by PyTorch (`tools/reference/cnn_interop.py`) loads by
//! name, running statistics included, and reproduces PyTorch's eval-mode logits; the
//! buffers round-trip through tapegrad's own files, `num_batches_tracked` as int64.

use rand::rngs::StdRng;
use rand::SeedableRng;
use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::Value;
use tapegrad_autograd::Tensor;
use tapegrad_io::{load_safetensors, to_safetensors, IoError, StateDict};
use tapegrad_nn::{
    AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dOptions, Flatten, Linear, MaxPool2d,
    Module, Relu, Sequential,
};

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::tensor;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/interop/");

/// The script's `nn.Sequential`, layer for layer, so the state-dict names agree.
fn cnn(rng: &mut StdRng) -> Sequential {
    let grouped = Conv2dOptions::new().stride(2).padding(1).groups(2);
    Sequential::new()
        .add(
            Conv2d::with_options_and_rng(1, 4, [3, 3], Conv2dOptions::new().padding(1), true, rng)
                .unwrap(),
        )
        .add(BatchNorm2d::new(4))
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Conv2d::with_options_and_rng(4, 8, [3, 3], grouped, true, rng).unwrap())
        .add(BatchNorm2d::new(8))
        .add(Relu)
        .add(AdaptiveAvgPool2d::new([1, 1]))
        .add(Flatten::new())
        .add(Linear::new_with_rng(8, 16, rng).unwrap())
        .add(BatchNorm1d::new(16))
        .add(Relu)
        .add(Linear::new_with_rng(16, 10, rng).unwrap())
}

#[test]
fn a_pytorch_trained_cnn_with_batch_norm_reproduces_its_eval_logits() {
    let mut model = cnn(&mut StdRng::seed_from_u64(1));
    load_safetensors(&model, format!("{FIXTURES}cnn_bn.safetensors")).unwrap();
    let counter = &model.named_buffers()[2];
    assert_eq!(counter.0, "1.num_batches_tracked");
    assert_eq!(counter.1.item(), 30.0, "the int64 counter loaded");
    model.eval();
    let io: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}cnn_bn_io.json")).unwrap(),
    )
    .unwrap();
    let got = model.forward(&tensor(&io["input"]));
    let want = tensor(&io["output"]);
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.to_vec().iter().zip(want.to_vec()) {
        assert!((g - w).abs() <= 1e-5, "got {g}, PyTorch {w}");
    }
    // In training mode the same input gives other values (batch statistics).
    model.train();
    assert_ne!(model.forward(&tensor(&io["input"])).to_vec(), want.to_vec());
}

#[test]
fn buffers_round_trip_and_the_counter_is_int64_in_safetensors() {
    let model = cnn(&mut StdRng::seed_from_u64(2));
    model.forward(&Tensor::ones(&[2, 1, 8, 8]));
    let state = StateDict::from_module(&model);
    assert!(state.tensors.iter().any(|t| t.name == "5.running_var"));
    let bytes = to_safetensors(&state).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        file.tensor("10.num_batches_tracked").unwrap().dtype(),
        Dtype::I64
    );
    assert_eq!(file.tensor("10.running_mean").unwrap().dtype(), Dtype::F32);

    let other = cnn(&mut StdRng::seed_from_u64(3));
    tapegrad_io::from_safetensors(&bytes)
        .unwrap()
        .load_into(&other)
        .unwrap();
    for ((na, a), (nb, b)) in model.named_buffers().iter().zip(other.named_buffers()) {
        assert_eq!((na, a.to_vec()), (&nb, b.to_vec()));
    }
    assert_eq!(other.named_buffers()[2].1.item(), 1.0);

    // A state without the buffers is refused, naming what is missing.
    let mut partial = state.clone();
    partial.tensors.retain(|t| !t.name.contains("running"));
    match partial.load_into(&other) {
        Err(IoError::Mismatch(problems)) => {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("1.running_mean: missing")),
                "{problems:?}"
            )
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}
