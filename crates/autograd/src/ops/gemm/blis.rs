//! The blocked GEMM driver, in the BLIS design.
//!
//! C (m × n) is computed in column blocks of `NC`; for each, k runs in blocks of `KC`,
//! and for each of those a `KC × NC` block of B is packed into `NR`-wide micro-panels
//! (kept in L3, a panel in L1), then A is packed `MC` rows at a time into `MR`-high
//! micro-panels (kept in L2) and the micro-kernel sweeps the tiles: B's panel outer,
//! A's panels inner. Packing reads any strided view in place (transposes are never
//! copied first), pads edges with zeros, and goes into per-thread buffers that are
//! grown once and reused, so a steady-state product allocates nothing.
//!
//! Threads split the output only, never k: C is cut into one rectangle per thread
//! (see [`split`]), and each thread runs the whole loop nest above on its rectangle,
//! packing its own panels, so a product is a single parallel region (`parallel`) with
//! no barrier inside. Every element therefore sums over k in the same order — the
//! fixed KC blocks, each summed from zero by the kernel and then added to C — whatever
//! the thread count, and results are bit-identical.

use std::cell::Cell;

use super::kernels::{Kernel, MAX_TILE};
use super::pack::{pack_a_panel, pack_b_panel};
use super::MatRef;
use crate::parallel;

/// Depth of a k block: a `KC × NR` panel of B (16 KiB for NR = 16) stays in the 32 KiB
/// L1 while A's panels stream past it.
const KC: usize = 256;
/// Rows of A per block: `MC × KC` floats (144 KiB) sit in L2 next to B's panels.
const MC: usize = 144;
/// Columns of B per block: `KC × NC` floats (4 MiB) sit in L3.
const NC: usize = 4080;

thread_local! {
    /// This thread's packing buffer for A's blocks.
    static PACK_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// This thread's packing buffer for B's blocks.
    static PACK_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Floats of slack so a buffer can start on a 64-byte boundary.
const ALIGN_SLACK: usize = 16;

/// Runs `f` on `len` floats of this thread's buffer `slot`, 64-byte aligned, growing
/// the buffer if needed (once: it is kept for the next call). The buffer is taken out
/// while `f` runs, so a nested call (a worker stealing another product while it waits)
/// gets a fresh one instead of a conflicting borrow.
fn with_buffer<R>(
    slot: &'static std::thread::LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = slot.with(Cell::take);
    if buf.len() < len + ALIGN_SLACK {
        buf = vec![0.0; len + ALIGN_SLACK];
    }
    let offset = buf.as_ptr().align_offset(64).min(ALIGN_SLACK);
    let out = f(&mut buf[offset..offset + len]);
    slot.with(|s| {
        let other = s.take();
        // Keep the larger buffer if a nested call left one behind.
        s.set(if other.len() > buf.len() { other } else { buf });
    });
    out
}

/// A pointer to C that threads write disjoint tiles of.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

impl OutPtr {
    /// The element `offset` places in. (A method, so closures capture the whole `Send`
    /// wrapper rather than the raw pointer field.)
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: threads write only the disjoint tiles `gemm` assigns them.
unsafe impl Send for OutPtr {}
// SAFETY: as above; the pointer itself is only read.
unsafe impl Sync for OutPtr {}

/// `c[m×n] = a·b`, or `c += a·b` when `accumulate`, with `kernel`, on up to `threads`
/// threads. `c` is contiguous row-major; m, n, k > 0 and the views fit (checked by the
/// caller, asserted here).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    kernel: &Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    assert!(
        m > 0 && n > 0 && k > 0 && c.len() >= m * n && a.fits(m, k) && b.fits(k, n),
        "gemm: operand out of bounds"
    );
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (m_panels, n_panels) = (m.div_ceil(mr), n.div_ceil(nr));
    let (row_parts, col_parts) = split(m_panels, n_panels, threads);
    let out = OutPtr(c.as_mut_ptr());
    let part = |t: usize| {
        let (rp, cp) = (t / col_parts, t % col_parts);
        let i0 = (rp * m_panels / row_parts) * mr;
        let i1 = ((rp + 1) * m_panels / row_parts * mr).min(m);
        let j0 = (cp * n_panels / col_parts) * nr;
        let j1 = ((cp + 1) * n_panels / col_parts * nr).min(n);
        let a_part = MatRef {
            data: &a.data[i0 * a.row_stride..],
            ..a
        };
        let b_part = MatRef {
            data: &b.data[j0 * b.col_stride..],
            ..b
        };
        // SAFETY: part t writes rows i0..i1 × columns j0..j1 of `c` only, disjoint from
        // every other part's rectangle; `c` holds m × n with row stride n (asserted).
        unsafe {
            block(
                kernel,
                (i1 - i0, j1 - j0, k),
                a_part,
                b_part,
                OutPtr(out.at(i0 * n + j0)),
                n,
                accumulate,
            )
        };
    };
    let parts = row_parts * col_parts;
    if parts > 1 {
        parallel::for_each_part(parts, part);
    } else {
        part(0);
    }
}

