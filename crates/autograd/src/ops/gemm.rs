//! The one place that multiplies matrices: [`gemm_into`] on strided views.
//!
//! Products go to our own blocked GEMM (`blis`: packing into reused per-thread buffers,
//! cache blocking, threads splitting the output) around a register-blocked micro-kernel
//! chosen at run time (`kernels`: AVX2 + FMA, or portable); tiny ones (the seed
//! network's) run small direct loops that skip packing. Operands are strided views
//! ([`MatRef`]), so transposes are read in place, never copied. Each output element
//! sums over k in an order fixed by the blocking over k, not by the number of threads,
//! so results are the same with 1 thread or many.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::pool;

mod blis;
mod blocks;
mod crate_path;
mod kernels;
mod pack;
mod pack_rows;
#[cfg(target_arch = "x86_64")]
pub(crate) use pack::transpose8;
mod shared;
mod split;

/// 0 means "not set": use the machine's available parallelism.
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads matrix products may use (1 = single-threaded).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.max(1), Ordering::Relaxed);
}

/// How many threads matrix products may use: what [`set_num_threads`] set, else the
/// `TAPEGRAD_THREADS` environment variable (read once, at first use, as PyTorch reads
/// `OMP_NUM_THREADS`), else the number of CPUs available to the process.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            // Asking the OS reads cgroup files: do it once, not per product.
            let from_env = std::env::var("TAPEGRAD_THREADS").ok();
            let n = (from_env.and_then(|v| v.trim().parse::<usize>().ok()))
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            NUM_THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Below this many multiply-adds a product runs on one thread: waking a pool costs more.
const PARALLEL_THRESHOLD: usize = 96 * 96 * 96;
/// The same for products split along k (see `split`); which threads run the chunks
/// never changes a bit.
const SPLIT_K_PARALLEL_THRESHOLD: usize = 1 << 18;

/// A read-only strided matrix view over a slice.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major matrix with `cols` columns.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }
    /// The same matrix viewed transposed (no copy).
    fn transpose(self) -> Self {
        MatRef {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// The `rows × cols` matrix as contiguous row-major data, copying only if needed.
    fn packed(self, rows: usize, cols: usize) -> Packed<'a> {
        let contiguous =
            (self.col_stride == 1 || cols == 1) && (self.row_stride == cols || rows == 1);
        if contiguous {
            return Packed::Borrowed(&self.data[..rows * cols]);
        }
        let mut out = pool::take(rows * cols);
        for i in 0..rows {
            out.extend((0..cols).map(|j| self.data[i * self.row_stride + j * self.col_stride]));
        }
        Packed::Owned(out)
    }

    /// Whether every element of a `rows × cols` view lies inside `data`. The offset of
    /// the last element is computed with checked arithmetic: a wrapped product would
    /// pass the test and send the unsafe kernels outside the slice. Strides go to the
    /// GEMM crate as `isize`, so they must fit one.
    pub(crate) fn fits(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        let strides_fit =
            self.row_stride <= isize::MAX as usize && self.col_stride <= isize::MAX as usize;
        let last = (rows - 1)
            .checked_mul(self.row_stride)
            .zip((cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c));
        strides_fit && last.is_some_and(|last| last < self.data.len())
    }
}

/// `dst[m×n] = a[m×k] · b[k×n]`, or `dst += a · b` when `accumulate`; `dst` is
/// contiguous row-major.
pub(crate) fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    accumulate: bool,
) {
    gemm_from(m, n, k, a, b, dst, (accumulate, None));
}

/// `dst[i][j] = bias[j] + (a · b)[i][j]` for `a` m×k, `b` k×n, `bias` of n floats:
/// `linear`'s forward. Bit for bit the same as copying `bias` into every row of `dst`
/// and then `gemm_into(.., true)`; the blocked GEMM adds the bias as it stores its
/// first k block instead of making that pass over the output.
pub(crate) fn gemm_bias_into(
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    bias: &[f32],
    dst: &mut [f32],
) {
    assert_eq!(bias.len(), n, "gemm_bias_into: the bias needs n floats");
    gemm_from(m, n, k, a, b, dst, (false, Some(bias)));
}

