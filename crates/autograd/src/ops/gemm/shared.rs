//! Products on several threads with B packed once, by all the threads together.
//!
//! The plain split (`blis::gemm_with`) gives each thread one rectangle of C and lets it
//! pack every panel it touches, so on 2 threads a row split packs all of B twice, and
//! a thread that starts late (the worker waking up, or preempted on a shared host)
//! leaves its whole rectangle to finish after the other thread is done. Here C is cut
//! into row parts, several per thread, and the work into tasks (k block, row part),
//! claimed one at a time from the pool in k-block-major order: the threads sweep one
//! k block of B together (one block of B in the caches at a time, as in the plain
//! loop nest), B's panels are packed, a few at a time, by whichever thread first claims
//! them, and a late thread just claims fewer tasks. B is packed once in all.
//!
//! A task waits only for the panels of its k block and for the task before it on the
//! same rows (same part, previous k block: C's tiles are added to block after block,
//! in order). Both were claimed earlier by a thread that is running them, and claiming
//! a panel is followed by packing it with no wait in between, so this never deadlocks,
//! also when every task runs on one thread (a nested product, a busy pool).
//!
//! The arithmetic is the plain driver's: the same k blocks, each tile summed by the
//! micro-kernel from zero and added to C block after block, in order, so the parts
//! (which only move tile boundaries) change no bit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::blis::{macro_kernel, with_buffer, OutPtr, PACK_A, PACK_B};
use super::blocks::Blocks;
use super::kernels::Kernel;
use super::pack_rows::{pack_a_block, pack_b_block};
use super::MatRef;
use crate::parallel;

/// Most k blocks the shared path takes (their counters live on the stack).
const MAX_K_BLOCKS: usize = 64;
/// Most row parts (their counters live on the stack too).
const MAX_ROW_PARTS: usize = 64;
/// Most floats of packed B the shared path holds (8 MiB: 1024² fits; the buffer is
/// kept for the next product, so larger products take the plain split).
const MAX_PACKED_B: usize = 1 << 21;
/// Row parts per thread: more than one, so that a late or preempted thread leaves
/// parts to the others; not many, because a part reloads each B micro-panel into L1
/// for its rows only (a thread's work on gemm_256 was the same with 1, 2 or 4 parts
/// per thread; 2 keeps W2's 128-row products at 36-row parts; 4 parts per thread on
/// W2's products measured no better on a loaded 2-core host).
const PARTS_PER_THREAD: usize = 2;
/// Panels of B a thread claims and packs at once: a few, so that a row-major B is read
/// a few lines of each row at a time (see `pack_rows`), while the threads
/// still share a block's packing.
const GROUP: usize = 4;
/// Least micro-panels of A in a row part (unless MC holds fewer): each B micro-panel
/// brought into L1 must serve a few tiles. Fewer rows (a convolution's 32 output
/// channels against many pixels) take the plain split by columns, which packs only the
/// small A twice and reads each B panel once.
const MIN_PART_PANELS: usize = 4;

/// `TAPEGRAD_GEMM_SHARED=0` turns the shared path off (for before/after measurements
/// in one build); read once.
pub(crate) const SHARED_ENV: &str = "TAPEGRAD_GEMM_SHARED";

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(SHARED_ENV).map_or(true, |v| v.trim() != "0"))
}

/// How a product is cut for the shared path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// Depth of every k block but the last (the plain driver's `kc_step`).
    pub kc_step: usize,
    /// Number of k blocks.
    pub k_blocks: usize,
    /// Micro-panels of B per k block.
    pub n_panels: usize,
    /// Micro-panels of A per row part (the last part may have fewer).
    pub part_panels: usize,
    /// Number of row parts.
    pub parts: usize,
}

/// The shared path's plan for an `m × n × k` product on `threads` threads, or `None`
/// where the plain split serves better: one thread, too few rows for every thread to
/// get two row panels or for parts of MIN_PART_PANELS, more columns than one NC block,
/// or B too large to pack whole.
pub(super) fn plan(
    kernel: &Kernel,
    bl: Blocks,
    (m, n, k): (usize, usize, usize),
    threads: usize,
) -> Option<Plan> {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (m_panels, n_panels) = (m.div_ceil(mr), n.div_ceil(nr));
    let nc_max = (bl.nc / nr).max(1) * nr;
    // The plain driver's k blocks, so every sum is cut in the same places.
    let kc_step = k.div_ceil(k.div_ceil(bl.kc));
    let k_blocks = k.div_ceil(kc_step);
    let fits = n_panels * nr <= nc_max
        && k_blocks <= MAX_K_BLOCKS
        && k.saturating_mul(n_panels * nr) <= MAX_PACKED_B;
    if threads < 2 || m_panels < 2 * threads || !fits || !enabled() {
        return None;
    }
    // Parts of at most MC rows (A's block stays in L2).
    let part_panels = m_panels
        .div_ceil(PARTS_PER_THREAD * threads)
        .clamp(1, (bl.mc / mr).max(1));
    if part_panels < MIN_PART_PANELS.min(bl.mc / mr) {
        return None;
    }
    if m_panels.div_ceil(part_panels) > MAX_ROW_PARTS {
        // Rows beyond MAX_ROW_PARTS blocks of MC: the plain split has parts enough.
        return None;
    }
    Some(Plan {
        kc_step,
        k_blocks,
        n_panels,
        part_panels,
        parts: m_panels.div_ceil(part_panels),
    })
}

