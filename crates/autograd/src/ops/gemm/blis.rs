//! The blocked GEMM driver, in the BLIS design.
//!
//! C (m × n) is computed in column blocks of NC; for each, k runs in blocks of KC,
//! and for each of those a `KC × NC` block of B is packed into `NR`-wide micro-panels
//! (kept in L3, a panel in L1), then A is packed MC rows at a time into `MR`-high
//! micro-panels (kept in L2) and the micro-kernel sweeps the tiles: B's panel outer,
//! A's panels inner. MC, KC and NC come from the running CPU's caches (`blocks`).
//! Packing reads any strided view in place (transposes are never copied first), pads
//! edges with zeros, and goes into per-thread buffers that are grown once and reused,
//! so a steady-state product allocates nothing.
//!
//! Threads share the work as `split` and `shared` decide from the shape: C cut into
//! row parts, several per thread, that read B's panels packed once by all threads
//! together (`shared`, wherever B fits and there are rows enough); else C cut into one
//! rectangle per thread, each thread running the whole loop nest above on its
//! rectangle and packing its own panels (one parallel region, no barrier inside); or, for a small C
//! and a long k, k cut into fixed chunks whose partial products are added in order.
//! Every element's sum over k is therefore the same — the fixed KC blocks inside
//! fixed k chunks, each block summed from zero by the kernel and then added — whatever
//! the thread count, and results are bit-identical.
//!
//! Optionally the driver also sums A's rows as it packs them (`gemm_summing_a_rows`:
//! `linear`'s bias gradient, from the packing of Gᵀ): each row is packed by one
//! thread, k block after k block in order, so each sum runs from column 0 up, one add
//! at a time, whatever the thread count.

use std::cell::Cell;

use super::blocks::{blocks, Blocks};
use super::kernels::{Kernel, Store};
use super::pack_rows::{pack_a_block, pack_b_block, sums_rows};
use super::shared;
use super::split::{add_partials, k_bound, k_chunks, split_output};
use super::MatRef;
use crate::parallel;

thread_local! {
    /// This thread's packing buffer for A's blocks.
    pub(super) static PACK_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// This thread's packing buffer for B's blocks.
    pub(super) static PACK_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// This thread's partial products of a split along k (kept like the packing
    /// buffers: the tensor pool let one go per w5 step).
    static PARTIALS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Floats of slack so a buffer can start on a 64-byte boundary.
const ALIGN_SLACK: usize = 16;

/// Runs `f` on `len` floats of this thread's buffer `slot`, 64-byte aligned, growing
/// the buffer if needed (once: it is kept for the next call). The buffer is taken out
/// while `f` runs, so a nested call (a worker stealing another product while it waits)
/// gets a fresh one instead of a conflicting borrow.
pub(super) fn with_buffer<R>(
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

/// A pointer to C that threads write disjoint tiles of (or to A's row sums, which
/// they write disjoint runs of).
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);

impl OutPtr {
    /// The element `offset` places in. (A method, so closures capture the whole `Send`
    /// wrapper rather than the raw pointer field.)
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: threads write only the disjoint tiles `gemm` assigns them.
unsafe impl Send for OutPtr {}
// SAFETY: as above; the pointer itself is only read.
unsafe impl Sync for OutPtr {}

/// `c[m×n] = a·b`, or `c += a·b` when `accumulate`, or `c[i][j] = bias[j] + (a·b)[i][j]`
/// when `bias` is given (and not `accumulate`), with `kernel`, on up to `threads`
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
    bias: Option<&[f32]>,
    threads: usize,
) {
    let bl = blocks(kernel.mr, kernel.nr);
    gemm_with(kernel, bl, (m, n, k), a, b, c, (accumulate, bias), threads);
}

/// [`gemm()`] overwriting C, which also sets `sums[i]` to the sum of row i of `a` (its k
/// elements added to 0.0 one at a time from column 0 up, as a plain loop adds them)
/// where it can do that while packing A: A read as Aᵀ stored, a kernel that packs it
/// line by line, and k not split. Returns whether it did; `sums` is left alone if not.
pub(crate) fn gemm_summing_a_rows(
    kernel: &Kernel,
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    sums: &mut [f32],
    threads: usize,
) -> bool {
    let bl = blocks(kernel.mr, kernel.nr);
    gemm_summing_with(kernel, bl, (m, n, k), (a, b), c, sums, threads)
}

/// [`gemm_summing_a_rows`] with the cache blocks given.
pub(super) fn gemm_summing_with(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    (a, b): (MatRef, MatRef),
    c: &mut [f32],
    sums: &mut [f32],
    threads: usize,
) -> bool {
    let fused = k_chunks(m, n, k) == 1 && sums_rows(a, kernel.mr);
    if !fused {
        gemm_with(kernel, bl, (m, n, k), a, b, c, (false, None), threads);
        return false;
    }
    let sums = &mut sums[..m];
    sums.fill(0.0);
    let sums = Some(OutPtr(sums.as_mut_ptr()));
    gemm_driven(
        kernel,
        bl,
        (m, n, k),
        (a, b),
        c,
        (false, None),
        threads,
        sums,
    );
    true
}

/// [`gemm()`] with the cache blocks given (tests use small ones to reach every loop).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_with(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    start: (bool, Option<&[f32]>),
    threads: usize,
) {
    gemm_driven(kernel, bl, (m, n, k), (a, b), c, start, threads, None);
}

