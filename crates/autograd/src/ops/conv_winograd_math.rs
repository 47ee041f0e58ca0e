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
    let (o, c, oc) = (d.o, d.c, d.o * d.c);
    let mut u = pool::for_overwrite(XI * oc);
    // Runs of up to 8 filters whose transforms lie side by side in every ξ slice
    // (consecutive filters for `U`, consecutive output channels for `Uᵀ`), written 8
    // floats at a time: one filter at a time, the 16 stores 4 · O · C bytes apart
    // fell into the same L1 set.
    let (runs, len) = if transposed { (c, o) } else { (1, oc) };
    for r in 0..runs {
        for s0 in (0..len).step_by(8) {
            let count = 8.min(len - s0);
            let mut t = [[0.0f32; 8]; XI];
            for l in 0..count {
                let f = if transposed { (s0 + l) * c + r } else { s0 + l };
                let v = filter_transform(&w[9 * f..][..9]);
                for (t, v) in t.iter_mut().zip(v) {
                    t[l] = v;
                }
            }
            let at = r * len + s0;
            for (xi, t) in t.iter().enumerate() {
                let dst = &mut u[xi * oc + at..][..count];
                if count == 8 {
                    dst.copy_from_slice(t);
                } else {
                    dst.iter_mut().zip(t).for_each(|(d, &v)| *d = v);
                }
            }
        }
    }
    u
}

/// `G g Gᵀ` of one 3 × 3 filter, `[4 · i + j]`.
#[inline(always)]
fn filter_transform(g: &[f32]) -> [f32; XI] {
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
    let mut out = [0.0; XI];
    for i in 0..4 {
        out[4 * i..4 * i + 4].copy_from_slice(&gm([cols[0][i], cols[1][i], cols[2][i]]));
    }
    out
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
