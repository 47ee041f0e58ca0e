//! Packing whole blocks of A and B into the micro-kernel's panels, line by line where
//! the operand's lines run along the panels' width (row-major B, Aᵀ stored); other
//! layouts go panel by panel through `pack`. Packing Aᵀ line by line can also sum A's
//! rows as it copies them (`linear`'s bias gradient: the column sums of G, read while
//! G is packed for dW = Gᵀ·X instead of in a pass of their own).

use super::pack::{pack_a_panel, pack_b_panel};
use super::MatRef;

/// Packs rows `pc..pc + kc`, columns `j0..cols_end` of `b` into consecutive `nr`-wide
/// panels (`dst` holds them all, kc·nr floats each).
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_b_block(
    b: MatRef,
    pc: usize,
    kc: usize,
    j0: usize,
    cols_end: usize,
    nr: usize,
    simd: bool,
    dst: &mut [f32],
) {
    if b.col_stride == 1 {
        // Row-major B (every backward product G·W and Gᵀ·X): line by line.
        let (src, ld) = (b.data, b.row_stride);
        match nr {
            8 => return rows_to_panels::<8>(src, ld, (pc, kc), j0, cols_end, simd, dst, None),
            16 => return rows_to_panels::<16>(src, ld, (pc, kc), j0, cols_end, simd, dst, None),
            _ => {}
        }
    }
    for (t, panel) in dst.chunks_exact_mut(kc * nr).enumerate() {
        pack_b_panel(b, pc, kc, j0 + t * nr, cols_end, nr, simd, panel);
    }
}

/// Whether [`pack_a_block`] can sum the rows of `a` as it packs them for a kernel of
/// `mr` rows: only the line-by-line copy of Aᵀ stored does.
pub(super) fn sums_rows(a: MatRef, mr: usize) -> bool {
    a.row_stride == 1 && matches!(mr, 4 | 6)
}

/// Packs rows `i0..rows_end`, columns `pc..pc + kc` of `a` into consecutive `mr`-high
/// panels (`dst` holds them all, kc·mr floats each). With `sums` (one float per row,
/// `sums[i - i0]` for row i; only where [`sums_rows`] says so, else this panics), also
/// adds each row's kc elements to its sum, in column order, one at a time: called
/// for k blocks in order, this sums each row from column 0 up, as a plain loop would.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_a_block(
    a: MatRef,
    pc: usize,
    kc: usize,
    i0: usize,
    rows_end: usize,
    mr: usize,
    simd: bool,
    dst: &mut [f32],
    sums: Option<&mut [f32]>,
) {
    if a.row_stride == 1 {
        // Aᵀ stored (the weight gradients' Gᵀ): line by line.
        let (src, ld) = (a.data, a.col_stride);
        match mr {
            4 => return rows_to_panels::<4>(src, ld, (pc, kc), i0, rows_end, simd, dst, sums),
            6 => return rows_to_panels::<6>(src, ld, (pc, kc), i0, rows_end, simd, dst, sums),
            _ => {}
        }
    }
    assert!(sums.is_none(), "pack_a_block: this layout cannot sum rows");
    for (t, panel) in dst.chunks_exact_mut(kc * mr).enumerate() {
        pack_a_panel(a, pc, kc, i0 + t * mr, rows_end, mr, simd, panel);
    }
}

/// Panels of R from contiguous source lines: line `pc + p` (at `(pc + p)·stride`) holds
/// elements `q0..q_end` contiguously; panel t gets `dst[t·kc·R + p·R + r]` = element
/// `q0 + t·R + r` of line `pc + p` (zero past `q_end`). The whole block at once rather
/// than panel by panel: a panel alone reads one R-wide strip of every line, kc lines a
/// page or so apart, which the hardware prefetcher follows poorly (the strided
/// per-panel copy was 4-5% of the MLP step, mostly waiting on loads).
///
/// With `sums` (`q_end - q0` floats), element q of every line is also added to
/// `sums[q - q0]`, line after line in order.
#[allow(clippy::too_many_arguments)]
fn rows_to_panels<const R: usize>(
    src: &[f32],
    stride: usize,
    (pc, kc): (usize, usize),
    q0: usize,
    q_end: usize,
    simd: bool,
    dst: &mut [f32],
    sums: Option<&mut [f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only set for the AVX2 kernel, handed out on CPUs with AVX2.
        return unsafe { rows_to_panels_avx2::<R>(src, stride, (pc, kc), (q0, q_end), dst, sums) };
    }
    let _ = simd;
    rows_to_panels_plain::<R>(src, stride, (pc, kc), (q0, q_end), dst, sums)
}

