//! A per-thread pool of f32 buffers.
//!
//! glibc hands large blocks back to the OS on free, so a training loop that allocates
//! fresh activation and gradient buffers every step pays page faults every step. Every
//! tensor's storage therefore comes from this pool and goes back to it when the tensor
//! is dropped (for example when the tape is released after `backward`): the next step
//! finds buffers of exactly the sizes it needs, already faulted in.

use std::cell::RefCell;

/// Most buffers the pool keeps; a training step of a deep model needs a few dozen.
const MAX_BUFFERS: usize = 128;
/// Most bytes the pool keeps, so a one-off huge tensor is not held forever.
const MAX_BYTES: usize = 512 << 20;

#[derive(Default)]
struct Pool {
    free: Vec<Vec<f32>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An empty buffer with room for at least `len` elements; fill it with `extend`.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let mut buf = reuse(len).unwrap_or_else(|| Vec::with_capacity(len));
    buf.clear();
    buf
}

/// A buffer of `len` elements holding whatever an earlier tensor left there, for
/// outputs that are written in full (a GEMM without accumulation): it skips the
/// zeroing pass that [`zeros`] pays.
pub(crate) fn for_overwrite(len: usize) -> Vec<f32> {
    let mut buf = reuse(len).unwrap_or_default();
    if buf.len() >= len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0.0);
    }
    buf
}

/// The best-fitting pooled buffer for `len` elements, contents as they were.
fn reuse(len: usize) -> Option<Vec<f32>> {
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        // Best fit among buffers no more than twice too large.
        let mut best: Option<(usize, usize)> = None;
        for (i, buf) in pool.free.iter().enumerate() {
            let cap = buf.capacity();
            if cap >= len && cap <= 2 * len + 16 && best.is_none_or(|(_, c)| cap < c) {
                best = Some((i, cap));
                if cap == len {
                    break;
                }
            }
        }
        best.map(|(i, cap)| {
            pool.bytes -= cap * 4;
            pool.free.swap_remove(i)
        })
    })
    .ok()
    .flatten()
}

/// A buffer of `len` zeros.
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    let mut buf = take(len);
    buf.resize(len, 0.0);
    buf
}

/// A copy of `src` in a pooled buffer.
pub(crate) fn copy_of(src: &[f32]) -> Vec<f32> {
    let mut buf = take(src.len());
    buf.extend_from_slice(src);
    buf
}

/// Hands a buffer back for reuse. Buffers beyond the pool's limits are freed.
pub(crate) fn give(buf: Vec<f32>) {
    let cap = buf.capacity();
    if cap == 0 {
        return;
    }
    // `try_with` because tensors can be dropped during thread teardown.
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.free.len() < MAX_BUFFERS && pool.bytes + cap * 4 <= MAX_BYTES {
            pool.bytes += cap * 4;
            pool.free.push(buf);
        }
    });
}

/// Bytes currently held by this thread's pool (a diagnostic for memory tests).
pub fn pooled_bytes() -> usize {
    POOL.with(|pool| pool.borrow().bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused() {
        let mut a = take(1000);
        a.resize(1000, 1.0);
        let ptr = a.as_ptr();
        give(a);
        let b = take(1000);
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
    }

    #[test]
    fn a_much_larger_buffer_is_not_used_for_a_small_request() {
        give(Vec::with_capacity(100_000));
        let b = take(10);
        assert!(b.capacity() < 100_000);
    }
}
