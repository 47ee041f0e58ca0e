//! Tests of the blocked driver: every kernel and layout against an f64 triple loop,
//! small blocks reaching every loop, the k split, bit-identical results across threads.

use super::super::kernels::{available, Kernel};
use super::*;

/// The plain triple loop in f64, the reference for every path.
fn reference(m: usize, n: usize, k: usize, a: MatRef, b: MatRef, c0: &[f32]) -> Vec<f64> {
    let mut out: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                out[i * n + j] += a.data[i * a.row_stride + p * a.col_stride] as f64
                    * b.data[p * b.row_stride + j * b.col_stride] as f64;
            }
        }
    }
    out
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7 + seed * 13) % 29) as f32 - 14.0) / 8.0)
        .collect()
}

/// Every kernel, every layout (plain, transposed, strided with gaps), overwrite and
/// accumulate, 1 and 2 threads, against the reference, with this CPU's blocks.
fn check(m: usize, n: usize, k: usize) {
    check_with(None, m, n, k);
}

/// [`check`] with the given blocks (`None`: this CPU's).
fn check_with(blocks_given: Option<Blocks>, m: usize, n: usize, k: usize) {
    for kernel in available() {
        let bl = blocks_given.unwrap_or_else(|| blocks(kernel.mr, kernel.nr));
        for layout in 0..4 {
            // Leading dimensions wider than the matrix, so strided views are tested.
            let (lda, ldb) = (k + 3, n + 5);
            let a_buf = values((m + 2) * (k + 3) + (k + 2) * (m + 4), 1);
            let b_buf = values((k + 2) * (n + 5) + (n + 2) * (k + 6), 2);
            let a = match layout & 1 {
                0 => MatRef {
                    data: &a_buf,
                    row_stride: lda,
                    col_stride: 1,
                },
                _ => MatRef {
                    data: &a_buf,
                    row_stride: 1,
                    col_stride: m + 4,
                },
            };
            let b = match layout >> 1 {
                0 => MatRef {
                    data: &b_buf,
                    row_stride: ldb,
                    col_stride: 1,
                },
                _ => MatRef {
                    data: &b_buf,
                    row_stride: 1,
                    col_stride: k + 6,
                },
            };
            for accumulate in [false, true] {
                let c0 = values(m * n, 3);
                let zeros = vec![0.0; m * n];
                let want = reference(m, n, k, a, b, if accumulate { &c0 } else { &zeros });
                let mut first = None;
                for threads in [1, 2, 3] {
                    let mut c = c0.clone();
                    c.push(99.0);
                    gemm_with(
                        kernel,
                        bl,
                        (m, n, k),
                        a,
                        b,
                        &mut c,
                        (accumulate, None),
                        threads,
                    );
                    assert_eq!(c[m * n], 99.0, "wrote past the output");
                    c.pop();
                    for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let tol = 1e-5 * (k as f64 + 1.0) * w.abs().max(1.0);
                        assert!(
                            (got as f64 - w).abs() <= tol,
                            "{} {m}x{n}x{k} layout {layout} acc {accumulate} threads {threads} at {idx}: {got} vs {w}",
                            kernel.name
                        );
                    }
                    let bits: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
                    match &first {
                        None => first = Some(bits),
                        Some(f) => {
                            assert!(*f == bits, "{}: thread count changed the bits", kernel.name)
                        }
                    }
                }
            }
            check_bias(kernel, bl, (m, n, k), a, b);
        }
    }
}

/// A bias added in the store gives the bits of copying it into every row and then
/// accumulating, on 1, 2 and 3 threads, and writes nothing past the output.
fn check_bias(kernel: &Kernel, bl: Blocks, (m, n, k): (usize, usize, usize), a: MatRef, b: MatRef) {
    let bias = values(n, 4);
    let mut want: Vec<f32> = bias.iter().copied().cycle().take(m * n).collect();
    gemm_with(kernel, bl, (m, n, k), a, b, &mut want, (true, None), 1);
    for threads in [1, 2, 3] {
        let mut c = values(m * n + 1, 5);
        c[m * n] = 99.0;
        gemm_with(
            kernel,
            bl,
            (m, n, k),
            a,
            b,
            &mut c,
            (false, Some(&bias)),
            threads,
        );
        assert_eq!(c[m * n], 99.0, "wrote past the output");
        assert!(
            c[..m * n]
                .iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits()),
            "{} {m}x{n}x{k} threads {threads}: the bias epilogue changed the bits",
            kernel.name
        );
    }
}

#[test]
fn awkward_shapes_on_every_kernel() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (1, 7, 17),
        (7, 1, 17),
        (7, 17, 1),
        (17, 63, 65),
        (63, 65, 7),
        (65, 17, 63),
        (13, 33, 300), // k crosses a KC block boundary
    ] {
        check(m, n, k);
    }
}

