//! Issue 12: a crafted or damaged file is an `Err`, never a panic and never a tensor
//! whose shape claims more elements than its data holds.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad_autograd::Tensor;
use tapegrad_io::{
    from_safetensors, load_safetensors, load_state_dict, Checkpoint, IoError, NamedTensor,
    StateDict,
};
use tapegrad_nn::{Linear, Module, Relu, Sequential};
use tapegrad_optim::{Adam, AdamConfig, Optimizer};

/// `k` of the issue's repro: `100 · K` wraps to 100 and `K · 200` to 200.
const K: usize = (1 << 62) + 1;

fn named(name: &str, shape: &[usize], len: usize) -> NamedTensor {
    NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data: vec![1.0; len],
    }
}

/// The two tensors of the repro, whose product once crashed the process.
fn repro_state() -> StateDict {
    StateDict {
        tensors: vec![named("a", &[100, K], 100), named("b", &[K, 200], 200)],
    }
}

fn tiny_model() -> Sequential {
    let mut rng = StdRng::seed_from_u64(5);
    Sequential::new()
        .add(Linear::new_with_rng(2, 3, &mut rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(3, 1, &mut rng).unwrap())
}

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_checkpoint_holding_the_repro_shapes_is_refused() {
    let mut ckpt = Checkpoint::new(&tiny_model());
    ckpt.model = repro_state();
    // The checksum is valid: only the shape check stands between the file and a SIGSEGV.
    let bytes = ckpt.to_bytes().unwrap();
    let err = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(&err, IoError::Corrupt(m) if m.contains(&format!("a: shape [100, {K}] is too large"))),
        "{err}"
    );
    let path = temp_file("repro.ckpt");
    ckpt.save(&path).unwrap();
    assert!(Checkpoint::load(&path).is_err());
    // The state-dict file format: the same bytes under load_state_dict.
    std::fs::write(&path, tapegrad_io::format::encode(&repro_state()).unwrap()).unwrap();
    assert!(matches!(
        load_state_dict(&tiny_model(), &path),
        Err(IoError::Corrupt(_))
    ));
    // A state built in memory still cannot hand out a tensor of that shape.
    let state = repro_state();
    assert!(state.get("a").is_none());
    assert!(state.validate().is_err());
}

#[test]
fn restoring_a_shape_that_wraps_to_zero_is_an_error_not_a_panic() {
    // Once a checksum-valid file with this shape panicked restore_model in debug builds
    // ("attempt to multiply with overflow").
    let mut ckpt = Checkpoint::new(&tiny_model());
    ckpt.model.tensors[0].shape = vec![1 << 32, 1 << 32, 2];
    ckpt.model.tensors[0].data.clear();
    let err = ckpt.restore_model(&tiny_model()).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(Checkpoint::from_bytes(&ckpt.to_bytes().unwrap()).is_err());
}

/// A safetensors file written by hand: the header is free text, so it can claim any shape.
fn safetensors_bytes(entries: &[(&str, &[usize], usize)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, shape, bytes)) in entries.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""{name}":{{"dtype":"F32","shape":{shape:?},"data_offsets":[{offset},{}]}}"#,
            offset + bytes
        ));
        offset += bytes;
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + offset, 0);
    out
}

#[test]
fn a_safetensors_file_holding_the_repro_shapes_is_refused() {
    let bytes = safetensors_bytes(&[("a", &[100, K], 400), ("b", &[K, 200], 800)]);
    let err = from_safetensors(&bytes).unwrap_err();
    assert!(
        matches!(err, IoError::Safetensors(_) | IoError::Corrupt(_)),
        "{err}"
    );
    let path = temp_file("repro.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    assert!(load_safetensors(&tiny_model(), &path).is_err());
    let zero = safetensors_bytes(&[("a", &[1 << 32, 1 << 32, 2], 0)]);
    assert!(from_safetensors(&zero).is_err());
    // The same writer with honest shapes is read back, so the refusals above are the
    // shapes' doing.
    let honest = from_safetensors(&safetensors_bytes(&[("a", &[2, 3], 24)])).unwrap();
    assert_eq!(honest.get("a").unwrap().shape(), &[2, 3]);
}

/// Whether two models hold the same parameter bits.
fn same_params(a: &dyn Module, b: &dyn Module) -> bool {
    let bits = |m: &dyn Module| -> Vec<u32> {
        m.parameters()
            .iter()
            .flat_map(|p| p.to_vec())
            .map(f32::to_bits)
            .collect()
    };
    bits(a) == bits(b)
}

/// What a loaded checkpoint must survive: restoring into a fresh model and optimizer,
/// then a forward pass and, for every saved tensor, a product that reads all of it.
fn use_it(ckpt: &Checkpoint) {
    let model = tiny_model();
    let mut opt = Adam::new(model.parameters(), AdamConfig::default()).unwrap();
    if ckpt.restore_model(&model).is_ok() {
        let _ = model.forward(&Tensor::zeros(&[4, 2]));
    }
    let _ = ckpt.restore_optimizer(&mut opt);
    for t in &ckpt.model.tensors {
        if let Some(x) = ckpt.model.get(&t.name) {
            let flat = x.reshape(&[1, x.numel()]);
            let _ = flat.matmul(&flat.t());
        }
    }
}

/// Every truncation and every single-bit flip of a real checkpoint (model, Adam state,
/// counters) is an error, or decodes to the very checkpoint saved; and every bit flip
/// of its payload under a forged checksum (what the checksum cannot stop) decodes to
/// an error or to a checkpoint that can be restored and used without a panic.
#[test]
fn every_truncation_and_bit_flip_of_a_checkpoint_is_an_error_or_the_same_model() {
    let model = tiny_model();
    let mut opt = Adam::new(model.parameters(), AdamConfig::default()).unwrap();
    let loss = model.forward(&Tensor::ones(&[4, 2])).sum();
    loss.backward();
    opt.step();
    let saved = Checkpoint::new(&model)
        .with_optimizer(&opt)
        .with_counters(1, 1);
    let valid = saved.to_bytes().unwrap();
    let restored = tiny_model();
    Checkpoint::from_bytes(&valid)
        .unwrap()
        .restore_model(&restored)
        .unwrap();
    assert!(same_params(&model, &restored));

    for len in 0..valid.len() {
        assert!(
            Checkpoint::from_bytes(&valid[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut flipped = valid.clone();
    for bit in 0..valid.len() * 8 {
        flipped[bit / 8] ^= 1 << (bit % 8);
        match Checkpoint::from_bytes(&flipped) {
            Err(_) => {}
            Ok(c) => assert_eq!(c, saved, "bit {bit} changed the checkpoint unnoticed"),
        }
        flipped[bit / 8] ^= 1 << (bit % 8);
    }

    // A forger recomputes the checksum: the decoder and the shape checks stand alone.
    let payload = &valid[28..];
    let (mut decoded, mut refused) = (0, 0);
    let mut forged = payload.to_vec();
    for bit in 0..payload.len() * 8 {
        forged[bit / 8] ^= 1 << (bit % 8);
        match tapegrad_io::format::decode_payload::<Checkpoint>(&forged)
            .and_then(|c| c.model.validate().map(|()| c))
        {
            Err(_) => refused += 1,
            Ok(c) => {
                use_it(&c);
                decoded += 1;
            }
        }
        forged[bit / 8] ^= 1 << (bit % 8);
    }
    // Most flips land in float bits and decode; some hit lengths and tags and do not.
    assert!(
        decoded > 0 && refused > 0,
        "decoded {decoded}, refused {refused}"
    );
}
