use super::*;

/// The signature of [`product`] and [`portable`].
type ProductFn =
    fn((usize, usize, usize), MatRef, (&[f32], usize), (&mut [f32], usize), bool, Live);

/// A value that no product here gives, to see which outputs were left unwritten.
const UNTOUCHED: f32 = 1234.5;

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7 + seed * 13) % 23) as f32 - 11.0) * 0.125)
        .collect()
}

/// Whether element (i, p) of A is live (the caller zeroes the others).
fn a_live(live: Live, i: usize, p: usize) -> bool {
    match live {
        Live::KTo(off) => (p as isize) < i as isize + 1 + off,
        Live::KFrom(off) => (p as isize) >= i as isize + off,
        Live::All | Live::ColsTo(_) => true,
    }
}

/// Runs `f` (the dispatching or the portable product) on an m × n × k case with
/// strided operands, and compares with the triple loop: every live output equal
/// within rounding, the padding of C and the dead columns past each 6-row block's
/// diagonal untouched.
fn check(
    (m, n, k): (usize, usize, usize),
    live: Live,
    a_transposed: bool,
    accumulate: bool,
    f: ProductFn,
) {
    let (lda, ldb, ldc) = (k + 3, n + 2, n + 5);
    let mut a_data = values((m * lda).max(k * (m + 3)), 1);
    let a = |data: &[f32], i: usize, p: usize| {
        if a_transposed {
            data[p * (m + 3) + i]
        } else {
            data[i * lda + p]
        }
    };
    // Zero A's dead terms, as the attention kernels' probabilities are.
    for i in 0..m {
        for p in 0..k {
            if !a_live(live, i, p) {
                let at = if a_transposed {
                    p * (m + 3) + i
                } else {
                    i * lda + p
                };
                a_data[at] = 0.0;
            }
        }
    }
    let b = values(k * ldb + n, 2);
    let start = values(m * ldc, 3);
    let mut c: Vec<f32> = start.clone();
    for i in 0..m {
        c[i * ldc + n..(i + 1) * ldc].fill(UNTOUCHED);
    }
    let view = if a_transposed {
        MatRef::transposed(&a_data, m + 3)
    } else {
        MatRef::rows(&a_data, lda)
    };
    f((m, n, k), view, (&b, ldb), (&mut c, ldc), accumulate, live);
    for i in 0..m {
        let block_cols = match live {
            Live::ColsTo(off) => ((((i / MR) * MR + MR.min(m - (i / MR) * MR)) as isize + off)
                .clamp(0, n as isize) as usize)
                .next_multiple_of(8)
                .min(n),
            _ => n,
        };
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= block_cols {
                let untouched = if j < n { start[i * ldc + j] } else { UNTOUCHED };
                assert_eq!(got, untouched, "({i}, {j}) of {m}x{n}x{k} {live:?} written");
                continue;
            }
            let live_col = match live {
                Live::ColsTo(off) => (j as isize) < i as isize + 1 + off,
                _ => true,
            };
            if !live_col {
                continue;
            }
            let sum: f32 = (0..k).map(|p| a(&a_data, i, p) * b[p * ldb + j]).sum();
            let want = if accumulate {
                start[i * ldc + j] + sum
            } else {
                sum
            };
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "({i}, {j}) of {m}x{n}x{k} {live:?}: {got} != {want}"
            );
        }
    }
}

fn check_all(f: ProductFn) {
    let shapes = [
        (64, 64, 32),
        (13, 29, 7),
        (6, 16, 1),
        (1, 9, 5),
        (7, 3, 11),
        (20, 37, 0),
    ];
    let lives = [
        Live::All,
        Live::ColsTo(0),
        Live::ColsTo(-5),
        Live::ColsTo(9),
        Live::KTo(0),
        Live::KTo(-8),
        Live::KTo(3),
        Live::KFrom(0),
        Live::KFrom(4),
        Live::KFrom(-7),
    ];
    for shape in shapes {
        for live in lives {
            for (transposed, accumulate) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                check(shape, live, transposed, accumulate, f);
            }
        }
    }
}

#[test]
fn the_dispatched_product_matches_the_triple_loop() {
    check_all(product);
}

#[test]
fn the_portable_product_matches_the_triple_loop() {
    check_all(portable);
}

#[test]
fn an_empty_sum_writes_zeros_unless_accumulating() {
    let a = vec![1.0; 12];
    let b = vec![1.0; 24];
    let mut c = vec![5.0; 16];
    // Every row block's sum range is empty: p < i + 1 − 100.
    product(
        (2, 8, 3),
        MatRef::rows(&a, 3),
        (&b, 8),
        (&mut c, 8),
        false,
        Live::KTo(-100),
    );
    assert_eq!(c, vec![0.0; 16]);
    c.fill(5.0);
    product(
        (2, 8, 3),
        MatRef::rows(&a, 3),
        (&b, 8),
        (&mut c, 8),
        true,
        Live::KTo(-100),
    );
    assert_eq!(c, vec![5.0; 16]);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn a_short_output_is_refused() {
    let a = vec![1.0; 12];
    let b = vec![1.0; 24];
    let mut c = vec![0.0; 15];
    product(
        (2, 8, 3),
        MatRef::rows(&a, 3),
        (&b, 8),
        (&mut c, 8),
        false,
        Live::All,
    );
}

#[test]
fn the_transpose_matches_the_plain_loop() {
    for (rows, width) in [(64, 32), (13, 29), (8, 8), (7, 16), (17, 3), (1, 1), (0, 5)] {
        let ld = width + 3;
        let src = values(rows * ld + width, 4);
        let mut got = vec![UNTOUCHED; rows * width + 2];
        transpose((&src, ld), rows, width, &mut got);
        let mut want = vec![UNTOUCHED; rows * width + 2];
        transpose_portable((&src, ld), (0, rows), (0, width), &mut want, rows);
        assert_eq!(got, want, "{rows} x {width}");
        for j in 0..rows {
            for p in 0..width {
                assert_eq!(got[p * rows + j], src[j * ld + p]);
            }
        }
    }
}
