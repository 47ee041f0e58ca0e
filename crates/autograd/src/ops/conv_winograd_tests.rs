//! `conv_winograd` against the column-matrix kernels of `conv_kernels`.

use super::*;
use crate::ops::conv_kernels::{conv_forward, conv_input_grad, conv_weight_grad, to_channel_major};
use crate::ops::conv_samples::tests::close;

/// Winograd gives what the column-matrix kernels give: forward, both gradients,
/// even and odd planes, a plane smaller than a tile, a tile count that is not a
/// multiple of the lanes.
#[test]
fn matches_the_column_matrix_kernels() {
    for (n, c, o, h, w) in [
        (3, 8, 5, 8, 8),
        (2, 9, 4, 7, 5),
        (2, 8, 3, 1, 1),
        (1, 8, 2, 6, 10),
        (9, 12, 10, 8, 8),
        (5, 16, 17, 3, 9),
    ] {
        let d = Geom {
            n,
            c,
            h,
            w,
            o,
            oh: h,
            ow: w,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            ph: 1,
            pw: 1,
            dh: 1,
            dw: 1,
            groups: 1,
        };
        assert!(applies(&d));
        let wave = |len: usize, f: f32| {
            (0..len)
                .map(|i| (i as f32 * f).sin() * 2.0)
                .collect::<Vec<f32>>()
        };
        let x = wave(n * c * h * w, 0.37);
        let wt = wave(o * c * 9, 0.91);
        let bias = wave(o, 1.3);
        let g = wave(n * o * h * w, 0.53);
        let (want, col) = conv_forward(&x, &wt, Some(&bias), &d);
        let got = forward(&x, &wt, Some(&bias), &d);
        close(&got, &want, "forward");
        let g_cm = to_channel_major(&g, n, o, d.p());
        let (want_dx, want_dw) = (
            conv_input_grad(&g_cm, &wt, &d),
            conv_weight_grad(&col, &g_cm, &d),
        );
        let (dx, dw) = backward(&x, &wt, &g, &d, true, true);
        close(&dx.unwrap(), &want_dx, "dx");
        close(&dw.unwrap(), &want_dw, "dw");
        // Each gradient alone is the same bits as both together.
        let (dx_only, none) = backward(&x, &wt, &g, &d, true, false);
        let (none2, dw_only) = backward(&x, &wt, &g, &d, false, true);
        assert!(none.is_none() && none2.is_none());
        let (dx, dw) = backward(&x, &wt, &g, &d, true, true);
        assert_eq!(dx_only.unwrap(), dx.unwrap());
        assert_eq!(dw_only.unwrap(), dw.unwrap());
    }
}

#[test]
fn applies_only_to_small_same_3x3_convolutions() {
    let d = Geom {
        n: 2,
        c: 32,
        h: 8,
        w: 8,
        o: 64,
        oh: 8,
        ow: 8,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        ph: 1,
        pw: 1,
        dh: 1,
        dw: 1,
        groups: 1,
    };
    assert!(applies(&d));
    assert!(!applies(&Geom { c: 1, ..d }));
    assert!(!applies(&Geom { sh: 2, oh: 4, ..d }));
    assert!(!applies(&Geom { groups: 2, ..d }));
    assert!(!applies(&Geom {
        h: 16,
        w: 16,
        oh: 16,
        ow: 16,
        ..d
    }));
}
