//! The GEMM micro-kernels and the choice between them.
//!
//! A micro-kernel multiplies one packed `MR × kc` panel of A by one packed `kc × NR`
//! panel of B in registers and writes (or adds) the `MR × NR` tile into C. Every kernel
//! sums each output element over p = 0..kc in order, from zero, and then adds the sum
//! to C once, so a tile's values do not depend on where the blocking or the threads put
//! it. The kernel is chosen once per process from the running CPU, or forced with
//! `TAPEGRAD_GEMM_KERNEL=scalar|avx2` (so a machine with AVX2 can run the scalar path);
//! `ops/gemm.rs` makes that choice.

/// The environment variable that forces a kernel (`scalar` or `avx2`, or `crate` for
/// the `gemm` crate backend).
pub(crate) const KERNEL_ENV: &str = "TAPEGRAD_GEMM_KERNEL";

/// How a micro-kernel stores its tile's sums `s[i][j]`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Store {
    /// `c[i][j] = s[i][j]`.
    Write,
    /// `c[i][j] = c[i][j] + s[i][j]`.
    Add,
    /// `c[i][j] = row[j] + s[i][j]`, `row` pointing at the tile's first column: `linear`'s
    /// bias, added in the first k block's store. The same sum, in the same order, as
    /// copying the bias into C first and then adding (`Add`), without the pass over C.
    AddRow(*const f32),
}

/// `c[i·rs_c + j] = Σ_p a[p·MR + i]·b[p·NR + j]` (added as `store` says) for `i < h`,
/// `j < w` of the kernel's MR × NR tile, `(h, w) = tile`: an edge tile (h < MR or
/// w < NR) is summed like a full one and only its h × w corner stored, so nothing
/// outside it is touched.
///
/// # Safety
/// `a` must point to `k·MR` readable floats, `b` to `k·NR`, and `c` to an h × w tile
/// with row stride `rs_c` that the caller may read and write, touched by no one else
/// during the call; with [`Store::AddRow`], its pointer to `w` readable floats;
/// 1 ≤ h ≤ MR, 1 ≤ w ≤ NR; the CPU must have the kernel's instruction set.
pub(crate) type KernelFn = unsafe fn(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    tile: (usize, usize),
    store: Store,
);

/// A micro-kernel and its tile shape.
pub(crate) struct Kernel {
    /// The name `TAPEGRAD_GEMM_KERNEL` selects it by.
    pub name: &'static str,
    /// Rows of the tile (of A's packed panels).
    pub mr: usize,
    /// Columns of the tile (of B's packed panels).
    pub nr: usize,
    /// Whether packing for this kernel may use AVX2 (set only for kernels that need it,
    /// which are handed out only on CPUs that have it).
    pub simd_pack: bool,
    /// The kernel itself; only call it through [`Kernel::run`].
    func: KernelFn,
}

impl Kernel {
    /// Runs the kernel on one tile.
    ///
    /// # Safety
    /// As for [`KernelFn`]; the instruction set is checked when the kernel is handed
    /// out by [`available`] (or [`choose`], which picks among those), the only ways to
    /// get one.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn run(
        &self,
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        tile: (usize, usize),
        store: Store,
    ) {
        debug_assert!((1..=self.mr).contains(&tile.0) && (1..=self.nr).contains(&tile.1));
        // SAFETY: forwarded from the caller; the ISA was checked when `self` was handed out.
        unsafe { (self.func)(k, a, b, c, rs_c, tile, store) }
    }
}

/// The portable kernel, for CPUs without AVX2 + FMA. Plain `a·b + c` (not `mul_add`,
/// which is a library call without FMA hardware); LLVM vectorises the 4 × 8 tile with
/// the baseline SSE2.
static SCALAR: Kernel = Kernel {
    name: "scalar",
    mr: 4,
    nr: 8,
    simd_pack: false,
    func: scalar_4x8,
};

/// The AVX2 + FMA kernel: a 6 × 16 tile in 12 of the 16 ymm registers.
#[cfg(target_arch = "x86_64")]
static AVX2: Kernel = Kernel {
    name: "avx2",
    mr: 6,
    nr: 16,
    simd_pack: true,
    func: avx2_6x16,
};

/// Every kernel the running CPU can execute, best last.
pub(crate) fn available() -> Vec<&'static Kernel> {
    #[allow(unused_mut)]
    let mut out = vec![&SCALAR];
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        out.push(&AVX2);
    }
    out
}