/// [`gemm_with`], also summing A's rows into `sums` (m floats, zeroed) when given; the
/// caller has checked that k is not split and that A packs line by line.
#[allow(clippy::too_many_arguments)]
fn gemm_driven(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    (a, b): (MatRef, MatRef),
    c: &mut [f32],
    (accumulate, bias): (bool, Option<&[f32]>),
    threads: usize,
    sums: Option<OutPtr>,
) {
    assert!(
        m > 0 && n > 0 && k > 0 && c.len() >= m * n && a.fits(m, k) && b.fits(k, n),
        "gemm: operand out of bounds"
    );
    let chunks = k_chunks(m, n, k);
    assert!(sums.is_none() || (chunks == 1 && sums_rows(a, kernel.mr)));
    // Accumulating keeps C, so a bias would be added twice: only one of them.
    assert!(bias.is_none_or(|b| b.len() >= n && !accumulate));
    if chunks > 1 {
        split_k(
            kernel,
            bl,
            (m, n, k),
            chunks,
            (a, b),
            c,
            (accumulate, bias),
            threads,
        );
        return;
    }
    if let Some(plan) = shared::plan(kernel, bl, (m, n, k), threads) {
        let start = (accumulate, bias);
        shared::gemm_shared_b(kernel, plan, (m, n, k), (a, b), c, start, sums);
        return;
    }
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (m_panels, n_panels) = (m.div_ceil(mr), n.div_ceil(nr));
    let (row_parts, col_parts) = split_output(m_panels, n_panels, threads);
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
        // Rows split over column parts are packed by each: the first one sums them.
        let part_sums = sums.filter(|_| cp == 0).map(|s| OutPtr(s.at(i0)));
        // SAFETY: part t writes rows i0..i1 × columns j0..j1 of `c` only, disjoint from
        // every other part's rectangle; `c` holds m × n with row stride n (asserted);
        // of the sums (m floats, the caller's), it writes only i0..i1, and only the
        // one part of those rows that has cp == 0 does.
        unsafe {
            block(
                kernel,
                bl,
                (i1 - i0, j1 - j0, k),
                (a_part, b_part),
                (OutPtr(out.at(i0 * n + j0)), n),
                (accumulate, bias.map(|b| &b[j0..j1])),
                part_sums,
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

/// A small C with a long k: chunk 0 of k goes into C itself (adding to it when
/// `accumulate`, to the bias when given), chunk t > 0 into partial product t − 1 of a pooled buffer, each chunk
/// by one thread over the whole of C; then the partials are added to C in order. The
/// same chunks and the same order run on 1 thread, so no bit depends on the threads.
#[allow(clippy::too_many_arguments)]
fn split_k(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    chunks: usize,
    (a, b): (MatRef, MatRef),
    c: &mut [f32],
    start: (bool, Option<&[f32]>),
    threads: usize,
) {
    let mn = m * n;
    with_buffer(&PARTIALS, (chunks - 1) * mn, |partials| {
        split_k_into(
            kernel,
            bl,
            (m, n, k),
            chunks,
            (a, b),
            c,
            partials,
            start,
            threads,
        )
    });
}

/// [`split_k`] with `partials` holding (chunks − 1)·m·n floats.
#[allow(clippy::too_many_arguments)]
fn split_k_into(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    chunks: usize,
    (a, b): (MatRef, MatRef),
    c: &mut [f32],
    partials: &mut [f32],
    start: (bool, Option<&[f32]>),
    threads: usize,
) {
    let mn = m * n;
    assert!(partials.len() >= (chunks - 1) * mn && c.len() >= mn);
    let (out, spare) = (OutPtr(c.as_mut_ptr()), OutPtr(partials.as_mut_ptr()));
    let chunk = |t: usize| {
        let (k0, k1) = (k_bound(k, chunks, t), k_bound(k, chunks, t + 1));
        let a_part = MatRef {
            data: &a.data[k0 * a.col_stride..],
            ..a
        };
        let b_part = MatRef {
            data: &b.data[k0 * b.row_stride..],
            ..b
        };
        let (dst, acc) = match t {
            0 => (out, start),
            _ => (OutPtr(spare.at((t - 1) * mn)), (false, None)),
        };
        // SAFETY: chunk 0 writes `c` (m × n, row stride n, asserted by the caller) and
        // chunk t > 0 the (t − 1)-th m × n slice of `partials`; no two chunks share one.
        unsafe {
            block(
                kernel,
                bl,
                (m, n, k1 - k0),
                (a_part, b_part),
                (dst, n),
                acc,
                None,
            )
        };
    };
    if threads > 1 {
        parallel::for_each_part(chunks, chunk);
    } else {
        (0..chunks).for_each(chunk);
    }
    add_partials(&mut c[..mn], &partials[..(chunks - 1) * mn]);
}

/// One thread's share: `c[m×n] (+)= a·b` for `(m, n, k) = dims` (C kept when the first
/// of `start` says accumulate, else starting from its bias row if given, else from
/// zero), C at `c` with row stride `ldc`, in the BLIS loop order (column blocks, k blocks packing B, row blocks
/// packing A, the macro-kernel). With `sums`, A's rows are summed into `sums[0..m]`
/// as they are packed for the first column block (k blocks in order).
///
/// # Safety
/// `c` must point to an m × n block of row stride `ldc` that the caller may write and
/// no one else touches during the call; the views must hold m × k and k × n; `sums`,
/// if given, must point to m floats that the same holds for, and A must pack line by
/// line (`sums_rows`).
unsafe fn block(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    (a, b): (MatRef, MatRef),
    (c, ldc): (OutPtr, usize),
    (accumulate, bias): (bool, Option<&[f32]>),
    sums: Option<OutPtr>,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let m_panels = m.div_ceil(mr);
    // Row blocks of about MC rows, the panels shared evenly between them.
    let row_blocks = m.div_ceil(bl.mc).min(m_panels);
    let max_block_panels = m_panels.div_ceil(row_blocks);
    let nc_max = (bl.nc / nr).max(1) * nr;
    // Equal k blocks (784 = 4 × 196, not 3 × 256 + 16: a short last block would pay
    // the tile stores for little arithmetic). Fixed by k alone, never by the threads.
    let kc_step = k.div_ceil(k.div_ceil(bl.kc));
    let b_len = kc_step * nc_max.min(n.div_ceil(nr) * nr);
    let simd = kernel.simd_pack;
    with_buffer(&PACK_B, b_len, |packed_b| {
        with_buffer(&PACK_A, max_block_panels * mr * kc_step, |packed_a| {
            for jc in (0..n).step_by(nc_max) {
                let nc = nc_max.min(n - jc);
                for pc in (0..k).step_by(kc_step) {
                    let kc = kc_step.min(k - pc);
                    let packed_b = &mut packed_b[..nc.div_ceil(nr) * kc * nr];
                    pack_b_block(b, pc, kc, jc, jc + nc, nr, simd, packed_b);
                    // Later k blocks add to what the first stored.
                    let start = (accumulate || pc > 0, bias.map(|b| &b[jc..jc + nc]));
                    for rb in 0..row_blocks {
                        let p0 = rb * m_panels / row_blocks;
                        let p1 = (rb + 1) * m_panels / row_blocks;
                        let rows = (p0 * mr, (p1 * mr).min(m));
                        let packed_a = &mut packed_a[..(p1 - p0) * mr * kc];
                        // SAFETY: rows.0..rows.1 lie in 0..m, whose sums are the
                        // caller's to write (no one else's) for this call.
                        let row_sums = sums.filter(|_| jc == 0).map(|s| unsafe {
                            std::slice::from_raw_parts_mut(s.at(rows.0), rows.1 - rows.0)
                        });
                        pack_a_block(a, pc, kc, rows.0, rows.1, mr, simd, packed_a, row_sums);
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
                                start,
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
/// panels (`cols` from its first). Edge tiles go to the kernel too, which stores only their corner, with
/// the same arithmetic as full ones. The tiles add to C when `accumulate`, else to
/// `bias` (`bias[j - cols.0]` for column j) when given, else they overwrite C.
///
/// # Safety
/// `c` must point to a row-major matrix of row stride `ldc` containing that block,
/// which the caller may write and no one else touches during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn macro_kernel(
    kernel: &Kernel,
    kc: usize,
    packed_a: &[f32],
    rows: (usize, usize),
    packed_b: &[f32],
    cols: (usize, usize),
    c: OutPtr,
    ldc: usize,
    (accumulate, bias): (bool, Option<&[f32]>),
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    assert!(bias.is_none_or(|b| b.len() >= cols.1 - cols.0));
    for (jp, b_panel) in packed_b.chunks_exact(kc * nr).enumerate() {
        let j = cols.0 + jp * nr;
        let w = nr.min(cols.1 - j);
        let store = match bias {
            _ if accumulate => Store::Add,
            // The w floats from column j lie in the bias (asserted above).
            Some(b) => Store::AddRow(b[j - cols.0..].as_ptr()),
            None => Store::Write,
        };
        for (ip, a_panel) in packed_a.chunks_exact(kc * mr).enumerate() {
            let i = rows.0 + ip * mr;
            let h = mr.min(rows.1 - i);
            // SAFETY: the panels hold kc·mr and kc·nr floats; the h × w tile at (i, j)
            // lies inside the block the caller owns (h, w ≥ 1: the panels cover the
            // rows and columns, none past them).
            unsafe {
                kernel.run(
                    kc,
                    a_panel.as_ptr(),
                    b_panel.as_ptr(),
                    c.at(i * ldc + j),
                    ldc,
                    (h, w),
                    store,
                )
            };
        }
    }
}

#[cfg(test)]
#[path = "blis_tests.rs"]
mod tests;