/// How the threads share C: `(row parts, column parts)`, each part a rectangle that one
/// thread computes alone, packing its own panels, so a product is one parallel region
/// with no barrier. A part packs all of B's columns it touches and all of A's rows:
/// splitting C's columns in c parts packs A c times, splitting rows in r parts packs B
/// r times, so the split that copies least is chosen (columns when n ≥ m). Splitting
/// C never changes any element's sum over k.
fn split(m_panels: usize, n_panels: usize, threads: usize) -> (usize, usize) {
    let mut best = (1, 1);
    let mut best_cost = usize::MAX;
    for r in 1..=threads {
        if threads % r != 0 {
            continue;
        }
        let c = threads / r;
        if r > m_panels || c > n_panels {
            continue;
        }
        // Floats packed again, in panel units of the other side.
        let cost = (c - 1) * m_panels + (r - 1) * n_panels;
        if cost < best_cost {
            (best, best_cost) = ((r, c), cost);
        }
    }
    if best == (1, 1) && threads > 1 && (m_panels > 1 || n_panels > 1) {
        // Too few panels on either side for a full split: split the longer side.
        return if m_panels >= n_panels {
            (m_panels.min(threads), 1)
        } else {
            (1, n_panels.min(threads))
        };
    }
    best
}

/// One thread's share: `c[m×n] (+)= a·b` for `(m, n, k) = dims`, C at `c` with row
/// stride `ldc`, in the BLIS loop order (column blocks, k blocks packing B, row blocks
/// packing A, the macro-kernel).
///
/// # Safety
/// `c` must point to an m × n block of row stride `ldc` that the caller may write and
/// no one else touches during the call; the views must hold m × k and k × n.
unsafe fn block(
    kernel: &Kernel,
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    c: OutPtr,
    ldc: usize,
    accumulate: bool,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let m_panels = m.div_ceil(mr);
    // Row blocks of about MC rows, the panels shared evenly between them.
    let row_blocks = m.div_ceil(MC).min(m_panels);
    let max_block_panels = m_panels.div_ceil(row_blocks);
    let nc_max = NC / nr * nr;
    // Equal k blocks (784 = 4 × 196, not 3 × 256 + 16: a short last block would pay
    // the tile stores for little arithmetic). Fixed by k alone, never by the threads.
    let kc_step = k.div_ceil(k.div_ceil(KC));
    let b_len = kc_step * nc_max.min(n.div_ceil(nr) * nr);
    let simd = kernel.simd_pack;
    with_buffer(&PACK_B, b_len, |packed_b| {
        with_buffer(&PACK_A, max_block_panels * mr * kc_step, |packed_a| {
            for jc in (0..n).step_by(nc_max) {
                let nc = nc_max.min(n - jc);
                for pc in (0..k).step_by(kc_step) {
                    let kc = kc_step.min(k - pc);
                    let packed_b = &mut packed_b[..nc.div_ceil(nr) * kc * nr];
                    for (t, panel) in packed_b.chunks_exact_mut(kc * nr).enumerate() {
                        pack_b_panel(b, pc, kc, jc + t * nr, jc + nc, nr, simd, panel);
                    }
                    let acc = accumulate || pc > 0;
                    for rb in 0..row_blocks {
                        let p0 = rb * m_panels / row_blocks;
                        let p1 = (rb + 1) * m_panels / row_blocks;
                        let rows = (p0 * mr, (p1 * mr).min(m));
                        let packed_a = &mut packed_a[..(p1 - p0) * mr * kc];
                        for (t, panel) in packed_a.chunks_exact_mut(mr * kc).enumerate() {
                            pack_a_panel(a, pc, kc, rows.0 + t * mr, rows.1, mr, simd, panel);
                        }
                        // SAFETY: the tiles of rows × columns jc..jc + nc lie in the
                        // block the caller owns.
                        unsafe {
                            macro_kernel(
                                kernel,
                                kc,
                                packed_a,
                                rows,
                                packed_b,
                                (jc, jc + nc),
                                c,
                                ldc,
                                acc,
                            )
                        }
                    }
                }
            }
        })
    });
}

