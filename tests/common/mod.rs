//! The benchmark workloads, shared by the facade's integration tests.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tapegrad::losses::{CrossEntropyLoss, MseLoss};
use tapegrad::nn::{
    BatchNorm2d, Conv2d, Conv2dOptions, Flatten, Gpt, GptConfig, Linear, MaxPool2d, Module, Relu,
    Sequential,
};
use tapegrad::optim::{
    clip_grad_norm, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig,
};
use tapegrad::Tensor;

/// A model, its optimizer and one fixed batch; `step` runs one whole training step.
pub struct Workload {
    pub net: Sequential,
    pub optimizer: Box<dyn Optimizer>,
    x: Tensor,
    y: Target,
}

enum Target {
    Values(Tensor),
    Classes(Vec<i64>),
}

impl Workload {
    /// W1: Linear(10,5) → ReLU → Linear(5,1), MSE, Sgd lr 0.01, batch 64.
    pub fn w1() -> Workload {
        let mut rng = StdRng::seed_from_u64(0);
        let net = mlp(&[10, 5, 1], &mut rng);
        let optimizer = Box::new(
            Sgd::new(
                net.parameters(),
                SgdConfig {
                    lr: 0.01,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let x = Tensor::normal(&[64, 10], 0.0, 1.0, &mut rng).unwrap();
        let y = Target::Values(Tensor::normal(&[64, 1], 0.0, 1.0, &mut rng).unwrap());
        Workload {
            net,
            optimizer,
            x,
            y,
        }
    }

    /// W2: 784 → 512 → 512 → 10 with ReLU, cross-entropy, Adam lr 1e-3, batch 128.
    pub fn w2() -> Workload {
        let mut rng = StdRng::seed_from_u64(1);
        let net = mlp(&[784, 512, 512, 10], &mut rng);
        let optimizer = Box::new(
            Adam::new(
                net.parameters(),
                AdamConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let x = Tensor::normal(&[128, 784], 0.0, 1.0, &mut rng).unwrap();
        let y = Target::Classes((0..128).map(|_| rng.random_range(0..10)).collect());
        Workload {
            net,
            optimizer,
            x,
            y,
        }
    }

    /// W4: the `digits_cnn` example's network (Conv2d(1,32,3,p1) → ReLU → Conv2d(32,64,3,p1)
    /// → ReLU → MaxPool2d(2) → Flatten → Linear(1024,128) → ReLU → Linear(128,10)),
    /// cross-entropy, Adam lr 1e-3, batch 32 of [1, 8, 8].
    pub fn w4() -> Workload {
        let mut rng = StdRng::seed_from_u64(4);
        let pad = Conv2dOptions::new().padding(1);
        let net = Sequential::new()
            .add(Conv2d::with_options_and_rng(1, 32, [3, 3], pad, true, &mut rng).unwrap())
            .add(Relu)
            .add(Conv2d::with_options_and_rng(32, 64, [3, 3], pad, true, &mut rng).unwrap())
            .add(Relu)
            .add(MaxPool2d::new(2))
            .add(Flatten::new())
            .add(Linear::new_with_rng(1024, 128, &mut rng).unwrap())
            .add(Relu)
            .add(Linear::new_with_rng(128, 10, &mut rng).unwrap());
        let optimizer = Box::new(
            Adam::new(
                net.parameters(),
                AdamConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let x = Tensor::uniform(&[32, 1, 8, 8], 0.0, 1.0, &mut rng).unwrap();
        let y = Target::Classes((0..32).map(|_| rng.random_range(0..10)).collect());
        Workload {
            net,
            optimizer,
            x,
            y,
        }
    }

    /// W5: a CIFAR-shaped step, batch 32 of [3, 32, 32]: Conv2d(3,32,3,p1) → BatchNorm2d →
    /// ReLU → MaxPool2d(2) → Conv2d(32,64,3,p1) → BatchNorm2d → ReLU → MaxPool2d(2) →
    /// Flatten → Linear(4096,10), cross-entropy, SGD lr 0.01 momentum 0.9.
    pub fn w5() -> Workload {
        let mut rng = StdRng::seed_from_u64(5);
        let pad = Conv2dOptions::new().padding(1);
        let net = Sequential::new()
            .add(Conv2d::with_options_and_rng(3, 32, [3, 3], pad, true, &mut rng).unwrap())
            .add(BatchNorm2d::new(32))
            .add(Relu)
            .add(MaxPool2d::new(2))
            .add(Conv2d::with_options_and_rng(32, 64, [3, 3], pad, true, &mut rng).unwrap())
            .add(BatchNorm2d::new(64))
            .add(Relu)
            .add(MaxPool2d::new(2))
            .add(Flatten::new())
            .add(Linear::new_with_rng(4096, 10, &mut rng).unwrap());
        let optimizer = Box::new(
            Sgd::new(
                net.parameters(),
                SgdConfig {
                    lr: 0.01,
                    momentum: 0.9,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let x = Tensor::normal(&[32, 3, 32, 32], 0.0, 1.0, &mut rng).unwrap();
        let y = Target::Classes((0..32).map(|_| rng.random_range(0..10)).collect());
        Workload {
            net,
            optimizer,
            x,
            y,
        }
    }

    pub fn step(&mut self) -> f32 {
        self.optimizer.zero_grad();
        let out = self.net.forward(&self.x);
        let loss = match &self.y {
            Target::Values(y) => MseLoss::new().forward(&out, y),
            Target::Classes(c) => CrossEntropyLoss::new().forward(&out, c),
        };
        loss.backward();
        self.optimizer.step();
        loss.item()
    }

    /// Every parameter's bits.
    pub fn bits(&self) -> Vec<u32> {
        self.net
            .parameters()
            .iter()
            .flat_map(|p| p.to_vec())
            .map(f32::to_bits)
            .collect()
    }
}

fn mlp(widths: &[usize], rng: &mut StdRng) -> Sequential {
    let mut net = Sequential::new();
    for (i, pair) in widths.windows(2).enumerate() {
        if i > 0 {
            net.push(Relu);
        }
        net.push(Linear::new_with_rng(pair[0], pair[1], rng).unwrap());
    }
    net
}

/// W3: the bench's character GPT (vocabulary 67, context 64, 4 layers, 4 heads, width
/// 128, dropout 0), AdamW lr 3e-4 weight decay 0.1, `clip_grad_norm` 1.0, cross-entropy
/// on `batch` sequences of 64 tokens (the bench uses 16).
pub struct GptWorkload {
    pub model: Gpt,
    pub params: Vec<Tensor>,
    pub optimizer: AdamW,
    criterion: CrossEntropyLoss,
    ids: Vec<usize>,
    targets: Vec<i64>,
    batch: usize,
}

impl GptWorkload {
    /// The w3 model and optimizer with a fixed batch of `batch` sequences.
    pub fn w3(batch: usize) -> GptWorkload {
        let mut rng = StdRng::seed_from_u64(4);
        let (vocab, context) = (67, 64);
        let config = GptConfig {
            vocab_size: vocab,
            context,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            dropout: 0.0,
        };
        let model = Gpt::new_with_rng(config, &mut rng).unwrap();
        let ids = (0..batch * context)
            .map(|_| rng.random_range(0..vocab))
            .collect();
        let targets = (0..batch * context)
            .map(|_| rng.random_range(0..vocab as i64))
            .collect();
        let params = model.parameters();
        let optimizer = AdamW::new(
            params.clone(),
            AdamWConfig {
                lr: 3e-4,
                weight_decay: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        GptWorkload {
            model,
            params,
            optimizer,
            criterion: CrossEntropyLoss::new(),
            ids,
            targets,
            batch,
        }
    }

    /// One step as the bench runs it: zero_grad, forward, cross-entropy, backward, clip,
    /// step; returns the loss.
    pub fn step(&mut self) -> f32 {
        let (batch, context, vocab) = (self.batch, 64, 67);
        self.optimizer.zero_grad();
        let logits = self
            .model
            .try_forward_ids(&self.ids, batch, context)
            .unwrap();
        let loss = self
            .criterion
            .forward(&logits.reshape(&[batch * context, vocab]), &self.targets);
        loss.backward();
        clip_grad_norm(&self.params, 1.0, 2.0);
        self.optimizer.step();
        loss.item()
    }
}