/// [`rows_to_panels_plain`] compiled for AVX2 (32-byte copies).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_to_panels_avx2<const R: usize>(
    src: &[f32],
    stride: usize,
    (pc, kc): (usize, usize),
    (q0, q_end): (usize, usize),
    dst: &mut [f32],
    sums: Option<&mut [f32]>,
) {
    rows_to_panels_plain::<R>(src, stride, (pc, kc), (q0, q_end), dst, sums)
}

/// The copy of [`rows_to_panels`].
#[inline(always)]
fn rows_to_panels_plain<const R: usize>(
    src: &[f32],
    stride: usize,
    (pc, kc): (usize, usize),
    (q0, q_end): (usize, usize),
    dst: &mut [f32],
    sums: Option<&mut [f32]>,
) {
    let width = q_end - q0;
    let (full, rem) = (width / R, width % R);
    let panels = width.div_ceil(R);
    let dst = &mut dst[..panels * kc * R];
    if let Some(sums) = sums {
        return rows_to_panels_summing::<R>(src, stride, (pc, kc), q0, dst, &mut sums[..width]);
    }
    // P_BLOCK lines at a time, panel after panel: each panel gets P_BLOCK·R contiguous
    // floats per visit (not R floats per panel in turn: the panels lie kc·R floats
    // apart, a multiple of 4 KiB for kc 128 or 256, so those writes would all fall in
    // one L1 set), while the P_BLOCK source lines stay in L1 for all the panels.
    const P_BLOCK: usize = 8;
    for pb in (0..kc).step_by(P_BLOCK) {
        let pe = (pb + P_BLOCK).min(kc);
        for t in 0..full {
            for p in pb..pe {
                let s = (pc + p) * stride + q0 + t * R;
                let from: &[f32; R] = src[s..s + R].try_into().unwrap();
                let at = (t * kc + p) * R;
                let to: &mut [f32; R] = (&mut dst[at..at + R]).try_into().unwrap();
                *to = *from;
            }
        }
        if rem > 0 {
            for p in pb..pe {
                let s = (pc + p) * stride + q0 + full * R;
                let at = (full * kc + p) * R;
                let to = &mut dst[at..at + R];
                to[..rem].copy_from_slice(&src[s..s + rem]);
                to[rem..].fill(0.0);
            }
        }
    }
}

/// [`rows_to_panels_plain`] that also adds every copied element to its sum, in the
/// same visiting order. Each panel's R sums stay in registers across a visit's lines,
/// so summing adds no load (the lines are read anyway), one add per element. Panels go
/// [`SUM_GROUP`] at a time: each sum is a chain of dependent adds, line after line, and
/// one panel's chain alone would make the copy wait on the adds' latency.
#[inline(always)]
fn rows_to_panels_summing<const R: usize>(
    src: &[f32],
    stride: usize,
    (pc, kc): (usize, usize),
    q0: usize,
    dst: &mut [f32],
    sums: &mut [f32],
) {
    let width = sums.len();
    let (full, rem) = (width / R, width % R);
    const P_BLOCK: usize = 8;
    for pb in (0..kc).step_by(P_BLOCK) {
        let lines = pb..(pb + P_BLOCK).min(kc);
        let mut t = 0;
        while t + SUM_GROUP <= full {
            sum_panels::<R, SUM_GROUP>(src, stride, (pc, kc), q0, t, lines.clone(), dst, sums);
            t += SUM_GROUP;
        }
        for t in t..full {
            sum_panels::<R, 1>(src, stride, (pc, kc), q0, t, lines.clone(), dst, sums);
        }
        if rem > 0 {
            let sum = &mut sums[full * R..];
            for p in lines {
                let s = (pc + p) * stride + q0 + full * R;
                let from = &src[s..s + rem];
                let at = (full * kc + p) * R;
                let to = &mut dst[at..at + R];
                to[..rem].copy_from_slice(from);
                to[rem..].fill(0.0);
                for (d, &v) in sum.iter_mut().zip(from) {
                    *d += v;
                }
            }
        }
    }
}

