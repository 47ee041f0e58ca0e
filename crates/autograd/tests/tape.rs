//! Tape semantics: accumulation, zeroing, no_grad, detach, released graphs, errors,
//! and memory that stays flat over a long training loop.

use tapegrad_autograd::{
    live_tensors, no_grad, no_grad_guard, pooled_bytes, tape_len, GeluApprox, Tensor,
};

fn leaf(data: &[f32]) -> Tensor {
    Tensor::from_slice(data, &[data.len()])
        .unwrap()
        .with_requires_grad(true)
}

#[test]
fn gradients_accumulate_until_zeroed() {
    let w = leaf(&[1.0, 2.0]);
    for _ in 0..3 {
        (&w * &w).sum().backward();
    }
    assert_eq!(w.grad().unwrap().to_vec(), vec![6.0, 12.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
    (&w * 3.0).sum().backward();
    assert_eq!(w.grad().unwrap().to_vec(), vec![3.0, 3.0]);
}

#[test]
fn a_leaf_used_twice_gets_both_contributions() {
    let x = leaf(&[3.0]);
    let y = &(&x * &x) + &x.exp();
    y.sum().backward();
    let want = 2.0 * 3.0 + 3.0f32.exp();
    assert!((x.grad().unwrap().item() - want).abs() < 1e-4);
}

#[test]
fn backward_on_a_non_scalar_needs_an_output_gradient() {
    let x = leaf(&[1.0, 2.0]);
    let y = &x * 2.0;
    let err = y.try_backward().unwrap_err().to_string();
    assert!(err.contains("one-element") && err.contains("[2]"), "{err}");
    y.backward_with(&Tensor::from_slice(&[1.0, 10.0], &[2]).unwrap())
        .unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 20.0]);
}

#[test]
fn a_second_backward_over_the_same_graph_is_an_error() {
    let x = leaf(&[1.0, 2.0]);
    let loss = (&x * &x).sum();
    loss.backward();
    let err = loss.try_backward().unwrap_err().to_string();
    assert!(err.contains("second time"), "{err}");
    // A fresh forward pass works again.
    (&x * &x).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![4.0, 8.0]);
}

#[test]
fn backward_is_released_with_the_tape() {
    let x = leaf(&[1.0, 2.0, 3.0]);
    let loss = x.exp().sum();
    assert!(tape_len() >= 2);
    loss.backward();
    assert_eq!(tape_len(), 0);
}

#[test]
fn no_grad_records_nothing() {
    let x = leaf(&[1.0, 2.0]);
    let y = no_grad(|| (&x * 2.0).sum());
    assert!(!y.requires_grad());
    assert_eq!(tape_len(), 0);
    assert!(y.try_backward().is_err());
    {
        let _guard = no_grad_guard();
        let z = x.exp();
        assert!(!z.requires_grad());
        // Nested scopes restore the outer state, not "on".
        no_grad(|| ());
        assert!(!x.exp().requires_grad());
    }
    assert!(x.exp().requires_grad());
}

#[test]
fn detach_cuts_the_graph() {
    let x = leaf(&[2.0]);
    let y = &x * &x.detach();
    y.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0]);
    assert!(x.detach().is_leaf() && !x.detach().requires_grad());
}

#[test]
fn only_leaves_change_requires_grad() {
    let x = leaf(&[1.0]);
    let y = &x * 2.0;
    assert!(y.set_requires_grad(false).is_err());
    assert!(!y.is_leaf());
    let c = Tensor::ones(&[2]);
    assert!(!c.requires_grad());
    let z = (&c * 2.0).sum();
    assert!(z.try_backward().is_err(), "nothing requires grad");
}

#[test]
fn constants_get_no_gradient() {
    let w = leaf(&[1.0, 2.0]);
    let c = Tensor::from_slice(&[5.0, 6.0], &[2]).unwrap();
    (&w * &c).sum().backward();
    assert!(c.grad().is_none());
    assert_eq!(w.grad().unwrap().to_vec(), vec![5.0, 6.0]);
}

#[test]
fn clones_share_storage_and_grad() {
    let w = leaf(&[1.0]);
    let alias = w.clone();
    assert!(alias.same_storage(&w));
    (&alias * 4.0).sum().backward();
    assert_eq!(w.grad().unwrap().item(), 4.0);
}

