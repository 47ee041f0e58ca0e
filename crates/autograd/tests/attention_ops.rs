//! The ops attention is built from (permute, narrow, expand, stack, chunk, split,
//! tril/triu, masked_fill, where, N-d batched matmul, silu/elu/softplus): finite-difference
//! gradient checks, forward values worked out by hand, and the errors bad input gets.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad_autograd::{gradcheck, num_threads, set_num_threads, AttnMask, Tensor, TensorError};

const TOL: f32 = 2e-2;

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape).unwrap()
}

/// Checks `op` as a function of `inputs`, weighting its output by random values.
fn check(name: &str, inputs: Vec<Tensor>, op: impl Fn(&[Tensor]) -> Tensor) {
    let shape = op(&inputs).shape().to_vec();
    let weights = rand_t(&shape, 99);
    let report = gradcheck(|xs| (&op(xs) * &weights).sum(), &inputs).unwrap();
    assert!(report.checked > 0, "{name}: nothing checked");
    assert!(report.passes(TOL), "{name}: {report:?}");
}

#[test]
fn permute_moves_axes_and_its_gradient_back() {
    let x = Tensor::arange(0.0, 24.0, 1.0).unwrap().reshape(&[2, 3, 4]);
    let y = x.permute(&[2, 0, 1]);
    assert_eq!(y.shape(), &[4, 2, 3]);
    // y[i, j, k] = x[j, k, i]
    assert_eq!(y.to_vec()[..6], [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
    assert_eq!(x.permute(&[0, 1, 2]).to_vec(), x.to_vec());
    check("permute 3d", vec![rand_t(&[2, 3, 4], 1)], |x| {
        x[0].permute(&[2, 0, 1])
    });
    check("permute 4d", vec![rand_t(&[2, 3, 2, 4], 2)], |x| {
        x[0].permute(&[0, 2, 1, 3])
    });
    check("permute 5d", vec![rand_t(&[2, 1, 3, 2, 2], 3)], |x| {
        x[0].permute(&[4, 2, 0, 3, 1])
    });
}

#[test]
fn narrow_split_chunk_stack() {
    let x = Tensor::arange(0.0, 12.0, 1.0).unwrap().reshape(&[3, 4]);
    assert_eq!(x.narrow(1, 1, 2).to_vec(), [1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
    assert_eq!(x.narrow(0, 2, 1).to_vec(), [8.0, 9.0, 10.0, 11.0]);
    let parts = x.split(&[1, 3], 1);
    assert_eq!(parts[0].shape(), &[3, 1]);
    assert_eq!(
        parts[1].to_vec(),
        [1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 9.0, 10.0, 11.0]
    );
    // torch.arange(5).chunk(3) has sizes 2, 2, 1; torch.arange(4).chunk(3) has 2, 2.
    let sizes = |len: usize, n: usize| -> Vec<usize> {
        Tensor::zeros(&[len])
            .chunk(n, 0)
            .iter()
            .map(|c| c.shape()[0])
            .collect()
    };
    assert_eq!(sizes(5, 3), [2, 2, 1]);
    assert_eq!(sizes(4, 3), [2, 2]);
    assert_eq!(sizes(6, 3), [2, 2, 2]);
    let s = Tensor::stack(&[&x, &(&x * 2.0)], 1);
    assert_eq!(s.shape(), &[3, 2, 4]);
    assert_eq!(s.to_vec()[..8], [0.0, 1.0, 2.0, 3.0, 0.0, 2.0, 4.0, 6.0]);

    check("narrow", vec![rand_t(&[2, 5, 3], 4)], |x| {
        x[0].narrow(1, 1, 3)
    });
    check("split", vec![rand_t(&[2, 6], 5)], |x| {
        let p = x[0].split(&[1, 2, 3], 1);
        // Every piece used, one twice, so the pieces' gradients add into one input.
        Tensor::concat(&[&p[2], &p[0], &p[1], &p[0]], 1)
    });
    check("chunk", vec![rand_t(&[3, 4], 6)], |x| {
        let c = x[0].chunk(3, 0);
        &(&c[0] * &c[1]) + &c[2]
    });
    check("stack", vec![rand_t(&[2, 3], 7), rand_t(&[2, 3], 8)], |x| {
        Tensor::stack(&[&x[0], &x[1], &x[0]], 2)
    });
    check("expand", vec![rand_t(&[3, 1], 9)], |x| {
        x[0].expand(&[2, 3, 4])
    });
}

#[test]
fn tril_triu_masked_fill_where() {
    let ones = Tensor::ones(&[3, 3]);
    assert_eq!(
        ones.tril(0).to_vec(),
        [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(
        ones.triu(1).to_vec(),
        [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(ones.tril(-1).to_vec()[3..6], [1.0, 0.0, 0.0]);
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let mask = t(&[0.0, 1.0], &[2]);
    assert_eq!(
        x.masked_fill(&mask, f32::NEG_INFINITY).to_vec(),
        [1.0, f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY]
    );
    let w = Tensor::where_cond(&t(&[1.0, 0.0], &[2, 1]), &x, &Tensor::scalar(-1.0));
    assert_eq!(w.to_vec(), [1.0, 2.0, -1.0, -1.0]);

    check("tril", vec![rand_t(&[2, 3, 4], 10)], |x| x[0].tril(1));
    check("triu", vec![rand_t(&[4, 3], 11)], |x| x[0].triu(-1));
    let m = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0], &[2, 1, 3]);
    check("masked_fill", vec![rand_t(&[2, 4, 3], 12)], |x| {
        x[0].masked_fill(&m, 0.5)
    });
    let c = t(&[1.0, 0.0, 1.0], &[3, 1]);
    check(
        "where broadcast",
        vec![rand_t(&[3, 4], 13), rand_t(&[4], 14)],
        |x| Tensor::where_cond(&c, &x[0], &x[1]),
    );
}

#[test]
fn matmul_broadcasts_any_number_of_batch_axes() {
    let a = rand_t(&[2, 3, 4, 5], 20);
    let b = rand_t(&[2, 3, 5, 4], 21);
    let c = a.matmul(&b);
    assert_eq!(c.shape(), &[2, 3, 4, 4]);
    // Batch (1, 2) equals the 2-D product of its matrices.
    let pick = |x: &Tensor, i, j| x.narrow(0, i, 1).narrow(1, j, 1).squeeze(0).squeeze(0);
    let want = pick(&a, 1, 2).matmul(&pick(&b, 1, 2));
    for (g, w) in pick(&c, 1, 2).to_vec().iter().zip(want.to_vec()) {
        assert!((g - w).abs() < 1e-5);
    }
    check(
        "matmul 4d",
        vec![rand_t(&[2, 2, 3, 4], 22), rand_t(&[2, 2, 4, 3], 23)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul 4d broadcast",
        vec![rand_t(&[1, 2, 3, 4], 24), rand_t(&[3, 1, 4, 2], 25)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul 4d by 2d",
        vec![rand_t(&[2, 2, 3, 4], 26), rand_t(&[4, 2], 27)],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul 2d by 3d",
        vec![rand_t(&[3, 4], 28), rand_t(&[2, 4, 2], 29)],
        |x| x[0].matmul(&x[1]),
    );
}

#[test]
fn silu_elu_softplus() {
    let x = t(&[-30.0, -1.0, 0.0, 2.0, 30.0], &[5]);
    let silu = x.silu().to_vec();
    assert!((silu[3] - 2.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    let elu = x.elu(1.5).to_vec();
    assert!((elu[1] - 1.5 * ((-1.0f32).exp() - 1.0)).abs() < 1e-6);
    assert_eq!(elu[3], 2.0);
    let sp = x.softplus(1.0, 20.0).to_vec();
    assert_eq!(sp[4], 30.0);
    assert!((sp[2] - 2f32.ln()).abs() < 1e-6);
    let off = t(&[-1.3, -0.4, 0.3, 0.9, 2.2, -2.5], &[2, 3]);
    check("silu", vec![off.clone()], |x| x[0].silu());
    check("elu", vec![off.clone()], |x| x[0].elu(0.7));
    check("softplus", vec![off.clone()], |x| x[0].softplus(2.0, 20.0));
    check("softplus threshold", vec![off], |x| x[0].softplus(1.0, 1.0));
}

#[test]
fn bad_input_names_the_op_and_shapes() {
    let x = Tensor::zeros(&[2, 3]);
    let msg = |e: TensorError| e.to_string();
    let e = msg(x.try_permute(&[0, 0]).unwrap_err());
    assert!(
        e.contains("permute") && e.contains("[0, 0]") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = msg(x.try_narrow(1, 2, 2).unwrap_err());
    assert!(e.contains("narrow") && e.contains("[2, 3]"), "{e}");
    let e = msg(x.try_masked_fill(&Tensor::zeros(&[2]), 0.0).unwrap_err());
    assert!(
        e.contains("masked_fill") && e.contains("[2, 3]") && e.contains("[2]"),
        "{e}"
    );
    // A mask may not grow the tensor.
    assert!(Tensor::zeros(&[3])
        .try_masked_fill(&Tensor::zeros(&[2, 3]), 0.0)
        .is_err());
    let e = msg(Tensor::try_where_cond(&Tensor::zeros(&[4]), &x, &x).unwrap_err());
    assert!(
        e.contains("where") && e.contains("[4]") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = msg(Tensor::zeros(&[2, 2, 3, 4])
        .try_matmul(&Tensor::zeros(&[3, 4, 5]))
        .unwrap_err());
    assert!(
        e.contains("matmul") && e.contains("[2, 2, 3, 4]") && e.contains("batch"),
        "{e}"
    );
    let e = msg(Tensor::zeros(&[3]).try_matmul(&x).unwrap_err());
    assert!(e.contains("matmul") && e.contains("[3]"), "{e}");
    let e = msg(Tensor::try_stack(&[&x, &Tensor::zeros(&[3, 2])], 0).unwrap_err());
    assert!(e.contains("stack") && e.contains("[3, 2]"), "{e}");
    let e = msg(x.try_split(&[1, 1], 1).unwrap_err());
    assert!(e.contains("split") && e.contains("[1, 1]"), "{e}");
    let e = msg(x.try_expand(&[2, 4]).unwrap_err());
    assert!(e.contains("expand") && e.contains("[2, 4]"), "{e}");
    assert!(x.try_chunk(0, 0).is_err());
    assert!(Tensor::zeros(&[3]).try_tril(0).is_err());
}

/// The fused op against the same formula written from unfused ops.
fn unfused_attention(q: &Tensor, k: &Tensor, v: &Tensor, keep: Option<&Tensor>) -> Tensor {
    let d = q.shape()[q.rank() - 1] as f32;
    let kt = k.transpose(k.rank() - 2, k.rank() - 1);
    let scores = &q.matmul(&kt) * (1.0 / d.sqrt());
    let scores = match keep {
        Some(m) => scores.masked_fill(&(1.0 - m), f32::NEG_INFINITY),
        None => scores,
    };
    scores.softmax(scores.rank() - 1).matmul(v)
}

#[test]
fn fused_attention_gradients() {
    let (q, k, v) = (
        rand_t(&[2, 3, 4], 40),
        rand_t(&[2, 5, 4], 41),
        rand_t(&[2, 5, 3], 42),
    );
    check("sdpa", vec![q.clone(), k.clone(), v.clone()], |x| {
        x[0].scaled_dot_product_attention(&x[1], &x[2], None, false)
    });
    let (qs, ks, vs) = (
        rand_t(&[2, 4, 3], 43),
        rand_t(&[2, 4, 3], 44),
        rand_t(&[2, 4, 3], 45),
    );
    check(
        "sdpa causal",
        vec![qs.clone(), ks.clone(), vs.clone()],
        |x| x[0].scaled_dot_product_attention(&x[1], &x[2], None, true),
    );
    let keep = t(
        &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        &[3, 4],
    );
    check(
        "sdpa keep mask + causal",
        vec![
            rand_t(&[3, 3], 46),
            rand_t(&[4, 3], 47),
            rand_t(&[4, 2], 48),
        ],
        |x| x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Keep(&keep)), true),
    );
    let add = rand_t(&[1, 3, 5], 49);
    check("sdpa additive", vec![q, k, v], |x| {
        x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Additive(&add)), false)
    });
    // Broadcast batch axes: k and v shared across the first axis.
    check(
        "sdpa broadcast",
        vec![
            rand_t(&[2, 2, 3, 4], 50),
            rand_t(&[2, 5, 4], 51),
            rand_t(&[1, 5, 3], 52),
        ],
        |x| x[0].scaled_dot_product_attention(&x[1], &x[2], None, false),
    );
}

#[test]
fn fused_attention_equals_the_unfused_formula_across_tiles() {
    // 100 queries and keys: two tiles of each, with a causal mask crossing them.
    let (q, k, v) = (
        rand_t(&[2, 100, 8], 60),
        rand_t(&[2, 100, 8], 61),
        rand_t(&[2, 100, 8], 62),
    );
    let causal = Tensor::ones(&[100, 100]).tril(0);
    let fused = q.scaled_dot_product_attention(&k, &v, None, true);
    let plain = unfused_attention(&q, &k, &v, Some(&causal));
    for (a, b) in fused.to_vec().iter().zip(plain.to_vec()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let as_keep = q.scaled_dot_product_attention(&k, &v, Some(AttnMask::Keep(&causal)), false);
    assert_eq!(as_keep.to_vec(), fused.to_vec());
}

#[test]
fn fused_attention_does_not_depend_on_the_thread_count() {
    let run = |threads| {
        set_num_threads(threads);
        let leaves: Vec<Tensor> = (0..3)
            .map(|i| rand_t(&[4, 64, 16], 70 + i).with_requires_grad(true))
            .collect();
        let out = leaves[0].scaled_dot_product_attention(&leaves[1], &leaves[2], None, true);
        (&out * &rand_t(&[4, 64, 16], 80)).sum().backward();
        let mut all = out.to_vec();
        for l in &leaves {
            all.extend(l.grad().unwrap().to_vec());
        }
        all
    };
    let before = num_threads();
    let one = run(1);
    let two = run(2);
    set_num_threads(before);
    assert_eq!(one, two);
}

#[test]
fn fully_masked_queries_give_zeros_like_pytorch() {
    let (q, k, v) = (
        rand_t(&[2, 3], 90),
        rand_t(&[4, 3], 91),
        rand_t(&[4, 2], 92),
    );
    let keep = Tensor::zeros(&[2, 4]);
    let out = q.scaled_dot_product_attention(&k, &v, Some(AttnMask::Keep(&keep)), false);
    assert_eq!(out.to_vec(), [0.0; 4]);
}

#[test]
fn fused_attention_bad_input() {
    let (q, k, v) = (
        Tensor::zeros(&[2, 3, 4]),
        Tensor::zeros(&[2, 5, 4]),
        Tensor::zeros(&[2, 5, 3]),
    );
    let e = q
        .try_scaled_dot_product_attention(
            &k,
            &v,
            Some(AttnMask::Keep(&Tensor::zeros(&[3, 4]))),
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scaled_dot_product_attention")
            && e.contains("[3, 4]")
            && e.contains("[2, 3, 5]"),
        "{e}"
    );
    let e = q
        .try_scaled_dot_product_attention(&Tensor::zeros(&[2, 5, 3]), &v, None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 3, 4]") && e.contains("[2, 5, 3]"), "{e}");
    let e = q
        .try_scaled_dot_product_attention(&k, &Tensor::zeros(&[2, 6, 3]), None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 5, 4]") && e.contains("[2, 6, 3]"), "{e}");
    let e = q
        .try_scaled_dot_product_attention(&Tensor::zeros(&[3, 5, 4]), &v, None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("broadcast") && e.contains("[3, 5, 4]"), "{e}");
    assert!(Tensor::zeros(&[4])
        .try_scaled_dot_product_attention(&k, &v, None, false)
        .is_err());
}