#[test]
fn small_blocks_reach_every_loop() {
    // Several row blocks, column blocks and k blocks (with uneven last ones) in
    // shapes small enough for CI.
    let tiny = Blocks {
        mc: 12,
        kc: 16,
        nc: 32,
    };
    for &(m, n, k) in &[(37, 70, 50), (13, 33, 17), (25, 100, 33)] {
        check_with(Some(tiny), m, n, k);
    }
    // k blocks deeper than the packing's zero rows: edge panels take the element-wise
    // fallback.
    let deep = Blocks {
        mc: 12,
        kc: 1100,
        nc: 64,
    };
    check_with(Some(deep), 7, 300, 1100);
}

#[test]
fn long_k_is_split_into_chunks_without_changing_a_bit() {
    // Small outputs with k long enough for 2 and 8 chunks (an uneven chunk too).
    for &(m, n, k) in &[(7, 5, 1100), (5, 17, 4099)] {
        assert!(k_chunks(m, n, k) > 1);
        check(m, n, k);
    }
}

#[test]
fn b_packed_once_by_all_threads() {
    // NC wide enough for the shared path, several k blocks (an uneven last one) and
    // row parts (an uneven last one); on 3 threads some take the plain split.
    let tiny = Blocks {
        mc: 24,
        kc: 16,
        nc: 128,
    };
    for &(m, n, k) in &[(79, 70, 50), (100, 33, 41), (73, 100, 33)] {
        for kernel in available() {
            assert!(shared::plan(kernel, tiny, (m, n, k), 2).is_some());
        }
        check_with(Some(tiny), m, n, k);
    }
}

#[test]
fn b_packed_once_inside_a_busy_pool() {
    // A product started from inside a parallel region runs all its parts on one
    // thread, which then packs every panel of B itself: same bits, no waiting forever.
    let kernel = *available().last().unwrap();
    let tiny = Blocks {
        mc: 24,
        kc: 16,
        nc: 128,
    };
    let (m, n, k) = (79, 70, 50);
    assert!(shared::plan(kernel, tiny, (m, n, k), 2).is_some());
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let (a, b) = (MatRef::rows(&a, k), MatRef::rows(&b, n));
    let mut want = vec![0.0; m * n];
    gemm_with(kernel, tiny, (m, n, k), a, b, &mut want, (false, None), 1);
    let outs: Vec<std::sync::Mutex<Vec<f32>>> = (0..3).map(|_| Default::default()).collect();
    crate::parallel::for_each_part(3, |i| {
        let mut c = vec![0.0; m * n];
        gemm_with(kernel, tiny, (m, n, k), a, b, &mut c, (false, None), 2);
        *outs[i].lock().unwrap() = c;
    });
    for out in &outs {
        let got = out.lock().unwrap();
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()));
    }
}

#[test]
fn many_row_blocks_and_threads() {
    // m above MC with several panels per thread; n not a multiple of any NR.
    check(300, 37, 20);
}

#[test]
fn column_blocks_beyond_nc() {
    // n above NC exercises the outer column loop (k small to stay fast).
    for kernel in available() {
        let (m, n, k) = (3, blocks(kernel.mr, kernel.nr).nc + 21, 2);
        let a = values(m * k, 4);
        let b = values(k * n, 5);
        let (a, b) = (MatRef::rows(&a, k), MatRef::rows(&b, n));
        let mut c = vec![0.0; m * n];
        gemm(kernel, m, n, k, a, b, &mut c, false, None, 2);
        let want = reference(m, n, k, a, b, &vec![0.0; m * n]);
        assert!(
            c.iter()
                .zip(&want)
                .all(|(&g, &w)| (g as f64 - w).abs() < 1e-4),
            "{}",
            kernel.name
        );
    }
}

/// Where this thread's packing buffer for B lives now.
fn pack_b_address() -> *const f32 {
    PACK_B.with(|s| {
        let v = s.take();
        let p = v.as_ptr();
        s.set(v);
        p
    })
}

#[test]
fn buffers_are_reused_between_calls() {
    let kernel = available()[0];
    let (a, b) = (values(40 * 30, 1), values(30 * 50, 2));
    let mut c = vec![0.0; 40 * 50];
    let mut product_then_address = || {
        let (a, b) = (MatRef::rows(&a, 30), MatRef::rows(&b, 50));
        gemm(kernel, 40, 50, 30, a, b, &mut c, false, None, 1);
        pack_b_address()
    };
    let ptr = product_then_address();
    let again = product_then_address();
    assert_eq!(ptr, again);
}

