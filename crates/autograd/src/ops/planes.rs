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

/// Calls `f(i, a_i, b_i)` for every element pair of `a` and `b` (per-channel results,
/// say), on the threads when `work` is large enough.
pub(crate) fn for_each_pair(
    a: &mut [f32],
    b: &mut [f32],
    work: usize,
    f: impl Fn(usize, &mut f32, &mut f32) + Sync + Send,
) {
    if threads_for(work) <= 1 || a.len() <= 1 {
        for (i, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            f(i, x, y);
        }
        return;
    }
    let per_task = a.len().div_ceil(num_threads()).max(1);
    a.par_iter_mut()
        .zip(b.par_iter_mut())
        .enumerate()
        .with_max_len(per_task)
        .for_each(|(i, (x, y))| f(i, x, y));
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
            let (mut a, mut b) = (vec![0.0f32; 9], vec![0.0f32; 9]);
            for_each_pair(&mut a, &mut b, work, |i, x, y| {
                *x += i as f32;
                *y -= i as f32;
            });
            assert_eq!(a, (0..9).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(b, (0..9).map(|i| -(i as f32)).collect::<Vec<_>>());
        }
    }
}