/// Full panels [`rows_to_panels_summing`] copies and sums together.
const SUM_GROUP: usize = 4;

/// Copies lines `lines` of the G full panels from panel `t` into their places in
/// `dst` and adds them to those panels' sums (G·R floats of `sums` from `t·R`), each
/// sum one line after another.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sum_panels<const R: usize, const G: usize>(
    src: &[f32],
    stride: usize,
    (pc, kc): (usize, usize),
    q0: usize,
    t: usize,
    lines: std::ops::Range<usize>,
    dst: &mut [f32],
    sums: &mut [f32],
) {
    let sums = &mut sums[t * R..(t + G) * R];
    let mut acc = [[0.0f32; R]; G];
    for (a, s) in acc.iter_mut().zip(sums.chunks_exact(R)) {
        *a = s.try_into().unwrap();
    }
    for p in lines {
        let s = (pc + p) * stride + q0 + t * R;
        let line = &src[s..s + G * R];
        for (u, a) in acc.iter_mut().enumerate() {
            let from: &[f32; R] = line[u * R..u * R + R].try_into().unwrap();
            let at = ((t + u) * kc + p) * R;
            let to: &mut [f32; R] = (&mut dst[at..at + R]).try_into().unwrap();
            *to = *from;
            for r in 0..R {
                a[r] += from[r];
            }
        }
    }
    for (a, s) in acc.iter().zip(sums.chunks_exact_mut(R)) {
        s.copy_from_slice(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packing a block line by line gives the panels that packing each panel alone
    /// gives, at full and edge widths, with and without SIMD, for A and B.
    #[test]
    fn block_packing_matches_panel_packing() {
        #[cfg(target_arch = "x86_64")]
        let simd_paths: &[bool] = if std::arch::is_x86_feature_detected!("avx2") {
            &[false, true]
        } else {
            &[false]
        };
        #[cfg(not(target_arch = "x86_64"))]
        let simd_paths: &[bool] = &[false];
        let (rows, ld) = (40, 77);
        let data: Vec<f32> = (0..rows * ld).map(|i| i as f32).collect();
        for &simd in simd_paths {
            for (pc, kc) in [(0, 1), (3, 9), (1, 17), (0, 40)] {
                for (q0, q_end) in [(0usize, 16usize), (5, 37), (2, 77), (60, 61)] {
                    // B row-major: k lines of `ld` floats, columns along the line.
                    let b = MatRef::rows(&data, ld);
                    for nr in [8, 16] {
                        let len = (q_end - q0).div_ceil(nr) * kc * nr;
                        let (mut block, mut panels) = (vec![-1.0; len], vec![-2.0; len]);
                        pack_b_block(b, pc, kc, q0, q_end, nr, simd, &mut block);
                        for (t, panel) in panels.chunks_exact_mut(kc * nr).enumerate() {
                            pack_b_panel(b, pc, kc, q0 + t * nr, q_end, nr, simd, panel);
                        }
                        assert_eq!(block, panels, "B nr {nr} kc {kc} cols {q0}..{q_end}");
                    }
                    // Aᵀ stored: A's rows run along the lines.
                    let a = MatRef::transposed(&data, ld);
                    for mr in [4, 6] {
                        let len = (q_end - q0).div_ceil(mr) * kc * mr;
                        let (mut block, mut panels) = (vec![-1.0; len], vec![-2.0; len]);
                        pack_a_block(a, pc, kc, q0, q_end, mr, simd, &mut block, None);
                        for (t, panel) in panels.chunks_exact_mut(kc * mr).enumerate() {
                            pack_a_panel(a, pc, kc, q0 + t * mr, q_end, mr, simd, panel);
                        }
                        assert_eq!(block, panels, "A mr {mr} kc {kc} rows {q0}..{q_end}");
                    }
                }
            }
        }
    }
}