/// Runs the micro-kernel over every tile of rows `rows.0..rows.1` × columns
/// `cols.0..cols.1` of C, from packed A panels (`rows` from its first) and packed B
/// panels (`cols` from its first). Edge tiles go through a scratch tile so the kernel
/// always works on full tiles, with the same arithmetic.
///
/// # Safety
/// `c` must point to a row-major matrix of row stride `ldc` containing that block,
/// which the caller may write and no one else touches during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel(
    kernel: &Kernel,
    kc: usize,
    packed_a: &[f32],
    rows: (usize, usize),
    packed_b: &[f32],
    cols: (usize, usize),
    c: OutPtr,
    ldc: usize,
    accumulate: bool,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    for (jp, b_panel) in packed_b.chunks_exact(kc * nr).enumerate() {
        let j = cols.0 + jp * nr;
        let w = nr.min(cols.1 - j);
        for (ip, a_panel) in packed_a.chunks_exact(kc * mr).enumerate() {
            let i = rows.0 + ip * mr;
            let h = mr.min(rows.1 - i);
            let dst = c.at(i * ldc + j);
            if h == mr && w == nr {
                // SAFETY: the panels hold kc·mr and kc·nr floats; the tile (i.., j..)
                // lies inside the block the caller owns.
                unsafe { kernel.run(kc, a_panel.as_ptr(), b_panel.as_ptr(), dst, ldc, accumulate) };
                continue;
            }
            let mut tile = [0.0f32; MAX_TILE];
            for r in 0..h {
                for col in 0..w {
                    // SAFETY: (i + r, j + col) with r < h, col < w is inside the block.
                    tile[r * nr + col] = if accumulate {
                        unsafe { *dst.add(r * ldc + col) }
                    } else {
                        0.0
                    };
                }
            }
            // SAFETY: `tile` is an mr × nr tile of stride nr (mr·nr ≤ MAX_TILE).
            unsafe {
                kernel.run(
                    kc,
                    a_panel.as_ptr(),
                    b_panel.as_ptr(),
                    tile.as_mut_ptr(),
                    nr,
                    accumulate,
                )
            };
            for r in 0..h {
                for col in 0..w {
                    // SAFETY: as above.
                    unsafe { *dst.add(r * ldc + col) = tile[r * nr + col] };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernels::available;
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
    /// accumulate, 1 and 2 threads, against the reference.
    fn check(m: usize, n: usize, k: usize) {
        for kernel in available() {
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
                        gemm(kernel, m, n, k, a, b, &mut c, accumulate, threads);
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
                            Some(f) => assert!(
                                *f == bits,
                                "{}: thread count changed the bits",
                                kernel.name
                            ),
                        }
                    }
                }
            }
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
    fn many_row_blocks_and_threads() {
        // m above MC with several panels per thread; n not a multiple of any NR.
        check(300, 37, 20);
    }

    #[test]
    fn column_blocks_beyond_nc() {
        // n above NC exercises the outer column loop (k small to stay fast).
        for kernel in available() {
            let (m, n, k) = (3, NC + 21, 2);
            let a = values(m * k, 4);
            let b = values(k * n, 5);
            let (a, b) = (MatRef::rows(&a, k), MatRef::rows(&b, n));
            let mut c = vec![0.0; m * n];
            gemm(kernel, m, n, k, a, b, &mut c, false, 2);
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

    #[test]
    fn buffers_are_reused_between_calls() {
        let kernel = available()[0];
        let (a, b) = (values(40 * 30, 1), values(30 * 50, 2));
        let mut c = vec![0.0; 40 * 50];
        gemm(
            kernel,
            40,
            50,
            30,
            MatRef::rows(&a, 30),
            MatRef::rows(&b, 50),
            &mut c,
            false,
            1,
        );
        let ptr = PACK_B.with(|s| {
            let v = s.take();
            let p = v.as_ptr();
            s.set(v);
            p
        });
        gemm(
            kernel,
            40,
            50,
            30,
            MatRef::rows(&a, 30),
            MatRef::rows(&b, 50),
            &mut c,
            false,
            1,
        );
        let again = PACK_B.with(|s| {
            let v = s.take();
            let p = v.as_ptr();
            s.set(v);
            p
        });
        assert_eq!(ptr, again);
    }
}