/// B's packed panels for the whole product, filled by the threads together.
struct SharedB<'a> {
    b: MatRef<'a>,
    /// The packed panels: k block after k block, each `n_panels` panels of kc × NR.
    buf: *mut f32,
    len: usize,
    k: usize,
    n: usize,
    nr: usize,
    simd: bool,
    plan: Plan,
    /// The next group of panels (counted over all k blocks, in order) not yet claimed.
    claimed: AtomicUsize,
    /// Groups of panels packed, per k block.
    done: [AtomicUsize; MAX_K_BLOCKS],
    /// Set if a thread panicked while packing or computing, so the others stop waiting
    /// for it.
    failed: AtomicBool,
}

// SAFETY: each panel of `buf` is written by the one thread that claimed it, and read
// only after its k block's `done` count (Release / Acquire) shows every panel of the
// block written; `b` is a shared view.
unsafe impl Sync for SharedB<'_> {}

/// Marks the product failed unless forgotten: dropped only if what it guards panicked.
struct FailOnUnwind<'a>(&'a AtomicBool);

impl Drop for FailOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl SharedB<'_> {
    /// Where k block `blk` starts in `buf`, and its depth.
    fn block(&self, blk: usize) -> (usize, usize) {
        let pc = blk * self.plan.kc_step;
        (
            pc * self.plan.n_panels * self.nr,
            self.plan.kc_step.min(self.k - pc),
        )
    }

    /// Groups of panels per k block (the unit a thread claims and packs).
    fn groups(&self) -> usize {
        self.plan.n_panels.div_ceil(GROUP)
    }

    /// Packs group `idx` (over all k blocks) of up to [`GROUP`] panels into its place.
    fn pack(&self, idx: usize) {
        let (blk, g) = (idx / self.groups(), idx % self.groups());
        let (j0, j1) = (g * GROUP, ((g + 1) * GROUP).min(self.plan.n_panels));
        let (start, kc) = self.block(blk);
        let (at, len) = (start + j0 * kc * self.nr, (j1 - j0) * kc * self.nr);
        assert!(at + len <= self.len);
        // SAFETY: the range lies in `buf` (asserted) and belongs to group `idx` alone,
        // which only the thread that claimed it writes, before anyone reads it.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.buf.add(at), len) };
        let pc = blk * self.plan.kc_step;
        let cols_end = (j1 * self.nr).min(self.n);
        pack_b_block(
            self.b,
            pc,
            kc,
            j0 * self.nr,
            cols_end,
            self.nr,
            self.simd,
            dst,
        );
    }

    /// Waits until `ready`; panics if another thread failed meanwhile (it would never
    /// make `ready` true).
    fn wait(&self, ready: impl Fn() -> bool) {
        parallel::wait_until(|| ready() || self.failed.load(Ordering::Acquire));
        assert!(
            !self.failed.load(Ordering::Acquire),
            "gemm: another thread failed during the product"
        );
    }

    /// The packed panels of k block `blk`, once all are packed: packs unclaimed panels
    /// up to the end of that block (a claim may land in a later block; it is packed
    /// all the same), then waits for those other threads are packing.
    fn ready(&self, blk: usize) -> &[f32] {
        let (groups, n_panels) = (self.groups(), self.plan.n_panels);
        let (end, total) = ((blk + 1) * groups, self.plan.k_blocks * groups);
        while self.claimed.load(Ordering::Relaxed) < end {
            let idx = self.claimed.fetch_add(1, Ordering::Relaxed);
            if idx >= total {
                break;
            }
            let guard = FailOnUnwind(&self.failed);
            self.pack(idx);
            std::mem::forget(guard);
            self.done[idx / groups].fetch_add(1, Ordering::Release);
        }
        self.wait(|| self.done[blk].load(Ordering::Acquire) == groups);
        let (start, kc) = self.block(blk);
        // SAFETY: every panel of block `blk` is written (its count is complete, read
        // with Acquire) and none is written again during the product.
        unsafe { std::slice::from_raw_parts(self.buf.add(start), n_panels * kc * self.nr) }
    }
}