/// The kernel named `wanted` among `available`, else the last (best) one. An unknown
/// or unavailable name is reported on stderr rather than silently ignored.
pub(crate) fn choose(wanted: Option<&str>, available: &[&'static Kernel]) -> &'static Kernel {
    let best = available[available.len() - 1];
    let Some(name) = wanted.map(str::trim).filter(|s| !s.is_empty()) else {
        return best;
    };
    match available.iter().find(|k| k.name.eq_ignore_ascii_case(name)) {
        Some(k) => k,
        None => {
            let names: Vec<_> = available.iter().map(|k| k.name).collect();
            eprintln!(
                "tapegrad: {KERNEL_ENV}={name} is not a GEMM kernel this CPU can run \
                 (available: {names:?}); using {}",
                best.name
            );
            best
        }
    }
}

/// See [`SCALAR`].
///
/// # Safety
/// As for [`KernelFn`] with MR = 4, NR = 8.
unsafe fn scalar_4x8(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    (h, w): (usize, usize),
    store: Store,
) {
    const MR: usize = 4;
    const NR: usize = 8;
    // SAFETY: the caller guarantees k·MR floats at `a` and k·NR at `b`.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, k * MR),
            std::slice::from_raw_parts(b, k * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] += ap[i] * bp[j];
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(h) {
        for (j, &v) in row.iter().enumerate().take(w) {
            // SAFETY: (i, j) with i < h, j < w lies in the tile the caller handed over.
            unsafe { store_one(c.add(i * rs_c + j), j, v, store) };
        }
    }
}

/// Stores one element `v` of column `j` of a tile at `dst`, as `store` says.
///
/// # Safety
/// `dst` must be writable (and readable for [`Store::Add`]); with [`Store::AddRow`],
/// its pointer must hold more than `j` readable floats.
#[inline(always)]
unsafe fn store_one(dst: *mut f32, j: usize, v: f32, store: Store) {
    // SAFETY: forwarded from the caller.
    unsafe {
        *dst = match store {
            Store::Write => v,
            Store::Add => *dst + v,
            Store::AddRow(row) => *row.add(j) + v,
        }
    }
}

/// See [`AVX2`]. Each step broadcasts one element of A's panel per row and multiplies
/// it into two 8-wide vectors of B's panel: 12 FMAs per 2 loads + 6 broadcasts.
///
/// # Safety
/// As for [`KernelFn`] with MR = 6, NR = 16, on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_6x16(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    (h, w): (usize, usize),
    store: Store,
) {
    use std::arch::x86_64::*;
    const MR: usize = 6;
    const NR: usize = 16;
    // Ask for C's tile now: it is read only after the loop, which hides the latency
    // (C's rows are a page apart for wide outputs, beyond the hardware prefetcher).
    for i in 0..h {
        let row = c.wrapping_add(i * rs_c) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(60));
    }
    let z = _mm256_setzero_ps();
    let mut acc = [[z; 2]; MR];
    if h <= 2 {
        // A short edge tile (the last 2 rows of 128 or 512): only its rows, so it costs
        // 4 FMAs per step instead of 12 (the same sums, in the same order).
        // SAFETY: forwarded from the caller.
        let rows = unsafe { avx2_rows::<2>(k, a, b) };
        acc[..2].copy_from_slice(&rows);
    } else if h <= 4 {
        // SAFETY: forwarded from the caller.
        let rows = unsafe { avx2_rows::<4>(k, a, b) };
        acc[..4].copy_from_slice(&rows);
    } else {
        // SAFETY: forwarded from the caller.
        acc = unsafe { avx2_rows::<MR>(k, a, b) };
    }
    if h == MR && w == NR {
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i, columns 0..16 of the tile the caller handed over; an
            // AddRow pointer holds w = 16 floats.
            unsafe {
                let dst = c.add(i * rs_c);
                let (mut lo, mut hi) = (row[0], row[1]);
                match store {
                    Store::Write => {}
                    Store::Add => {
                        lo = _mm256_add_ps(_mm256_loadu_ps(dst), lo);
                        hi = _mm256_add_ps(_mm256_loadu_ps(dst.add(8)), hi);
                    }
                    Store::AddRow(bias) => {
                        lo = _mm256_add_ps(_mm256_loadu_ps(bias), lo);
                        hi = _mm256_add_ps(_mm256_loadu_ps(bias.add(8)), hi);
                    }
                }
                _mm256_storeu_ps(dst, lo);
                _mm256_storeu_ps(dst.add(8), hi);
            }
        }
        return;
    }
    // An edge tile: the registers go to a stack tile, then its h × w corner into C.
    // (Not masked stores: AMD runs VMASKMOVPS stores as microcode, slower than this
    // copy for the short k of a convolution's forward product.)
    let mut tile = [0.0f32; MR * NR];
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i of the local MR × NR tile.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
        }
    }
    for (i, t) in tile.chunks_exact(NR).enumerate().take(h) {
        for (j, &v) in t.iter().enumerate().take(w) {
            // SAFETY: (i, j) with i < h, j < w lies in the tile the caller handed over
            // (and j < w in an AddRow pointer's floats).
            unsafe { store_one(c.add(i * rs_c + j), j, v, store) };
        }
    }
}

