//! MultiheadAttention and TransformerBlock against PyTorch (weights loaded by state-dict
//! name from `tools/reference/mha_reference.json`, written by `mha_reference.py`), the
//! activation modules, and the errors bad shapes get.

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use tapegrad_autograd::no_grad;
use tapegrad_nn::{
    AttnMask, Elu, Module, MultiheadAttention, Silu, Softplus, Tensor, TransformerBlock,
};

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::tensor;
/// Within 1e-5 relative (absolute below 1).
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    reference::assert_close(what, got, want, 1e-5);
}

const JSON: &str = include_str!("../../../tools/reference/mha_reference.json");

/// Copies every parameter from the case by its state-dict name; the names must match
/// PyTorch's exactly, one for one.
fn load(module: &dyn Module, case: &Value) {
    let params = case["params"].as_object().unwrap();
    let ours = module.named_parameters();
    assert_eq!(ours.len(), params.len(), "parameter count");
    for (name, p) in ours {
        let want = tensor(&params[&name]);
        assert_eq!(p.shape(), want.shape(), "{name}");
        no_grad(|| p.data_mut().copy_from_slice(&want.data()));
    }
}

fn check_case(module: &dyn Module, case: &Value, run: impl Fn(&[Tensor]) -> Tensor) {
    let name = case["name"].as_str().unwrap();
    load(module, case);
    module.zero_grad();
    let inputs: Vec<Tensor> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| tensor(v).with_requires_grad(true))
        .collect();
    let out = run(&inputs);
    assert_close(&format!("{name} output"), &out, &tensor(&case["output"]));
    (&out * &tensor(&case["weights"])).sum().backward();
    for (i, (x, want)) in inputs
        .iter()
        .zip(case["input_grads"].as_array().unwrap())
        .enumerate()
    {
        assert_close(
            &format!("{name} input grad {i}"),
            &x.grad().unwrap(),
            &tensor(want),
        );
    }
    for (pname, p) in module.named_parameters() {
        let want = tensor(&case["param_grads"][&pname]);
        assert_close(
            &format!("{name} grad of {pname}"),
            &p.grad().unwrap(),
            &want,
        );
    }
}

fn case<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn multihead_attention_matches_pytorch() {
    let json: Value = serde_json::from_str(JSON).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mha = MultiheadAttention::new_with_rng(8, 2, true, &mut rng).unwrap();
    let names: Vec<String> = mha.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "in_proj_weight",
            "in_proj_bias",
            "out_proj.weight",
            "out_proj.bias"
        ]
    );
    check_case(&mha, case(&json, "self"), |x| mha.forward(&x[0]));
    check_case(&mha, case(&json, "self_causal"), |x| {
        mha.forward_qkv(&x[0], &x[0], &x[0], None, true)
    });
    let c = case(&json, "cross_float_mask");
    let mask = tensor(&c["mask"]);
    check_case(&mha, c, |x| {
        mha.forward_qkv(&x[0], &x[1], &x[2], Some(AttnMask::Additive(&mask)), false)
    });

    let seq_first = MultiheadAttention::new_with_rng(8, 2, false, &mut rng).unwrap();
    let c = case(&json, "seq_first_bool_mask");
    // PyTorch's MultiheadAttention masks where its bool mask is True; Keep keeps non-zeros.
    let keep = 1.0 - &tensor(&c["mask"]);
    check_case(&seq_first, c, |x| {
        seq_first.forward_qkv(&x[0], &x[1], &x[2], Some(AttnMask::Keep(&keep)), false)
    });
}

#[test]
fn transformer_block_matches_pytorch_and_uses_nanogpt_names() {
    let json: Value = serde_json::from_str(JSON).unwrap();
    let block = TransformerBlock::new_with_rng(8, 2, 0.0, &mut StdRng::seed_from_u64(1)).unwrap();
    let names: Vec<String> = block
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "ln_1.weight",
            "ln_1.bias",
            "attn.c_attn.weight",
            "attn.c_attn.bias",
            "attn.c_proj.weight",
            "attn.c_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
        ]
    );
    check_case(&block, case(&json, "block"), |x| block.forward(&x[0]));
}

