//! `#[derive(Module)]`: PyTorch's parameter names from a struct's fields (layers,
//! `Option`, `Vec`, nested structs, raw tensors), train/eval propagation, skipped
//! fields, and the inherent `forward` it calls.

use tapegrad::autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad::nn::{Dropout, Linear, Module, Relu};
use tapegrad::{no_grad, Tensor};

#[derive(Module)]
struct Block {
    fc: Linear,
    drop: Dropout,
}

impl Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.drop.forward(&self.fc.forward(x).relu())
    }
}

#[derive(Module)]
struct Net {
    stem: Linear,
    blocks: Vec<Block>,
    head: Option<Linear>,
    unused: Option<Linear>,
    scale: Tensor,
    act: Relu,
    #[module(skip)]
    label: String,
}

impl Net {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.act.forward(&self.stem.forward(x));
        for block in &self.blocks {
            h = block.forward(&h);
        }
        let h = match &self.head {
            Some(head) => head.forward(&h),
            None => h,
        };
        &h * &self.scale
    }
}

fn net(p: f32) -> Net {
    let mut rng = StdRng::seed_from_u64(0);
    Net {
        stem: Linear::new_with_rng(4, 8, &mut rng).unwrap(),
        blocks: (0..2)
            .map(|_| Block {
                fc: Linear::new_with_rng(8, 8, &mut rng).unwrap(),
                drop: Dropout::new(p).unwrap(),
            })
            .collect(),
        head: Some(Linear::new_with_rng(8, 3, &mut rng).unwrap()),
        unused: None,
        scale: Tensor::ones(&[3]).with_requires_grad(true),
        act: Relu,
        label: "demo".into(),
    }
}

#[test]
fn names_follow_pytorch() {
    let net = net(0.5);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "stem.weight",
            "stem.bias",
            "blocks.0.fc.weight",
            "blocks.0.fc.bias",
            "blocks.1.fc.weight",
            "blocks.1.fc.bias",
            "head.weight",
            "head.bias",
            "scale",
        ]
    );
    assert_eq!(
        net.num_parameters(),
        4 * 8 + 8 + 2 * (8 * 8 + 8) + 8 * 3 + 3 + 3
    );
    assert_eq!(net.label, "demo");
}

#[test]
fn forward_is_the_inherent_one_and_gradients_reach_every_parameter() {
    let mut net = net(0.0);
    net.eval();
    let x = Tensor::from_vec((0..8).map(|i| i as f32 * 0.1).collect(), &[2, 4]).unwrap();
    let module: &dyn Module = &net;
    let y = module.forward(&x);
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(y.to_vec(), Net::forward(&net, &x).to_vec());
    y.sum().backward();
    for (name, p) in net.named_parameters() {
        assert!(p.grad().is_some(), "{name} got no gradient");
    }
}

#[test]
fn eval_reaches_dropout_inside_a_vec_of_nested_structs() {
    let mut net = net(0.5);
    let x = Tensor::ones(&[16, 4]);
    net.eval();
    let a = no_grad(|| net.forward(&x).to_vec());
    let b = no_grad(|| net.forward(&x).to_vec());
    assert_eq!(a, b, "eval mode must be deterministic");
    net.train();
    let c = no_grad(|| net.forward(&x).to_vec());
    assert_ne!(a, c, "training mode must drop");
}

#[test]
fn display_is_the_summary() {
    let net = net(0.5);
    let text = net.to_string();
    assert!(text.starts_with("Net\n"), "{text}");
    for row in ["stem", "blocks.0.fc", "blocks.1.drop", "head", "act"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(row)),
            "{row} in {text}"
        );
    }
    assert!(text.contains("Linear 8 → 3"), "{text}");
    assert!(text.contains("(own parameters)"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.trim_start().starts_with("total"), "{text}");
    assert!(last.ends_with(&net.num_parameters().to_string()), "{text}");
}

/// A tuple struct names its fields by position, as PyTorch's `Sequential` does.
#[derive(Module)]
struct Pair(Linear, Linear);

impl Pair {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.1.forward(&self.0.forward(x))
    }
}

#[test]
fn tuple_structs_name_fields_by_position() {
    let mut rng = StdRng::seed_from_u64(1);
    let pair = Pair(
        Linear::new_with_rng(2, 3, &mut rng).unwrap(),
        Linear::with_bias_and_rng(3, 1, false, &mut rng).unwrap(),
    );
    let names: Vec<String> = pair
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["0.weight", "0.bias", "1.weight"]);
    assert_eq!(pair.forward(&Tensor::zeros(&[5, 2])).shape(), &[5, 1]);
}

/// BatchNorm's running statistics are buffers: a derived struct lists them under the
/// same prefixed names as its parameters, so checkpoints and safetensors carry them.
#[derive(Module)]
struct Normed {
    norms: Vec<tapegrad::nn::BatchNorm1d>,
    extra: Option<tapegrad::nn::BatchNorm1d>,
    fc: Linear,
}

impl Normed {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc.forward(&self.norms[0].forward(x))
    }
}

#[test]
fn buffers_are_listed_with_their_field_names() {
    tapegrad::manual_seed(0);
    let net = Normed {
        norms: vec![tapegrad::nn::BatchNorm1d::new(2)],
        extra: Some(tapegrad::nn::BatchNorm1d::new(2)),
        fc: Linear::new(2, 1).unwrap(),
    };
    let names: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "norms.0.running_mean",
            "norms.0.running_var",
            "norms.0.num_batches_tracked",
            "extra.running_mean",
            "extra.running_var",
            "extra.num_batches_tracked",
        ]
    );
    assert_eq!(net.forward(&Tensor::ones(&[3, 2])).shape(), &[3, 1]);
}