/// The first `H` rows of [`avx2_6x16`]'s tile: Σ_p a[p·6 + i]·b[p·16 + j] for i < H,
/// summed in order from zero, in two 8-wide halves per row.
///
/// # Safety
/// `a` must point to `k·6` readable floats and `b` to `k·16`; H ≤ 6; the CPU must have
/// AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn avx2_rows<const H: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
) -> [[std::arch::x86_64::__m256; 2]; H] {
    use std::arch::x86_64::*;
    const MR: usize = 6;
    const NR: usize = 16;
    let mut acc = [[_mm256_setzero_ps(); 2]; H];
    // SAFETY (whole loop): p < k, so a[p·6 + i] (i < H ≤ 6) and b[p·16 .. p·16 + 16]
    // lie in the k·6 and k·16 floats the caller guarantees; unaligned loads need no
    // alignment.
    unsafe {
        let mut ap = a;
        let mut bp = b;
        for _ in 0..k {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(i));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain sum over p, in order, as every kernel must compute it.
    /// Packed `k × mr` and `k × nr` operands of small integers, so every path is exact.
    fn operands(k: usize, mr: usize, nr: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..k * mr).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b = (0..k * nr).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        (a, b)
    }

    /// Each tile row starts from `row` (the stored values, or the bias), then adds its sum.
    fn reference(k: usize, mr: usize, nr: usize, a: &[f32], b: &[f32], row: &[f32]) -> Vec<f32> {
        let mut c: Vec<f32> = row.iter().copied().cycle().take(mr * nr).collect();
        for i in 0..mr {
            for j in 0..nr {
                let s: f32 = (0..k)
                    .map(|p| a[p * mr + i] as f64 * b[p * nr + j] as f64)
                    .sum::<f64>() as f32;
                c[i * nr + j] += s;
            }
        }
        c
    }

    /// The three ways to store, each with what a tile row starts from: zero, C's 2.5s,
    /// or a bias row of distinct values (so a misplaced column shows). The bias is
    /// leaked: the stores point into it.
    fn stores(nr: usize) -> [(Store, Vec<f32>); 3] {
        let bias: &'static [f32] = Vec::leak((0..nr).map(|j| j as f32 * 0.5 - 3.0).collect());
        [
            (Store::Write, vec![0.0; nr]),
            (Store::Add, vec![2.5; nr]),
            (Store::AddRow(bias.as_ptr()), bias.to_vec()),
        ]
    }

    #[test]
    fn every_available_kernel_computes_its_tile() {
        for kernel in available() {
            let (mr, nr) = (kernel.mr, kernel.nr);
            for k in [1, 2, 7, 17, 64] {
                let (a, b) = operands(k, mr, nr);
                // A row stride wider than the tile, with a sentinel in the gap.
                let rs = nr + 3;
                for (store, row) in stores(nr) {
                    let mut c = vec![2.5f32; mr * rs];
                    // SAFETY: a, b hold k·mr and k·nr floats; c an mr × nr tile of stride rs.
                    unsafe {
                        kernel.run(
                            k,
                            a.as_ptr(),
                            b.as_ptr(),
                            c.as_mut_ptr(),
                            rs,
                            (mr, nr),
                            store,
                        )
                    };
                    let want = reference(k, mr, nr, &a, &b, &row);
                    for i in 0..mr {
                        // Small integers: every path is exact.
                        assert_eq!(
                            &c[i * rs..i * rs + nr],
                            &want[i * nr..(i + 1) * nr],
                            "{}",
                            kernel.name
                        );
                        assert_eq!(
                            &c[i * rs + nr..(i + 1) * rs],
                            &[2.5; 3],
                            "{} wrote outside its tile",
                            kernel.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn edge_tiles_write_exactly_their_rows_and_columns() {
        for kernel in available() {
            let (mr, nr) = (kernel.mr, kernel.nr);
            let k = 9;
            let (a, b) = operands(k, mr, nr);
            let rs = nr + 3;
            for (store, row) in stores(nr) {
                let want = reference(k, mr, nr, &a, &b, &row);
                for h in 1..=mr {
                    for w in 1..=nr {
                        let mut c = vec![2.5f32; mr * rs];
                        // SAFETY: a, b hold k·mr and k·nr floats; c holds an h × w tile
                        // of stride rs (and more).
                        unsafe {
                            kernel.run(k, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), rs, (h, w), store)
                        };
                        for i in 0..mr {
                            for j in 0..rs {
                                let got = c[i * rs + j];
                                let expect = if i < h && j < w {
                                    want[i * nr + j]
                                } else {
                                    2.5
                                };
                                assert_eq!(
                                    got, expect,
                                    "{} tile {h}x{w} at ({i}, {j})",
                                    kernel.name
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_forced_kernel_is_used_only_when_available() {
        let avail = available();
        let best = *avail.last().unwrap();
        assert!(std::ptr::eq(choose(None, &avail), best));
        assert!(std::ptr::eq(choose(Some(""), &avail), best));
        assert!(std::ptr::eq(choose(Some("SCALAR"), &avail), &SCALAR));
        assert!(std::ptr::eq(choose(Some("no-such-kernel"), &avail), best));
        // A kernel this CPU lacks is never handed out.
        assert!(std::ptr::eq(choose(Some("avx2"), &[&SCALAR]), &SCALAR));
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_is_available_exactly_when_the_cpu_has_it() {
        assert_eq!(
            available().iter().any(|k| k.name == "avx2"),
            crate::cpu::has_avx2_fma()
        );
    }
}