/// Values of many magnitudes and both signs, so that summing in another order would
/// change the bits.
fn rough_values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = (i * 7 + seed * 13) as f32;
            x.sin() * (1.0 + ((i * 5 + seed) % 11) as f32 * 37.3)
        })
        .collect()
}

/// Row i of `a` summed from column 0 up, one add at a time (what `linear`'s
/// `column_sums` does to the columns of G, here A = Gᵀ).
fn plain_row_sums(m: usize, k: usize, a: MatRef) -> Vec<u32> {
    (0..m)
        .map(|i| {
            let mut s = 0.0f32;
            for p in 0..k {
                s += a.data[i * a.row_stride + p * a.col_stride];
            }
            s.to_bits()
        })
        .collect()
}

/// `gemm_summing_with` on A = Gᵀ stored: the plain loop's row sums bit for bit and
/// `gemm_with`'s product bit for bit, on 1, 2 and 3 threads, for every kernel.
fn check_sums(blocks_given: Option<Blocks>, (m, n, k): (usize, usize, usize)) {
    assert_eq!(k_chunks(m, n, k), 1, "a split k takes the unfused route");
    // G is k × m with a wider stride (its rows are the product's k); X is k × n.
    let (g, x) = (rough_values(k * (m + 3), 1), rough_values(k * n, 2));
    let (a, b) = (MatRef::transposed(&g, m + 3), MatRef::rows(&x, n));
    let want_sums = plain_row_sums(m, k, a);
    for kernel in available() {
        let bl = blocks_given.unwrap_or_else(|| blocks(kernel.mr, kernel.nr));
        let mut want = vec![0.0; m * n];
        gemm_with(kernel, bl, (m, n, k), a, b, &mut want, (false, None), 1);
        for threads in [1, 2, 3] {
            let mut c = vec![f32::NAN; m * n];
            let mut sums = vec![f32::NAN; m + 1];
            sums[m] = 99.0;
            let fused =
                gemm_summing_with(kernel, bl, (m, n, k), (a, b), &mut c, &mut sums, threads);
            let name = kernel.name;
            assert!(fused, "{name} {m}x{n}x{k}: not fused");
            assert_eq!(sums.pop(), Some(99.0), "wrote past the sums");
            let sum_bits: Vec<u32> = sums.iter().map(|v| v.to_bits()).collect();
            assert!(
                sum_bits == want_sums,
                "{name} {m}x{n}x{k} threads {threads}: the sums' bits differ"
            );
            assert!(
                c.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                "{name} {m}x{n}x{k} threads {threads}: summing changed the product"
            );
        }
    }
}

#[test]
fn rows_summed_while_packing_keep_the_plain_loops_bits() {
    // This CPU's blocks: a `linear`-like weight gradient (k = rows over several k
    // blocks) and ragged shapes (m not a multiple of MR, n not of NR, k of no block).
    for dims in [
        (131, 389, 517),
        (389, 131, 700),
        (7, 300, 97),
        (20, 300, 700),
    ] {
        check_sums(None, dims);
    }
    // Tiny blocks: several row blocks, column blocks (only the first one sums), k
    // blocks with an uneven last one, and the shared path's row parts.
    let tiny = Blocks {
        mc: 12,
        kc: 16,
        nc: 32,
    };
    for dims in [(37, 70, 50), (13, 33, 17), (25, 100, 33)] {
        check_sums(Some(tiny), dims);
    }
    let shared_b = Blocks {
        mc: 24,
        kc: 16,
        nc: 128,
    };
    for dims in [(79, 70, 50), (100, 33, 41)] {
        check_sums(Some(shared_b), dims);
    }
}

#[test]
fn rows_are_not_summed_where_packing_cannot() {
    let kernel = *available().last().unwrap();
    let bl = blocks(kernel.mr, kernel.nr);
    // A row-major (packed panel by panel), and a k split into chunks.
    for (m, n, k, lda) in [(20, 30, 40, 40), (7, 5, 1100, 7)] {
        let (g, x) = (rough_values(m * k, 1), rough_values(k * n, 2));
        let a = if lda == k {
            MatRef::rows(&g, k)
        } else {
            MatRef::transposed(&g, lda)
        };
        let b = MatRef::rows(&x, n);
        let mut want = vec![0.0; m * n];
        gemm_with(kernel, bl, (m, n, k), a, b, &mut want, (false, None), 2);
        let (mut c, mut sums) = (vec![0.0; m * n], vec![5.0; m]);
        assert!(!gemm_summing_with(
            kernel,
            bl,
            (m, n, k),
            (a, b),
            &mut c,
            &mut sums,
            2
        ));
        assert!(sums.iter().all(|&s| s == 5.0), "{m}x{n}x{k}: sums touched");
        assert!(c.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()));
    }
}