/// For the paths without a bias epilogue: copies `bias`, if any, into each of the `m`
/// rows of `dst`; returns whether the product must then add to `dst`.
fn prefill(dst: &mut [f32], m: usize, (accumulate, bias): (bool, Option<&[f32]>)) -> bool {
    let Some(bias) = bias else {
        return accumulate;
    };
    for row in dst.chunks_exact_mut(bias.len()).take(m) {
        row.copy_from_slice(bias);
    }
    true
}

/// [`gemm_into`] or [`gemm_bias_into`]: C kept when `accumulate`, else started from the
/// bias row when given, else from zero.
fn gemm_from(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    (accumulate, bias): (bool, Option<&[f32]>),
) {
    assert!(
        m.checked_mul(n).is_some_and(|mn| dst.len() >= mn) && a.fits(m, k) && b.fits(k, n),
        "gemm_into: operand out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !prefill(dst, m, (accumulate, bias)) {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    if (m * n).saturating_mul(k) <= SMALL_PRODUCT {
        let accumulate = prefill(dst, m, (accumulate, bias));
        small_gemm(n, k, a, b, &mut dst[..m * n], accumulate);
        return;
    }
    let threads = threads_for(m, n, k);
    let dst = &mut dst[..m * n];
    match backend() {
        Backend::Ours(kernel) => blis::gemm(kernel, m, n, k, a, b, dst, accumulate, bias, threads),
        Backend::Crate => {
            let accumulate = prefill(dst, m, (accumulate, bias));
            crate_path::gemm(m, n, k, a, b, dst, accumulate, threads)
        }
    }
}

/// The threads a blocked product of this shape may use.
fn threads_for(m: usize, n: usize, k: usize) -> usize {
    let work = (m * n).saturating_mul(k);
    // A product split along k hands each thread whole chunks with no shared panels, so
    // it pays for the pool's wake-up at a smaller size (the conv weight gradients of w4).
    let parallel = work >= PARALLEL_THRESHOLD
        || (work >= SPLIT_K_PARALLEL_THRESHOLD && split::k_chunks(m, n, k) > 1);
    if parallel {
        num_threads()
    } else {
        1
    }
}

/// `dst[m×n] = a·b` ([`gemm_into`] without accumulating) that also sets `sums[i]` to
/// the sum of row i of `a` — its k elements added to 0.0 one at a time from column 0
/// up, the bits of a plain loop — where our blocked GEMM can do it while packing A:
/// `a` read as Aᵀ stored (`linear`'s dW = Gᵀ·X, whose row sums are the bias gradient)
/// and k not split between threads. This saves the sums their own pass over `a`.
/// Returns whether it did; if not, `sums` is left alone and the caller sums.
pub(crate) fn gemm_summing_a_rows(
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    sums: &mut [f32],
) -> bool {
    assert!(
        sums.len() >= m,
        "gemm_summing_a_rows: the sums need m floats"
    );
    let blocked = m > 0 && n > 0 && k > 0 && (m * n).saturating_mul(k) > SMALL_PRODUCT;
    match backend() {
        Backend::Ours(kernel) if blocked => {
            assert!(
                dst.len() >= m * n && a.fits(m, k) && b.fits(k, n),
                "gemm_summing_a_rows: operand out of bounds"
            );
            let threads = threads_for(m, n, k);
            blis::gemm_summing_a_rows(kernel, (m, n, k), a, b, &mut dst[..m * n], sums, threads)
        }
        _ => {
            gemm_into(m, n, k, a, b, dst, false);
            false
        }
    }
}

