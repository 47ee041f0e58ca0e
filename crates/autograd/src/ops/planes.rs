//! Running the per-plane and per-channel loops of the NCHW ops (pooling, batch norm,
//! the copies around convolution) on the threads.
//!
//! Each plane (or channel) is computed by one task from start to end, in the same order
//! as on one thread, so how the planes are dealt out never changes a result: 1 thread
//! and many give the same bits. Small jobs stay on the calling thread, where waking the
//! pool would cost more than the work.

use rayon::prelude::*;

use crate::ops::gemm::num_threads;

/// Below this many elements touched, a job runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The number of threads to deal `work` elements over.
fn threads_for(work: usize) -> usize {
    if work < PARALLEL_MIN {
        1
    } else {
        num_threads()
    }
}

/// Calls `f(i, chunk)` for every `len`-element chunk `i` of `dst` (a plane of an NCHW
/// output, or whatever unit the caller chose), on the threads when `work` (the
/// elements the whole job touches) is large enough.
pub(crate) fn for_each_chunk(
    dst: &mut [f32],
    len: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if len == 0 || dst.is_empty() {
        return;
    }
    let threads = threads_for(work);
    let chunks = dst.len().div_ceil(len);
    if threads <= 1 || chunks <= 1 {
        dst.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    // One task per thread: the chunks of a task are consecutive.
    let per_task = chunks.div_ceil(threads);
    dst.par_chunks_mut(per_task * len)
        .enumerate()
        .for_each(|(t, part)| {
            for (j, c) in part.chunks_mut(len).enumerate() {
                f(t * per_task + j, c);
            }
        });
}

/// Calls `f(i, a_i, b_i)` for the `i`-th chunks of `a` (`la` elements each) and `b`
/// (`lb` each) together, say an output plane and its arg-max plane, or one channel's
/// two statistics; on the threads when `work` is large enough.
pub(crate) fn for_each_chunk_pair(
    (a, la): (&mut [f32], usize),
    (b, lb): (&mut [f32], usize),
    work: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
) {
    if la == 0 || lb == 0 || a.is_empty() {
        return;
    }
    let threads = threads_for(work);
    let chunks = a.len().div_ceil(la);
    if threads <= 1 || chunks <= 1 {
        for (i, (x, y)) in a.chunks_mut(la).zip(b.chunks_mut(lb)).enumerate() {
            f(i, x, y);
        }
        return;
    }
    let per_task = chunks.div_ceil(threads);
    a.par_chunks_mut(per_task * la)
        .zip(b.par_chunks_mut(per_task * lb))
        .enumerate()
        .for_each(|(t, (pa, pb))| {
            for (j, (x, y)) in pa.chunks_mut(la).zip(pb.chunks_mut(lb)).enumerate() {
                f(t * per_task + j, x, y);
            }
        });
}

/// Σx over 8 interleaved partial sums (vectorised; the order is fixed by the code, not
/// by the machine or the threads).
pub(crate) fn sum(x: &[f32]) -> f32 {
    crate::cpu::with_avx2_fma(|| {
        let mut acc = [0.0f32; 8];
        let chunks = x.chunks_exact(8);
        let tail: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v;
            }
        }
        acc.iter().sum::<f32>() + tail
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_visited_once_with_its_index() {
        for work in [0, PARALLEL_MIN] {
            let mut v = vec![0.0f32; 10 * 7 + 3];
            for_each_chunk(&mut v, 7, work, |i, c| {
                c.iter_mut().for_each(|e| *e += i as f32)
            });
            let want: Vec<f32> = (0..v.len()).map(|j| (j / 7) as f32).collect();
            assert_eq!(v, want);
            let (mut a, mut b) = (vec![0.0f32; 9], vec![0.0f32; 18]);
            for_each_chunk_pair((&mut a, 1), (&mut b, 2), work, |i, x, y| {
                x[0] += i as f32;
                y.iter_mut().for_each(|e| *e -= i as f32);
            });
            assert_eq!(a, (0..9).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(b, (0..18).map(|i| -((i / 2) as f32)).collect::<Vec<_>>());
        }
    }
}
