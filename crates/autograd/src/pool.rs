//! A per-thread pool of f32 buffers.
//!
//! glibc hands large blocks back to the OS on free, so a training loop that allocates
//! fresh activation and gradient buffers every step pays page faults every step. Every
//! tensor's storage therefore comes from this pool and goes back to it when the tensor
//! is dropped (for example when the tape is released after `backward`): the next step
//! finds buffers of exactly the sizes it needs, already faulted in.

use std::cell::RefCell;

use crate::error::TensorError;

/// Most buffers the pool keeps; a training step of a deep model needs a few dozen.
const MAX_BUFFERS: usize = 512;
/// Most bytes the pool keeps, so a one-off huge tensor is not held forever.
const MAX_BYTES: usize = 512 << 20;

/// Free buffers grouped by capacity. A training loop asks for the same few sizes every
/// step, so a request is an exact-size lookup among a handful of classes, not a scan
/// of every free buffer. When the pool is full, the class *asked for* longest ago gives
/// up a buffer: sizes a program stopped using, and buffers made outside the pool (a
/// loss's own `Vec`s) that are given back every step but never asked for, go first,
/// instead of the sizes the next step will ask for (evicting those cost allocations
/// every step).
#[derive(Default)]
struct Pool {
    classes: Vec<Class>,
    count: usize,
    bytes: usize,
    clock: u64,
}

struct Class {
    capacity: usize,
    free: Vec<Vec<f32>>,
    /// When this size was last asked for (0: never).
    last_used: u64,
}

impl Pool {
    fn class(&mut self, capacity: usize) -> Option<&mut Class> {
        self.classes.iter_mut().find(|c| c.capacity == capacity)
    }

    /// The class of a request for `capacity`, made (empty) on the first request, so a
    /// buffer given back later is known to be wanted.
    fn asked(&mut self, capacity: usize) -> &mut Class {
        self.clock += 1;
        let clock = self.clock;
        let i = match self.classes.iter().position(|c| c.capacity == capacity) {
            Some(i) => i,
            None => {
                self.classes.push(Class {
                    capacity,
                    free: Vec::new(),
                    last_used: clock,
                });
                self.classes.len() - 1
            }
        };
        let class = &mut self.classes[i];
        class.last_used = clock;
        class
    }

    /// Frees one buffer of the least recently used class holding one; false when
    /// there is none. An emptied class is kept (its list's capacity with it), so a
    /// size in use does not cost an allocation each time it is given back; only past
    /// `MAX_CLASSES` are empty classes dropped.
    fn evict(&mut self) -> bool {
        if self.classes.len() > MAX_CLASSES {
            self.classes.retain(|c| !c.free.is_empty());
        }
        let Some(i) = (0..self.classes.len())
            .filter(|&i| !self.classes[i].free.is_empty())
            .min_by_key(|&i| self.classes[i].last_used)
        else {
            return false;
        };
        let class = &mut self.classes[i];
        if class.free.pop().is_some() {
            self.count -= 1;
            self.bytes -= class.capacity * 4;
        }
        true
    }
}

/// Most size classes kept while empty.
const MAX_CLASSES: usize = 256;

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An empty buffer with room for at least `len` elements; fill it with `extend`.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let mut buf = reuse(len).unwrap_or_else(|| Vec::with_capacity(len));
    buf.clear();
    buf
}

/// [`take`] that reports a failed allocation as an error naming `op` and the size,
/// instead of aborting the process: for constructors and ops whose size comes from a
/// caller or a file. (On Linux an overcommitted allocation may still succeed here and
/// fail later when touched; what the allocator refuses up front is caught.)
pub(crate) fn try_take(op: &'static str, len: usize) -> Result<Vec<f32>, TensorError> {
    if let Some(mut buf) = reuse(len) {
        buf.clear();
        return Ok(buf);
    }
    let mut buf = Vec::new();
    // `try_reserve_exact` on an empty Vec allocates exactly `len`, like `with_capacity`,
    // so the buffer returns to its own size class.
    buf.try_reserve_exact(len)
        .map_err(|_| TensorError::OutOfMemory { op, elements: len })?;
    Ok(buf)
}

/// A buffer of `len` elements holding whatever an earlier tensor left there, for
/// outputs that are written in full (a GEMM without accumulation): it skips the
/// zeroing pass that [`zeros`] pays.
pub(crate) fn for_overwrite(len: usize) -> Vec<f32> {
    // `with_capacity` allocates exactly `len`, so the buffer returns to its own class.
    let mut buf = reuse(len).unwrap_or_else(|| Vec::with_capacity(len));
    if buf.len() >= len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0.0);
    }
    buf
}

