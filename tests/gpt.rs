//! The GPT model: PyTorch-trained weights (`tools/reference/gpt_interop.py`) load by
//! state-dict name and reproduce PyTorch's logits; bad input is a clear error; the two
//! weight-decay groups hold every parameter once.

use serde_json::Value;
use tapegrad::autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad::io::load_safetensors;
use tapegrad::losses::CrossEntropyLoss;
use tapegrad::nn::{Gpt, GptConfig, Module};

#[path = "support/reference.rs"]
mod reference;
use reference::{floats, shape};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/interop/");

fn config_of(v: &Value) -> GptConfig {
    let n = |key: &str| v[key].as_u64().unwrap() as usize;
    GptConfig {
        vocab_size: n("vocab_size"),
        context: n("context"),
        n_layer: n("n_layer"),
        n_head: n("n_head"),
        n_embd: n("n_embd"),
        dropout: v["dropout"].as_f64().unwrap() as f32,
    }
}

fn tiny() -> GptConfig {
    GptConfig {
        vocab_size: 11,
        context: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
    }
}

#[test]
fn pytorch_trained_gpt_reproduces_its_logits() {
    let io: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}gpt_io.json")).unwrap())
            .unwrap();
    let config = config_of(&io["config"]);
    // Initialised from a different seed, so only the loaded weights can match.
    let mut model = Gpt::new_with_rng(config, &mut StdRng::seed_from_u64(123)).unwrap();
    model.eval();
    load_safetensors(&model, format!("{FIXTURES}gpt.safetensors")).unwrap();

    let ids: Vec<usize> = floats(&io["ids"]["data"])
        .iter()
        .map(|&v| v as usize)
        .collect();
    let [batch, seq] = shape(&io["ids"])[..] else {
        panic!("ids are [batch, seq]")
    };
    let logits = model.try_forward_ids(&ids, batch, seq).unwrap();
    assert_eq!(logits.shape(), shape(&io["logits"]).as_slice());
    let expected = floats(&io["logits"]["data"]);
    let max_diff = logits
        .to_vec()
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-5, "max |logit − PyTorch| = {max_diff}");

    let targets: Vec<i64> = floats(&io["targets"]["data"])
        .iter()
        .map(|&v| v as i64)
        .collect();
    let loss = CrossEntropyLoss::new()
        .forward(&logits.reshape(&[batch * seq, config.vocab_size]), &targets)
        .item();
    let expected_loss = io["loss"].as_f64().unwrap() as f32;
    assert!(
        (loss - expected_loss).abs() <= 1e-5,
        "loss {loss} vs PyTorch {expected_loss}"
    );
}

#[test]
fn bad_input_names_the_layer_and_the_values() {
    let model = Gpt::new_with_rng(tiny(), &mut StdRng::seed_from_u64(0)).unwrap();
    let err = model
        .try_forward_ids(&[0; 9], 1, 9)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wpe") && err.contains("9 tokens") && err.contains("8 positions"),
        "{err}"
    );
    let err = model
        .try_forward_ids(&[0, 1, 2, 11, 0, 0], 2, 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wte") && err.contains("token id 11") && err.contains("11 ids"),
        "{err}"
    );
    let err = model
        .try_forward_ids(&[0; 5], 2, 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("5 token ids"), "{err}");
    let bad_heads = GptConfig {
        n_head: 3,
        ..tiny()
    };
    let err = Gpt::new_with_rng(bad_heads, &mut StdRng::seed_from_u64(0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("n_embd = 8") && err.contains("n_head = 3"),
        "{err}"
    );
}

#[test]
fn decay_groups_split_every_parameter_once() {
    let model = Gpt::new_with_rng(tiny(), &mut StdRng::seed_from_u64(0)).unwrap();
    let (decay, no_decay) = model.decay_groups();
    let all = model.parameters();
    assert_eq!(decay.len() + no_decay.len(), all.len());
    for p in &all {
        let n = decay
            .iter()
            .chain(&no_decay)
            .filter(|q| q.same_storage(p))
            .count();
        assert_eq!(n, 1);
    }
    // Four matrices a block plus the head are decayed; embeddings are not.
    assert_eq!(decay.len(), 4 * 2 + 1);
    assert!(decay.iter().all(|p| p.rank() == 2));
    assert!(!decay.iter().any(|p| p.same_storage(&model.wte.weight)));
}

#[test]
fn generation_is_seeded_and_stays_in_the_vocabulary() {
    let mut model = Gpt::new_with_rng(tiny(), &mut StdRng::seed_from_u64(0)).unwrap();
    model.eval();
    let a = model
        .generate(&[1, 2], 20, 0.8, Some(5), &mut StdRng::seed_from_u64(7))
        .unwrap();
    let b = model
        .generate(&[1, 2], 20, 0.8, Some(5), &mut StdRng::seed_from_u64(7))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 22);
    assert!(a.iter().all(|&id| id < 11));
    assert!(model
        .generate(&[], 3, 1.0, None, &mut StdRng::seed_from_u64(7))
        .is_err());
}
