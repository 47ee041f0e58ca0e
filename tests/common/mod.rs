//! The benchmark workloads, shared by the facade's integration tests.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tapegrad::losses::{CrossEntropyLoss, MseLoss};
use tapegrad::nn::{
    BatchNorm2d, Conv2d, Conv2dOptions, Flatten, Linear, MaxPool2d, Module, Relu, Sequential,
};
use tapegrad::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
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
