//! PyTorch interop: weights trained and saved by PyTorch (`tools/reference/interop_fixtures.py`)
//! load by name and reproduce PyTorch's outputs; tapegrad's own safetensors files round-trip.

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use tapegrad_autograd::Tensor;
use tapegrad_io::{
    from_safetensors, load_safetensors, save_safetensors, to_safetensors, IoError, StateDict,
};
use tapegrad_nn::{prefixed_parameters, Linear, Module, Relu, Sequential};

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::tensor;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/interop/");

/// The reference `Net` of the PyTorch program, with its field names.
struct Net {
    fc1: Linear,
    fc2: Linear,
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).relu())
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed_parameters(&[("fc1", &self.fc1), ("fc2", &self.fc2)])
    }
}

fn net(rng: &mut StdRng) -> Net {
    Net {
        fc1: Linear::new_with_rng(10, 5, rng).unwrap(),
        fc2: Linear::new_with_rng(5, 1, rng).unwrap(),
    }
}

fn mlp(rng: &mut StdRng) -> Sequential {
    Sequential::new()
        .add(Linear::new_with_rng(64, 128, rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(128, 10, rng).unwrap())
}

fn check_outputs(model: &dyn Module, io_file: &str) {
    let io: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}{io_file}")).unwrap())
            .unwrap();
    let out = model.forward(&tensor(&io["input"]));
    let want = tensor(&io["output"]);
    assert_eq!(out.shape(), want.shape());
    for (a, b) in out.to_vec().iter().zip(want.to_vec()) {
        assert!((a - b).abs() <= 1e-6 + 1e-6 * b.abs(), "{a} vs PyTorch {b}");
    }
}

#[test]
fn pytorch_trained_weights_reproduce_pytorch_outputs() {
    let mut rng = StdRng::seed_from_u64(1);
    let n = net(&mut rng);
    load_safetensors(&n, format!("{FIXTURES}net.safetensors")).unwrap();
    check_outputs(&n, "net_io.json");
    let m = mlp(&mut rng);
    load_safetensors(&m, format!("{FIXTURES}mlp.safetensors")).unwrap();
    check_outputs(&m, "mlp_io.json");
}

#[test]
fn our_files_round_trip_exactly() {
    let mut rng = StdRng::seed_from_u64(2);
    let a = mlp(&mut rng);
    let dir = std::env::temp_dir().join(format!("tapegrad-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mlp.safetensors");
    save_safetensors(&a, &path).unwrap();
    let b = mlp(&mut rng);
    load_safetensors(&b, &path).unwrap();
    for ((na, pa), (nb, pb)) in a.named_parameters().into_iter().zip(b.named_parameters()) {
        assert_eq!(na, nb);
        assert_eq!(pa.to_vec(), pb.to_vec());
    }
}

#[test]
fn a_model_that_does_not_fit_lists_every_mismatch() {
    let mut rng = StdRng::seed_from_u64(3);
    let state =
        from_safetensors(&std::fs::read(format!("{FIXTURES}net.safetensors")).unwrap()).unwrap();
    // Wrong layer names (Sequential's "0.weight" vs "fc1.weight") and a wrong width.
    let other = Sequential::new().add(Linear::new_with_rng(10, 5, &mut rng).unwrap());
    let Err(IoError::Mismatch(lines)) = state.load_into(&other) else {
        panic!("expected a mismatch")
    };
    assert!(
        lines.iter().any(|l| l.starts_with("0.weight: missing")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("fc2.bias: not a parameter")),
        "{lines:?}"
    );
    let wide = Net {
        fc1: Linear::new_with_rng(10, 6, &mut rng).unwrap(),
        fc2: Linear::new_with_rng(6, 1, &mut rng).unwrap(),
    };
    let before = wide.fc1.weight.to_vec();
    let Err(IoError::Mismatch(lines)) = state.load_into(&wide) else {
        panic!("expected a mismatch")
    };
    assert_eq!(
        lines.len(),
        3,
        "fc1.weight, fc1.bias and fc2.weight: {lines:?}"
    );
    assert_eq!(
        wide.fc1.weight.to_vec(),
        before,
        "nothing is loaded when anything mismatches"
    );
}

#[test]
fn bad_safetensors_bytes_are_errors() {
    assert!(matches!(
        from_safetensors(b"garbage"),
        Err(IoError::Safetensors(_))
    ));
    let good =
        to_safetensors(&StateDict::from_module(&mlp(&mut StdRng::seed_from_u64(4)))).unwrap();
    assert!(from_safetensors(&good[..good.len() / 2]).is_err());
}