/// A tiny regression model trained for a million steps: the live tensor count, the tape
/// and the buffer pool must not grow.
#[test]
fn memory_stays_flat_over_a_million_steps() {
    let x = Tensor::from_slice(&[0.5, -1.0, 2.0, 0.1, 0.3, -0.2], &[3, 2]).unwrap();
    let y = Tensor::from_slice(&[1.0, -1.0, 0.5], &[3, 1]).unwrap();
    let w = Tensor::from_slice(&[0.1, 0.2], &[1, 2])
        .unwrap()
        .with_requires_grad(true);
    let b = Tensor::zeros(&[1]).with_requires_grad(true);
    let step = || {
        w.zero_grad();
        b.zero_grad();
        let pred = x.linear(&w, Some(&b)).relu();
        let loss = (&pred - &y).pow(2.0).mean();
        loss.backward();
        no_grad(|| {
            for p in [&w, &b] {
                let (mut data, grad) = p.data_and_grad_mut().unwrap();
                for (d, g) in data.iter_mut().zip(grad.iter()) {
                    *d -= 0.01 * g;
                }
            }
        });
    };
    for _ in 0..100 {
        step();
    }
    let (live, pooled) = (live_tensors(), pooled_bytes());
    for _ in 0..1_000_000 {
        step();
    }
    assert_eq!(tape_len(), 0);
    assert_eq!(live_tensors(), live, "tensors leaked");
    assert_eq!(pooled_bytes(), pooled, "the buffer pool grew");
    assert!(w.data().iter().all(|v| v.is_finite()));
}

/// A sum's, a saved-derivative GELU's, a ReLU's and a reshape's records keep only where
/// their inputs' gradients go: dropping the inputs hands their buffers back at once, not when
/// the graph is released, and the gradients still arrive.
#[test]
fn records_that_do_not_read_an_input_do_not_keep_its_buffer() {
    let n = 4096;
    let x = leaf(&vec![0.5; n]);
    let (two, three) = (Tensor::full(&[n], 2.0), Tensor::full(&[n], 3.0));
    let a = &x * &two;
    let b = &x * &three;
    let sum = &a + &b;
    let h = &sum * &two;
    let y = h.gelu(GeluApprox::None);
    // A ReLU's derivative reads its output only, as PyTorch's saves its result.
    let pre = &x * &three;
    let r = pre.relu();
    // A reshape's record keeps only where its input's gradient goes.
    let flat = &x * &two;
    let square = flat.reshape(&[64, 64]);
    let before = pooled_bytes();
    drop((a, b, h, pre, flat));
    assert_eq!(
        pooled_bytes(),
        before + 5 * 4 * n,
        "an input's buffer was kept"
    );
    (&(&y.sum() + &r.sum()) + &square.sum()).backward();
    // d/dx [gelu(2·5x) + relu(3x) + 2x] = 10 · gelu'(5) + 3 + 2 at x = 0.5, and
    // gelu'(5) = Φ(5) + 5·φ(5) = 1.0000071.
    let grad = x.grad().unwrap().to_vec();
    assert!(
        grad.iter().all(|&g| (g - 15.000_071).abs() < 2e-5),
        "{:?}",
        &grad[..4]
    );
}

/// Each record is released as soon as its backward has run: by the time the backward
/// reaches an early op, the tensors saved by the ops after it are gone.
#[test]
fn backward_releases_each_record_as_it_goes() {
    use std::cell::Cell;
    use std::rc::Rc;
    let n = 64;
    let x = leaf(&vec![0.25; n]);
    let live_at_probe = Rc::new(Cell::new(usize::MAX));
    let probe = {
        let seen = Rc::clone(&live_at_probe);
        tapegrad_autograd::custom_op("probe", &[&x], x.to_vec(), &[n], move |g| {
            seen.set(live_tensors());
            vec![Some(g.to_vec())]
        })
        .unwrap()
    };
    // Held only by the records after the probe: the product keeps `probe` and `k`, the
    // GELU its derivative.
    let k = Tensor::full(&[n], 3.0);
    let loss = (&probe * &k).gelu(GeluApprox::None).sum();
    drop((probe, k));
    let before = live_tensors();
    loss.backward();
    assert!(
        live_at_probe.get() + 3 <= before,
        "{} tensors live at the probe, {before} before the backward",
        live_at_probe.get()
    );
    // 3 · gelu'(0.75), gelu'(0.75) = Φ(0.75) + 0.75 · φ(0.75) = 0.99921…
    let grad = x.grad().unwrap().to_vec();
    assert!(
        grad.iter().all(|&g| (g - 3.0 * 0.999_21).abs() < 1e-4),
        "{grad:?}"
    );
}
