//! Splitting elementwise and row-wise work across threads without changing a bit.
//!
//! Every helper cuts its output into pieces whose boundaries depend only on the sizes it
//! is given, never on the thread count, and each piece is computed the same way whether
//! it runs on the calling thread or on a worker. So an op that sums inside a piece and
//! then combines the pieces in index order gives the same result on 1 thread as on 16
//! (`tests/threads.rs` checks this). Small ops stay on the calling thread: waking the
//! pool costs a few microseconds.

use rayon::prelude::*;

use crate::ops::gemm::num_threads;

/// Below this much work (elements touched) an op runs on the calling thread.
pub(crate) const MIN_PARALLEL_WORK: usize = 1 << 15;

/// Whether work of this size should be split across threads.
pub(crate) fn should_split(work: usize) -> bool {
    work >= MIN_PARALLEL_WORK && num_threads() > 1
}

/// Calls `f(index, piece)` for each `piece_len`-long piece of `out` (the last may be
/// shorter), on several threads when `work` is large enough.
pub(crate) fn for_each_piece<T: Send>(
    out: &mut [T],
    piece_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let piece_len = piece_len.max(1);
    if should_split(work) {
        out.par_chunks_mut(piece_len)
            .enumerate()
            .for_each(|(i, piece)| f(i, piece));
    } else {
        out.chunks_mut(piece_len)
            .enumerate()
            .for_each(|(i, piece)| f(i, piece));
    }
}

/// [`for_each_piece`] over two outputs cut in step: piece `i` of `a` (`len_a` long)
/// goes with piece `i` of `b` (`len_b` long).
pub(crate) fn for_each_piece2<A: Send, B: Send>(
    a: &mut [A],
    len_a: usize,
    b: &mut [B],
    len_b: usize,
    work: usize,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
) {
    let (len_a, len_b) = (len_a.max(1), len_b.max(1));
    if should_split(work) {
        a.par_chunks_mut(len_a)
            .zip(b.par_chunks_mut(len_b))
            .enumerate()
            .for_each(|(i, (pa, pb))| f(i, pa, pb));
    } else {
        a.chunks_mut(len_a)
            .zip(b.chunks_mut(len_b))
            .enumerate()
            .for_each(|(i, (pa, pb))| f(i, pa, pb));
    }
}

/// The piece length that gives each thread about one piece of `len` elements, rounded
/// up to a multiple of `align`: for elementwise maps, whose result does not depend on
/// where the pieces fall.
#[cfg(test)]
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
        let (mut a, mut b) = (vec![0usize; 10], vec![0usize; 5]);
        for_each_piece2(&mut a, 2, &mut b, 1, 10, |i, pa, pb| {
            pa.fill(i);
            pb[0] = i;
        });
        assert_eq!(a, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        assert_eq!(b, [0, 1, 2, 3, 4]);
        assert_eq!(elementwise_piece(10, 8) % 8, 0);
    }
}
