//! Sums over the planes of NCHW tensors (batch norm's statistics, convolution's bias
//! gradient), in an order fixed by the code, not by the machine or the threads. The
//! planes themselves are dealt to threads with `crate::parallel::for_each_piece`.

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
