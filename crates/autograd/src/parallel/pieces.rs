//! Splitting elementwise and row-wise work across threads without changing a bit.
//!
//! Every helper cuts its output into pieces whose boundaries depend only on the sizes it
//! is given, never on the thread count, and each piece is computed the same way whatever
//! thread runs it. So an op that sums inside a piece and then combines the pieces in
//! index order gives the same result on 1 thread as on 16 (`tests/threads.rs` checks
//! this). Small ops stay on the calling thread: waking the workers costs microseconds.
//! The pieces run on the pool of [`super::for_each_part`].

use super::for_each_part;
use crate::ops::gemm::num_threads;

/// Below this much work (elements touched) an op runs on the calling thread.
pub(crate) const MIN_PARALLEL_WORK: usize = 1 << 15;

/// Whether work of this size should be split across threads.
pub(crate) fn should_split(work: usize) -> bool {
    work >= MIN_PARALLEL_WORK && num_threads() > 1
}

/// A slice cut into `piece_len`-long pieces that several threads may fill at once, each
/// piece by one thread.
struct Pieces<T> {
    ptr: *mut T,
    len: usize,
    piece_len: usize,
}

// SAFETY: the pieces handed out are disjoint (see `piece`), and `T: Send` lets each be
// written from another thread.
unsafe impl<T: Send> Sync for Pieces<T> {}

impl<T> Pieces<T> {
    fn new(out: &mut [T], piece_len: usize) -> Self {
        Pieces {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            piece_len,
        }
    }

    fn count(&self) -> usize {
        self.len.div_ceil(self.piece_len)
    }

    /// Piece `i`.
    ///
    /// # Safety
    /// `i < count()`, and no other reference to piece `i` may be alive: callers take
    /// each index once, from `for_each_index`, which runs each index exactly once.
    #[allow(clippy::mut_from_ref)]
    unsafe fn piece(&self, i: usize) -> &mut [T] {
        let start = i * self.piece_len;
        let end = (start + self.piece_len).min(self.len);
        debug_assert!(start < end);
        // SAFETY: start..end lies inside the slice `new` was given (i < count()), that
        // slice outlives `self` (it is borrowed mutably by the caller for the call), and
        // the caller guarantees no other reference to this range exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }
}

/// Runs `f(i)` for every `i < count` on the pool, each thread taking one run of
/// consecutive indices (one claim per thread, not one per piece: pieces may be small).
fn for_each_index(count: usize, f: impl Fn(usize) + Sync) {
    let per = count.div_ceil(num_threads().clamp(1, count.max(1)));
    for_each_part(count.div_ceil(per.max(1)), |t| {
        (t * per..((t + 1) * per).min(count)).for_each(&f)
    });
}

/// Calls `f(index, piece)` for each `piece_len`-long piece of `out` (the last may be
/// shorter), on several threads when `work` is large enough.
pub(crate) fn for_each_piece<T: Send>(
    out: &mut [T],
    piece_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if piece_len == 0 || out.is_empty() {
        return; // no pieces
    }
    if !should_split(work) || out.len() <= piece_len {
        out.chunks_mut(piece_len)
            .enumerate()
            .for_each(|(i, piece)| f(i, piece));
        return;
    }
    let pieces = Pieces::new(out, piece_len);
    // SAFETY: for_each_index runs each index below count() exactly once.
    for_each_index(pieces.count(), |i| f(i, unsafe { pieces.piece(i) }));
}

/// [`for_each_piece`] over two outputs cut in step: piece `i` of `a` (`len_a` long)
/// goes with piece `i` of `b` (`len_b` long); both must have the same number of pieces.
pub(crate) fn for_each_piece2<A: Send, B: Send>(
    (a, len_a): (&mut [A], usize),
    (b, len_b): (&mut [B], usize),
    work: usize,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
) {
    if len_a == 0 || len_b == 0 || a.is_empty() {
        return; // no pieces
    }
    if !should_split(work) || a.len() <= len_a {
        a.chunks_mut(len_a)
            .zip(b.chunks_mut(len_b))
            .enumerate()
            .for_each(|(i, (pa, pb))| f(i, pa, pb));
        return;
    }
    let (pa, pb) = (Pieces::new(a, len_a), Pieces::new(b, len_b));
    let count = pa.count().min(pb.count());
    // SAFETY: for_each_index runs each index below `count` (no more than either slice's
    // number of pieces) exactly once.
    for_each_index(count, |i| {
        f(i, unsafe { pa.piece(i) }, unsafe { pb.piece(i) })
    });
}

/// [`for_each_piece2`] over three outputs cut in step (attention's dq, dk and dv).
pub(crate) fn for_each_piece3<A: Send, B: Send, C: Send>(
    (a, len_a): (&mut [A], usize),
    (b, len_b): (&mut [B], usize),
    (c, len_c): (&mut [C], usize),
    work: usize,
    f: impl Fn(usize, &mut [A], &mut [B], &mut [C]) + Sync + Send,
) {
    if len_a == 0 || len_b == 0 || len_c == 0 || a.is_empty() {
        return; // no pieces
    }
    if !should_split(work) || a.len() <= len_a {
        a.chunks_mut(len_a)
            .zip(b.chunks_mut(len_b))
            .zip(c.chunks_mut(len_c))
            .enumerate()
            .for_each(|(i, ((pa, pb), pc))| f(i, pa, pb, pc));
        return;
    }
    let (pa, pb, pc) = (
        Pieces::new(a, len_a),
        Pieces::new(b, len_b),
        Pieces::new(c, len_c),
    );
    let count = pa.count().min(pb.count()).min(pc.count());
    // SAFETY: for_each_index runs each index below `count` (no more than any slice's
    // number of pieces) exactly once.
    for_each_index(count, |i| unsafe {
        f(i, pa.piece(i), pb.piece(i), pc.piece(i))
    });
}

/// The piece length that gives each thread about one piece of `len` elements, rounded
/// up to a multiple of `align`: for work whose result does not depend on where the
/// pieces fall (elementwise maps, `linear`'s bias rows and per-column bias sums).
pub(crate) fn elementwise_piece(len: usize, align: usize) -> usize {
    let threads = num_threads().max(1);
    len.div_ceil(threads).div_ceil(align).max(1) * align
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_output_in_order() {
        let mut out = vec![0usize; 100_000];
        let n = out.len();
        for_each_piece(&mut out, 4096, n, |i, piece| {
            for (j, v) in piece.iter_mut().enumerate() {
                *v = i * 4096 + j;
            }
        });
        assert!(out.iter().enumerate().all(|(i, &v)| i == v));
        let (mut a, mut b) = (vec![0usize; 1 << 16], vec![0usize; 1 << 12]);
        for_each_piece2((&mut a, 16), (&mut b, 1), 1 << 16, |i, pa, pb| {
            pa.fill(i);
            pb[0] = i;
        });
        assert!(a.iter().enumerate().all(|(j, &v)| v == j / 16));
        assert!(b.iter().enumerate().all(|(j, &v)| v == j));
        let (mut a, mut b) = (vec![0usize; 10], vec![0usize; 5]);
        for_each_piece2((&mut a, 2), (&mut b, 1), 10, |i, pa, pb| {
            pa.fill(i);
            pb[0] = i;
        });
        assert_eq!(a, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        assert_eq!(b, [0, 1, 2, 3, 4]);
        assert_eq!(elementwise_piece(10, 8) % 8, 0);
    }
}