/// A pooled buffer of capacity exactly `len`, contents as they were.
fn reuse(len: usize) -> Option<Vec<f32>> {
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let buf = pool.asked(len).free.pop()?;
        pool.count -= 1;
        pool.bytes -= len * 4;
        Some(buf)
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
        if cap * 4 > MAX_BYTES {
            return;
        }
        while pool.count >= MAX_BUFFERS || pool.bytes + cap * 4 > MAX_BYTES {
            if !pool.evict() {
                return;
            }
        }
        pool.count += 1;
        pool.bytes += cap * 4;
        match pool.class(cap) {
            Some(class) => class.free.push(buf),
            None => pool.classes.push(Class {
                capacity: cap,
                free: vec![buf],
                last_used: 0,
            }),
        }
    });
}

/// Most index buffers kept per thread: a step of the workloads gathers a few times.
const MAX_INDEX_BUFFERS: usize = 64;

thread_local! {
    /// Free index buffers, newest last.
    static INDEX_POOL: RefCell<Vec<Vec<usize>>> = const { RefCell::new(Vec::new()) };
}

/// A list of element offsets (a gather's sources, saved for its backward) whose buffer
/// comes from this thread's pool of index buffers and goes back to it when dropped, as
/// tensor storage does, so an embedding lookup allocates nothing in the steady state.
pub(crate) struct Indices(Vec<usize>);

impl Indices {
    /// An empty list with room for exactly `len` offsets, or an error naming `op` when
    /// that cannot be allocated.
    pub(crate) fn try_take(op: &'static str, len: usize) -> Result<Indices, TensorError> {
        let reused = INDEX_POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let i = p.iter().rposition(|v| v.capacity() == len)?;
                Some(p.swap_remove(i))
            })
            .ok()
            .flatten();
        if let Some(mut buf) = reused {
            buf.clear();
            return Ok(Indices(buf));
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(len)
            .map_err(|_| TensorError::OutOfMemory { op, elements: len })?;
        Ok(Indices(buf))
    }
}

impl std::ops::Deref for Indices {
    type Target = Vec<usize>;
    fn deref(&self) -> &Vec<usize> {
        &self.0
    }
}

impl std::ops::DerefMut for Indices {
    fn deref_mut(&mut self) -> &mut Vec<usize> {
        &mut self.0
    }
}

impl Drop for Indices {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() == 0 {
            return;
        }
        // `try_with` because records can be dropped during thread teardown.
        let _ = INDEX_POOL.try_with(|p| {
            let Ok(mut p) = p.try_borrow_mut() else {
                return;
            };
            if p.len() == MAX_INDEX_BUFFERS {
                p.remove(0); // the oldest goes
            }
            p.push(buf);
        });
    }
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
    fn a_full_pool_makes_room_for_the_sizes_in_use() {
        for i in 0..2 * MAX_BUFFERS {
            give(Vec::with_capacity(10_000 + i));
        }
        let mut a = take(3);
        a.push(1.0);
        let ptr = a.as_ptr();
        give(a);
        let again = take(3);
        assert_eq!(again.as_ptr(), ptr, "the newest size was kept");
    }

    #[test]
    fn a_flood_of_one_size_does_not_push_out_the_others() {
        let mut big = take(50_000);
        big.resize(50_000, 0.0);
        let ptr = big.as_ptr();
        give(big);
        for _ in 0..2 * MAX_BUFFERS {
            give(Vec::with_capacity(7));
        }
        let again = take(50_000);
        assert_eq!(again.as_ptr(), ptr, "the big buffer was kept");
    }

    #[test]
    fn a_failed_allocation_is_an_error() {
        let err = try_take("zeros", usize::MAX).unwrap_err();
        assert_eq!(
            err,
            TensorError::OutOfMemory {
                op: "zeros",
                elements: usize::MAX
            }
        );
        assert_eq!(try_take("zeros", 10).unwrap().capacity(), 10);
    }

    #[test]
    fn an_index_buffer_is_reused() {
        let mut a = Indices::try_take("test", 37).unwrap();
        a.extend(0..37);
        let ptr = a.as_ptr();
        drop(a);
        let b = Indices::try_take("test", 37).unwrap();
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        assert_eq!(Indices::try_take("test", 5).unwrap().capacity(), 5);
    }

    #[test]
    fn a_buffer_of_another_size_is_not_used() {
        give(Vec::with_capacity(100_000));
        let b = take(10);
        assert!(b.capacity() < 100_000);
    }
}
