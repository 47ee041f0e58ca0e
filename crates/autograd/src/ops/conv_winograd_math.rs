//! The arithmetic of `conv_winograd`: the F(2 × 2, 3 × 3) transforms along one axis
//! (which `conv_winograd_lanes` applies to tiles of eight channels at once), and the
//! weight transforms.

use super::XI;
use crate::ops::conv_kernels::Geom;
use crate::pool;

/// `Bᵀ x`: the input transform along one axis.
#[inline(always)]
pub(super) fn bt(x: [f32; 4]) -> [f32; 4] {
    [x[0] - x[2], x[1] + x[2], x[2] - x[1], x[1] - x[3]]
}

/// `B x`: the adjoint of [`bt`].
#[inline(always)]
pub(super) fn b(x: [f32; 4]) -> [f32; 4] {
    [x[0], x[1] - x[2] + x[3], x[1] + x[2] - x[0], -x[3]]
}

/// `Aᵀ x`: the output transform along one axis.
#[inline(always)]
pub(super) fn at(x: [f32; 4]) -> [f32; 2] {
    [x[0] + x[1] + x[2], x[1] - x[2] - x[3]]
}

/// `A y`: the adjoint of [`at`].
#[inline(always)]
pub(super) fn a(y: [f32; 2]) -> [f32; 4] {
    [y[0], y[0] + y[1], y[0] - y[1], -y[1]]
}

/// `U[ξ][o][c] = (G g Gᵀ)[ξ]` for each filter `g = w[o][c]`: `[16, O, C]`, or its
/// transpose `Uᵀ` (`[16, C, O]`) when `transposed`.
pub(super) fn transform_weights(w: &[f32], d: &Geom, transposed: bool) -> Vec<f32> {
    let oc = d.o * d.c;
    let mut u = pool::for_overwrite(XI * oc);
    for (f, g) in w.chunks_exact(9).enumerate() {
        let at = if transposed {
            (f % d.c) * d.o + f / d.c
        } else {
            f
        };
        // G g (4 × 3), then (G g) Gᵀ (4 × 4).
        let gm = |r: [f32; 3]| {
            [
                r[0],
                0.5 * (r[0] + r[1] + r[2]),
                0.5 * (r[0] - r[1] + r[2]),
                r[2],
            ]
        };
        let cols: [[f32; 4]; 3] = std::array::from_fn(|j| gm([g[j], g[3 + j], g[6 + j]]));
        for i in 0..4 {
            let row = gm([cols[0][i], cols[1][i], cols[2][i]]);
            for (j, v) in row.into_iter().enumerate() {
                u[(i * 4 + j) * oc + at] = v;
            }
        }
    }
    u
}

/// `dW = Gᵀ dU G` for each filter, from `dU` (`[16, O, C]`): `[O, C, 3, 3]`.
pub(super) fn weight_grad_from(du: &[f32], d: &Geom) -> Vec<f32> {
    let oc = d.o * d.c;
    let mut dw = pool::for_overwrite(oc * 9);
    for (f, dst) in dw.chunks_exact_mut(9).enumerate() {
        let gt = |r: [f32; 4]| {
            [
                r[0] + 0.5 * (r[1] + r[2]),
                0.5 * (r[1] - r[2]),
                0.5 * (r[1] + r[2]) + r[3],
            ]
        };
        // Gᵀ along rows of each column j, then along the columns.
        let cols: [[f32; 3]; 4] =
            std::array::from_fn(|j| gt(std::array::from_fn(|i| du[(i * 4 + j) * oc + f])));
        for r in 0..3 {
            let row = gt([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
            dst[r * 3..][..3].copy_from_slice(&row);
        }
    }
    dw
}