#[test]
fn block_dropout_only_in_training() {
    let mut block =
        TransformerBlock::new_with_rng(8, 2, 0.5, &mut StdRng::seed_from_u64(2)).unwrap();
    let x = Tensor::normal(&[1, 4, 8], 0.0, 1.0, &mut StdRng::seed_from_u64(3)).unwrap();
    let train = block.forward(&x);
    block.eval();
    let eval_a = block.forward(&x);
    let eval_b = block.forward(&x);
    assert_eq!(eval_a.to_vec(), eval_b.to_vec());
    assert_ne!(train.to_vec(), eval_a.to_vec());
}

#[test]
fn activation_modules() {
    let x = Tensor::from_slice(&[-2.0, 0.5, 30.0], &[3]).unwrap();
    assert_eq!(Silu.forward(&x).to_vec(), x.silu().to_vec());
    assert_eq!(Elu::default().forward(&x).to_vec(), x.elu(1.0).to_vec());
    let sp = Softplus::default().forward(&x).to_vec();
    assert_eq!(sp, x.softplus(1.0, 20.0).to_vec());
    assert_eq!(sp[2], 30.0);
}

#[test]
fn bad_shapes_name_the_layer() {
    let mut rng = StdRng::seed_from_u64(4);
    fn err<T>(r: tapegrad_nn::Result<T>) -> String {
        r.err().expect("an error").to_string()
    }
    let e = err(MultiheadAttention::new_with_rng(10, 3, true, &mut rng).map(|_| ()));
    assert!(
        e.contains("MultiheadAttention") && e.contains("10") && e.contains("3"),
        "{e}"
    );
    let e = err(TransformerBlock::new_with_rng(10, 4, 0.0, &mut rng).map(|_| ()));
    assert!(
        e.contains("CausalSelfAttention") && e.contains("10") && e.contains("4"),
        "{e}"
    );

    let mha = MultiheadAttention::new_with_rng(8, 2, true, &mut rng).unwrap();
    let x = Tensor::zeros(&[2, 5, 8]);
    let e = err(mha.try_forward_qkv(&Tensor::zeros(&[2, 5, 6]), &x, &x, None, false));
    assert!(
        e.contains("MultiheadAttention") && e.contains("[2, 5, 6]"),
        "{e}"
    );
    let bad_mask = Tensor::zeros(&[4, 4]);
    let e = err(mha.try_forward_qkv(&x, &x, &x, Some(AttnMask::Keep(&bad_mask)), false));
    assert!(
        e.contains("MultiheadAttention") && e.contains("[4, 4]"),
        "{e}"
    );

    let block = TransformerBlock::new_with_rng(8, 2, 0.0, &mut rng).unwrap();
    let e = err(block.try_forward(&Tensor::zeros(&[2, 5, 6])));
    assert!(e.contains("[2, 5, 6]"), "{e}");
    let e = err(block.try_forward(&Tensor::zeros(&[5, 8])));
    assert!(e.contains("[5, 8]"), "{e}");
}

#[test]
fn default_generator_constructors_repeat_under_manual_seed() {
    let params =
        |m: &dyn Module| -> Vec<f32> { m.parameters().iter().flat_map(|p| p.to_vec()).collect() };
    tapegrad_autograd::manual_seed(7);
    let (a, ma) = (
        TransformerBlock::new(8, 2, 0.0).unwrap(),
        MultiheadAttention::new(8, 4, true).unwrap(),
    );
    tapegrad_autograd::manual_seed(7);
    let (b, mb) = (
        TransformerBlock::new(8, 2, 0.0).unwrap(),
        MultiheadAttention::new(8, 4, true).unwrap(),
    );
    assert_eq!(params(&a), params(&b));
    assert_eq!(params(&ma), params(&mb));
    assert_eq!(ma.num_heads(), 4);
    assert_eq!(ma.embed_dim(), 8);
}
