//! Everything a training script uses, in one import (`use tapegrad::prelude::*;`):
//! the tensor and grad mode, `manual_seed`, `Module` and the layers, the losses, the
//! optimizers and schedulers, clipping, the data loader, and checkpoints.
//!
//! Names follow PyTorch (`Linear`, `CrossEntropyLoss`, `AdamW`, `StepLr`, `DataLoader`).
//! The error types are left out on purpose: a script's `main` returns
//! `Result<(), Box<dyn std::error::Error>>`, and `?` converts each of them.

pub use tapegrad_autograd::{manual_seed, no_grad, no_grad_guard, Tensor};
pub use tapegrad_data::{read_csv, train_test_split, DataLoader, Standardizer, TensorDataset};
pub use tapegrad_io::{load_safetensors, save_safetensors, Checkpoint};
pub use tapegrad_losses::{
    BceLoss, BceWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MseLoss, NllLoss, SmoothL1Loss,
};
pub use tapegrad_nn::{
    prefixed_parameters, Dropout, Embedding, Gelu, Identity, LayerNorm, LeakyRelu, Linear, Module,
    Relu, Sequential, Sigmoid, Softmax, Tanh,
};
pub use tapegrad_optim::{
    clip_grad_norm, clip_grad_value, Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig,
    CosineAnnealingLr, ExponentialLr, GradientDescent, GradientDescentConfig, LinearLr,
    LrScheduler, Optimizer, RMSprop, RMSpropConfig, Sgd, SgdConfig, StepLr,
};
