//! Tests of `gemm_into` and `gemm_bias_into` on every path: the small loops, the
//! blocked GEMM, the crate backend, threads, bounds.

use super::*;

/// The plain triple loop, as the reference for strided GEMM calls.
fn naive(m: usize, n: usize, k: usize, a: MatRef, b: MatRef) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                out[i * n + j] += a.data[i * a.row_stride + p * a.col_stride]
                    * b.data[p * b.row_stride + j * b.col_stride];
            }
        }
    }
    out
}

#[test]
fn strided_gemm_matches_the_triple_loop() {
    // 37·29·41 goes through the blocked GEMM, the others through each small-product form.
    for (m, n, k) in [(37, 29, 41), (7, 5, 9), (3, 9, 5), (9, 3, 5), (40, 1, 3)] {
        check_layouts(m, n, k);
    }
}

fn check_layouts(m: usize, n: usize, k: usize) {
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let ar = if ta {
            MatRef::transposed(&a, m)
        } else {
            MatRef::rows(&a, k)
        };
        let br = if tb {
            MatRef::transposed(&b, k)
        } else {
            MatRef::rows(&b, n)
        };
        let mut out = vec![1.0; m * n];
        gemm_into(m, n, k, ar, br, &mut out, true);
        let want = naive(m, n, k, ar, br);
        for (o, w) in out.iter().zip(&want) {
            assert_eq!(*o, w + 1.0);
        }
        gemm_into(m, n, k, ar, br, &mut out, false);
        assert_eq!(out, want);
    }
}

/// An m × k and a k × n operand of small, uneven values.
fn operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..m * k)
        .map(|i| ((i * 7) % 13) as f32 * 0.37 - 2.0)
        .collect();
    let b = (0..k * n)
        .map(|i| ((i * 5) % 11) as f32 * 0.91 - 4.0)
        .collect();
    (a, b)
}

#[test]
fn a_bias_gives_the_bits_of_copying_it_first() {
    // The small loops, k = 0, the blocked GEMM (one and two k blocks), the k split.
    for (m, n, k) in [
        (7, 5, 9),
        (4, 3, 0),
        (37, 29, 41),
        (70, 40, 300),
        (9, 7, 2000),
    ] {
        let (a, b) = operands(m, n, k);
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.13 - 1.0).collect();
        let (ar, br) = (MatRef::rows(&a, k), MatRef::transposed(&b, k));
        let mut want: Vec<f32> = bias.iter().copied().cycle().take(m * n).collect();
        gemm_into(m, n, k, ar, br, &mut want, true);
        let mut got = vec![f32::NAN; m * n];
        gemm_bias_into((m, n, k), ar, br, &bias, &mut got);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{m}x{n}x{k}");
    }
}

#[test]
fn threads_split_products_without_changing_a_bit() {
    // Row blocks split between threads, a short m (columns split), both sides long.
    for (m, n, k) in [(300, 40, 100), (8, 3000, 40), (300, 300, 64)] {
        let (a, b) = operands(m, n, k);
        let run = |threads| {
            set_num_threads(threads);
            let mut out = vec![0.0; m * n];
            gemm_into(
                m,
                n,
                k,
                MatRef::rows(&a, k),
                MatRef::transposed(&b, k),
                &mut out,
                false,
            );
            out
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(
            one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            two.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let want = naive(m, n, k, MatRef::rows(&a, k), MatRef::transposed(&b, k));
        assert!(one
            .iter()
            .zip(&want)
            .all(|(x, y)| (x - y).abs() <= 1e-3 * y.abs().max(1.0)));
    }
}

#[test]
fn the_backend_follows_the_environment_and_the_cpu() {
    let ours = |b| match b {
        Backend::Ours(k) => Some(k.name),
        Backend::Crate => None,
    };
    assert_eq!(ours(choose_backend(Some("crate"), false)), None);
    assert_eq!(ours(choose_backend(None, true)), None);
    assert_eq!(ours(choose_backend(Some(""), true)), None);
    assert_eq!(ours(choose_backend(Some("scalar"), true)), Some("scalar"));
    let best = kernels::available().last().unwrap().name;
    assert_eq!(ours(choose_backend(None, false)), Some(best));
}

#[test]
fn the_crate_backend_matches_the_triple_loop() {
    // Both the crate's own threading (both sides ≥ 256) and the rayon split.
    for (m, n, k, threads) in [(37, 29, 41, 1), (300, 40, 20, 2), (256, 260, 8, 2)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let (ar, br) = (MatRef::rows(&a, k), MatRef::transposed(&b, k));
        let mut out = vec![1.0; m * n];
        crate_path::gemm(m, n, k, ar, br, &mut out, true, threads);
        let want = naive(m, n, k, ar, br);
        assert!(out.iter().zip(&want).all(|(o, w)| *o == w + 1.0));
    }
}

#[test]
#[should_panic(expected = "out of bounds")]
fn gemm_rejects_a_short_operand() {
    let a = vec![0.0; 5];
    let mut out = vec![0.0; 4];
    gemm_into(
        2,
        2,
        3,
        MatRef::rows(&a, 3),
        MatRef::rows(&a, 2),
        &mut out,
        false,
    );
}
