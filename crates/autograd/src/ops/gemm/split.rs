//! How a product's work is shared between threads, without changing a bit.
//!
//! Two ways, chosen by the shape alone:
//! - the output is cut into one rectangle per thread ([`split_output`]); every element
//!   is summed by one thread, over the whole of k, so the thread count moves no sum;
//! - when the output is small and k long (a convolution's weight gradient: 32 × 27
//!   outputs summed over 32768 pixels), k is cut into [`k_chunks`] chunks whose
//!   boundaries depend on k only; each chunk computes a whole partial product, and the
//!   partials are then added to C in chunk order ([`add_partials`]). That is done on 1
//!   thread exactly as on many, so results stay bit-identical; and unlike a split of
//!   a tiny output it packs every panel of A and B once in all, not once per thread.

use crate::parallel::for_each_piece;

/// Outputs above this many elements never split k: the output split keeps the threads
/// busy there, and the partial products would cost memory traffic.
const SPLIT_K_MAX_OUTPUT: usize = 256 * 256;
/// Least depth of a k chunk: each chunk pays its own output tiles and a pass over the
/// partial sums.
const SPLIT_K_MIN_DEPTH: usize = 512;
/// Most chunks of k: enough to balance 2 or 4 threads on a noisy host.
const SPLIT_K_MAX_CHUNKS: usize = 8;

/// How many chunks to cut k into for an `m × n` output (1 = no split). A function of
/// the shape only, never of the thread count: the split changes the order of each
/// element's sum, so it must be the same however many threads run it.
pub(super) fn k_chunks(m: usize, n: usize, k: usize) -> usize {
    if m.saturating_mul(n) > SPLIT_K_MAX_OUTPUT || k < 4 * m.max(n) {
        return 1;
    }
    (k / SPLIT_K_MIN_DEPTH).clamp(1, SPLIT_K_MAX_CHUNKS)
}

/// The start of chunk `t` of `chunks` along k (chunk t covers `bound(t)..bound(t + 1)`).
pub(super) fn k_bound(k: usize, chunks: usize, t: usize) -> usize {
    t * k / chunks
}

/// `c[i] += partials[0][i] + partials[1][i] + …`, added one partial at a time in order
/// (so each element's sum is the same however the elements are shared out); split
/// between threads over c when large.
pub(super) fn add_partials(c: &mut [f32], partials: &[f32]) {
    let len = c.len();
    if len == 0 {
        return;
    }
    for_each_piece(c, 4096, partials.len(), |i, piece| {
        let (start, end) = (i * 4096, i * 4096 + piece.len());
        for part in partials.chunks_exact(len) {
            for (d, &s) in piece.iter_mut().zip(&part[start..end]) {
                *d += s;
            }
        }
    });
}

/// How the threads share C: `(row parts, column parts)`, each part a rectangle that one
/// thread computes alone, packing its own panels, so a product is one parallel region
/// with no barrier. A part packs all of B's columns it touches and all of A's rows:
/// splitting C's columns in c parts packs A c times, splitting rows in r parts packs B
/// r times, so the split that copies least is chosen (columns when n ≥ m). Splitting
/// C never changes any element's sum over k.
pub(super) fn split_output(m_panels: usize, n_panels: usize, threads: usize) -> (usize, usize) {
    let mut best = (1, 1);
    let mut best_cost = usize::MAX;
    for r in 1..=threads {
        if threads % r != 0 {
            continue;
        }
        let c = threads / r;
        if r > m_panels || c > n_panels {
            continue;
        }
        // Floats packed again, in panel units of the other side.
        let cost = (c - 1) * m_panels + (r - 1) * n_panels;
        if cost < best_cost {
            (best, best_cost) = ((r, c), cost);
        }
    }
    if best == (1, 1) && threads > 1 && (m_panels > 1 || n_panels > 1) {
        // Too few panels on either side for a full split: split the longer side.
        return if m_panels >= n_panels {
            (m_panels.min(threads), 1)
        } else {
            (1, n_panels.min(threads))
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_is_split_only_for_small_outputs_and_long_k() {
        // The convolution weight gradients of w4 and w5.
        assert_eq!(k_chunks(32, 27, 32768), 8);
        assert_eq!(k_chunks(64, 288, 8192), 8);
        assert_eq!(k_chunks(32, 9, 2048), 4);
        // Square and tall-skinny products keep the output split.
        assert_eq!(k_chunks(1024, 1024, 1024), 1);
        assert_eq!(k_chunks(256, 256, 256), 1);
        assert_eq!(k_chunks(1024, 384, 128), 1);
        assert_eq!(k_chunks(2048, 64, 288), 1);
        // k too short for two chunks, or the output too large.
        assert_eq!(k_chunks(4, 4, 1000), 1);
        assert_eq!(k_chunks(512, 512, 1 << 20), 1);
        // Chunk bounds cover k exactly, in order.
        let k = 1001;
        assert_eq!(k_bound(k, 3, 0), 0);
        assert_eq!(k_bound(k, 3, 3), k);
        assert!((0..3).all(|t| k_bound(k, 3, t) < k_bound(k, 3, t + 1)));
    }

    #[test]
    fn partials_are_added_in_order() {
        let len = 5000; // more than one piece
        let mut c = vec![1.0f32; len];
        let partials: Vec<f32> = (0..3 * len).map(|i| (i / len + 1) as f32).collect();
        add_partials(&mut c, &partials);
        assert!(c.iter().all(|&v| v == 7.0));
    }

    #[test]
    fn the_output_split_copies_least() {
        assert_eq!(split_output(171, 64, 2), (2, 1));
        assert_eq!(split_output(2, 64, 2), (1, 2));
        assert_eq!(split_output(1, 1, 2), (1, 1));
        assert_eq!(split_output(5, 1, 1), (1, 1));
        // Three threads, one panel of columns: rows only.
        assert_eq!(split_output(6, 1, 3), (3, 1));
    }
}
