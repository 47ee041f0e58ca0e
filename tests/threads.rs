//! Results do not depend on the thread count: matrix products split work over output
//! blocks, never over the reduction, and every other reduction runs in a fixed order.
//! (Its own test binary, because the thread count is process-wide.)

mod common;

use common::Workload;
use tapegrad::autograd::rand::{rngs::StdRng, Rng, SeedableRng};
use tapegrad::autograd::set_num_threads;
use tapegrad::losses::CrossEntropyLoss;
use tapegrad::nn::{Gpt, GptConfig, Module};
use tapegrad::optim::{clip_grad_norm, AdamW, AdamWConfig, Optimizer};

fn train(make: fn() -> Workload, threads: usize, steps: usize) -> (Vec<u32>, Vec<u32>) {
    set_num_threads(threads);
    let mut w = make();
    let losses = (0..steps).map(|_| w.step().to_bits()).collect();
    (losses, w.bits())
}

/// A small GPT trained as the w3 workload is (AdamW, clipping), big enough that its
/// GELU, layer norms, residual adds, bias copies and bias gradients, and (with w3's
/// vocabulary of 67: 512 rows of logits) its cross-entropy's log-softmax are split
/// across threads: the loss bits of each step and the final parameters' bits.
fn train_gpt(threads: usize, steps: usize) -> (Vec<u32>, Vec<u32>) {
    set_num_threads(threads);
    let mut rng = StdRng::seed_from_u64(3);
    let (vocab, context, batch) = (67, 32, 16);
    let config = GptConfig {
        vocab_size: vocab,
        context,
        n_layer: 1,
        n_head: 2,
        n_embd: 64,
        dropout: 0.0,
    };
    let model = Gpt::new_with_rng(config, &mut rng).unwrap();
    let ids: Vec<usize> = (0..batch * context)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let targets: Vec<i64> = ids.iter().map(|&i| ((i * 7 + 1) % vocab) as i64).collect();
    let params = model.parameters();
    let config = AdamWConfig {
        lr: 1e-2,
        ..Default::default()
    };
    let mut optimizer = AdamW::new(params.clone(), config).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        optimizer.zero_grad();
        let logits = model.try_forward_ids(&ids, batch, context).unwrap();
        let loss =
            CrossEntropyLoss::new().forward(&logits.reshape(&[batch * context, vocab]), &targets);
        losses.push(loss.item().to_bits());
        loss.backward();
        clip_grad_norm(&params, 1.0, 2.0);
        optimizer.step();
    }
    let bits = params
        .iter()
        .flat_map(|p| p.to_vec())
        .map(f32::to_bits)
        .collect();
    (losses, bits)
}

/// A workload's name, constructor and number of steps.
type Case = (&'static str, fn() -> Workload, usize);

/// One test, so no other test changes the thread count under it. The convolution steps
/// (w4, w5) also split im2col, col2im, pooling and batch norm over planes; the GPT its
/// GELU, layer norms, residual adds and attention pairs.
#[test]
fn one_and_two_threads_train_bit_identically() {
    let workloads: [Case; 3] = [
        ("w2", Workload::w2, 4),
        ("w4", Workload::w4, 2),
        ("w5", Workload::w5, 2),
    ];
    for (name, make, steps) in workloads {
        let (losses_1, params_1) = train(make, 1, steps);
        let (losses_2, params_2) = train(make, 2, steps);
        assert_eq!(losses_1, losses_2, "{name}");
        assert!(
            params_1 == params_2,
            "{name}: parameters differ between 1 and 2 threads"
        );
    }

    let (losses_1, params_1) = train_gpt(1, 3);
    let (losses_2, params_2) = train_gpt(2, 3);
    assert_eq!(
        losses_1, losses_2,
        "GPT losses differ between 1 and 2 threads"
    );
    assert!(
        params_1 == params_2,
        "GPT parameters differ between 1 and 2 threads"
    );
}