/// Which code multiplies the products too large for the small loops.
#[derive(Clone, Copy)]
enum Backend {
    /// Our blocked GEMM with this micro-kernel.
    Ours(&'static kernels::Kernel),
    /// The `gemm` crate (see `crate_path`).
    Crate,
}

/// The backend, decided once per process: `TAPEGRAD_GEMM_KERNEL=crate` or a kernel
/// name forces one; otherwise the `gemm` crate on CPUs with AVX-512 (its AVX-512
/// kernels beat our AVX2 one there; we have no AVX-512 kernel yet) and our own GEMM
/// with the best kernel this CPU has everywhere else.
fn backend() -> Backend {
    static CHOICE: OnceLock<Backend> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let wanted = std::env::var(kernels::KERNEL_ENV).ok();
        choose_backend(wanted.as_deref(), has_avx512f())
    })
}

fn choose_backend(wanted: Option<&str>, avx512: bool) -> Backend {
    match wanted.map(str::trim) {
        Some(name) if name.eq_ignore_ascii_case("crate") => Backend::Crate,
        None | Some("") if avx512 => Backend::Crate,
        wanted => Backend::Ours(kernels::choose(wanted, &kernels::available())),
    }
}

fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Products up to this many multiply-adds skip the blocked GEMM: for the tiny matrices
/// of small networks, packing and edge tiles cost more than the arithmetic (measured on
/// the seed network's training step).
const SMALL_PRODUCT: usize = 16 * 1024;

/// Tiny products, in the loop order the operands' strides allow without copying:
/// - `a`'s rows and `b`'s columns contiguous (x·Wᵀ in `linear`): one vectorised dot
///   product per output;
/// - `b`'s rows contiguous (the backward products G·W and Gᵀ·X): row updates
///   `c[i,:] += a[i,p]·b[p,:]`;
/// - otherwise `a` is packed row-major and `b` column-major (from the pool) for dots.
///
/// At these sizes a strided copy costs as much as the arithmetic, so no layout is
/// copied that the loops can read in place. Each output sums over p in a fixed order,
/// whatever the thread count.
fn small_gemm(n: usize, k: usize, a: MatRef, b: MatRef, dst: &mut [f32], accumulate: bool) {
    let m = dst.len() / n;
    if b.col_stride == 1 && !(a.col_stride == 1 && b.row_stride == 1) {
        if !accumulate {
            dst.fill(0.0);
        }
        row_updates(
            a,
            &b.data[..(k - 1) * b.row_stride + n],
            b.row_stride,
            n,
            dst,
        );
        return;
    }
    let a_rows = a.packed(m, k);
    let b_cols = b.transpose().packed(n, k);
    for (i, row) in dst.chunks_exact_mut(n).enumerate() {
        let a_row = &a_rows[i * k..(i + 1) * k];
        for (j, d) in row.iter_mut().enumerate() {
            let v = dot(a_row, &b_cols[j * k..(j + 1) * k]);
            *d = if accumulate { *d + v } else { v };
        }
    }
    a_rows.recycle();
    b_cols.recycle();
}

/// `c[i,:] += a[i,p]·b[p,:]`, where row p of `b` starts at `p·b_row_stride` and its
/// `width` elements are contiguous.
fn row_updates(a: MatRef, b: &[f32], b_row_stride: usize, width: usize, c: &mut [f32]) {
    let k = (b.len() - width) / b_row_stride.max(1) + 1;
    for (i, row) in c.chunks_exact_mut(width).enumerate() {
        for p in 0..k {
            let scale = a.data[i * a.row_stride + p * a.col_stride];
            let b_row = &b[p * b_row_stride..p * b_row_stride + width];
            for (d, &v) in row.iter_mut().zip(b_row) {
                *d += scale * v;
            }
        }
    }
}

/// Σ aᵢbᵢ with eight interleaved partial sums (vectorises; fixed order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// A row-major copy of a matrix, or the original slice when it already is one.
enum Packed<'a> {
    Borrowed(&'a [f32]),
    Owned(Vec<f32>),
}

impl std::ops::Deref for Packed<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Packed::Borrowed(s) => s,
            Packed::Owned(v) => v,
        }
    }
}

impl Packed<'_> {
    fn recycle(self) {
        if let Packed::Owned(v) = self {
            pool::give(v);
        }
    }
}

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
