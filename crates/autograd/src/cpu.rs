//! Running hot loops with the CPU's wider instructions, chosen at run time.
//!
//! Rust's default x86-64 target stops at SSE2, so without help our kernels use 4-lane
//! vectors and `mul_add` becomes a library call per element. [`with_avx2_fma`] runs a
//! closure inside a function compiled for AVX2 + FMA when the running CPU has them, so
//! the loops LLVM inlines there get 8 lanes and one `vfmadd` per `mul_add`. Results are
//! the same bit for bit on either path: Rust never fuses `a * b + c` on its own, and
//! `mul_add` is exactly rounded everywhere.

/// Runs `f` compiled for AVX2 + FMA when this CPU has them, else as built.
#[inline(always)]
pub fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: both target features were detected on the running CPU just above.
            return unsafe { avx2_fma(f) };
        }
    }
    f()
}

/// Whether the running CPU has AVX2 and FMA (the kernels' one run-time test).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_compute_the_same_bits() {
        let (a, b, c) = (1.1f32, 2.3f32, -0.7f32);
        let fused = with_avx2_fma(|| a.mul_add(b, c));
        assert_eq!(fused.to_bits(), a.mul_add(b, c).to_bits());
        let plain = with_avx2_fma(|| a * b + c);
        assert_eq!(plain.to_bits(), (a * b + c).to_bits());
    }
}