/// `c[m×n] (+)= a·b` (as `blis::gemm` reads `accumulate` and `bias`) by `plan`'s tasks on the pool, B packed once into the calling
/// thread's packing buffer. `c` is contiguous row-major with m·n floats (checked by
/// the caller). With `sums` (m zeroed floats, A packing line by line), A's rows are
/// also summed as they are packed.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_shared_b(
    kernel: &Kernel,
    plan: Plan,
    (m, n, k): (usize, usize, usize),
    (a, b): (MatRef, MatRef),
    c: &mut [f32],
    (accumulate, bias): (bool, Option<&[f32]>),
    sums: Option<OutPtr>,
) {
    assert!(c.len() >= m * n && plan.k_blocks <= MAX_K_BLOCKS && plan.parts <= MAX_ROW_PARTS);
    let (mr, nr) = (kernel.mr, kernel.nr);
    let m_panels = m.div_ceil(mr);
    let out = OutPtr(c.as_mut_ptr());
    let b_len = k * plan.n_panels * nr;
    with_buffer(&PACK_B, b_len, |packed_b| {
        let shared = SharedB {
            b,
            buf: packed_b.as_mut_ptr(),
            len: b_len,
            k,
            n,
            nr,
            simd: kernel.simd_pack,
            plan,
            claimed: AtomicUsize::new(0),
            done: std::array::from_fn(|_| AtomicUsize::new(0)),
            failed: AtomicBool::new(false),
        };
        let progress: [AtomicUsize; MAX_ROW_PARTS] = std::array::from_fn(|_| AtomicUsize::new(0));
        let task = |i: usize| {
            let (blk, r) = (i / plan.parts, i % plan.parts);
            let p0 = r * plan.part_panels;
            let p1 = (p0 + plan.part_panels).min(m_panels);
            let rows = (p0 * mr, (p1 * mr).min(m));
            let pc = blk * plan.kc_step;
            let kc = plan.kc_step.min(k - pc);
            let packed_b = shared.ready(blk);
            // The previous k block of these rows, claimed earlier, may still be running.
            shared.wait(|| progress[r].load(Ordering::Acquire) == blk);
            let guard = FailOnUnwind(&shared.failed);
            with_buffer(&PACK_A, (p1 - p0) * mr * kc, |packed_a| {
                // SAFETY: the sums of rows `rows` (the caller's m floats) are written by
                // this part's tasks only, one after another (as C's rows, above), k
                // block after k block: each row's sum runs in column order.
                let row_sums = sums.map(|s| unsafe {
                    std::slice::from_raw_parts_mut(s.at(rows.0), rows.1 - rows.0)
                });
                let simd = kernel.simd_pack;
                pack_a_block(a, pc, kc, rows.0, rows.1, mr, simd, packed_a, row_sums);
                // SAFETY: this task writes rows `rows` of `c` (m × n, row stride n), which
                // no other task touches meanwhile: other parts have other rows, and the
                // other k blocks of this part run before (waited for above) or after
                // (they wait for `progress`); the panels cover those rows and all n
                // columns.
                unsafe {
                    macro_kernel(
                        kernel,
                        kc,
                        packed_a,
                        rows,
                        packed_b,
                        (0, n),
                        out,
                        n,
                        // Later k blocks add to what the first stored.
                        (accumulate || pc > 0, bias),
                    )
                };
            });
            std::mem::forget(guard);
            progress[r].store(blk + 1, Ordering::Release);
        };
        parallel::for_each_part(plan.k_blocks * plan.parts, task);
    });
}

#[cfg(test)]
mod tests {
    use super::super::kernels::available;
    use super::*;

    #[test]
    fn the_plan_covers_the_rows_in_parts_and_keeps_the_k_blocks() {
        let kernel = *available().last().unwrap();
        let bl = Blocks {
            mc: kernel.mr * 24,
            kc: 256,
            nc: kernel.nr * 256,
        };
        let p = plan(kernel, bl, (1024, 1024, 1024), 2).unwrap();
        assert_eq!((p.kc_step, p.k_blocks), (256, 4));
        let m_panels = 1024usize.div_ceil(kernel.mr);
        assert!(p.parts >= 4);
        assert!(p.parts * p.part_panels >= m_panels);
        assert!((p.parts - 1) * p.part_panels < m_panels);
        // 784 = 4 × 196, as in the plain driver.
        assert_eq!(plan(kernel, bl, (128, 512, 784), 2).unwrap().kc_step, 196);
        // One thread, too few rows, or too many columns: the plain split.
        assert_eq!(plan(kernel, bl, (1024, 1024, 1024), 1), None);
        assert_eq!(plan(kernel, bl, (2 * kernel.mr, 1024, 64), 2), None);
        assert_eq!(plan(kernel, bl, (8 * kernel.mr, 1024, 64), 2), None);
        assert!(plan(kernel, bl, (16 * kernel.mr, 1024, 64), 2).is_some());
        assert_eq!(plan(kernel, bl, (512, bl.nc + 1, 64), 2), None);
        // More rows than MAX_ROW_PARTS blocks of MC.
        assert_eq!(
            plan(kernel, bl, (bl.mc * MAX_ROW_PARTS + 1, 16, 16), 2),
            None
        );
        let p = plan(kernel, bl, (bl.mc * MAX_ROW_PARTS, 16, 16), 2).unwrap();
        assert!(p.parts <= MAX_ROW_PARTS);
    }
}
