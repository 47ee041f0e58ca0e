//! Scalar forms of the PyTorch CPU pointwise kernels the optimizers are built from.
//!
//! PyTorch's vectorised CPU kernels fuse `a + alpha*b` (`add` with `alpha`), `addcmul`
//! and `lerp` into fused multiply-adds, so the optimizers use [`f32::mul_add`] in the same
//! places; that keeps the updates bit-for-bit with `torch.optim` instead of one rounding
//! apart per operation, which would compound over thousands of steps.

/// Runs `f` compiled for AVX2 + FMA when this CPU has them, else as built.
///
/// Without the `fma` target feature (not in Rust's default x86-64 target) `mul_add`
/// is a call into a software routine per element, which also stops the loops from
/// vectorising: an Adam step over 670k parameters took 3.5 ms that way. Everything `f`
/// calls that LLVM inlines into the FMA build (the optimizers' per-parameter loops)
/// gets one `vfmadd` per `mul_add`, with the same result bit for bit, since `mul_add`
/// is exactly rounded on either path.
#[inline(always)]
pub(crate) fn with_fma<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: both target features were detected on the running CPU just above.
            return unsafe { avx2_fma(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `torch.lerp(start, end, weight)`: `start + w·(end − start)` for |w| < 0.5, otherwise
/// `end − (end − start)·(1 − w)`, the form that is exact at w = 1.
#[inline(always)]
pub(crate) fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    let diff = end - start;
    if weight.abs() < 0.5 {
        weight.mul_add(diff, start)
    } else {
        (-diff).mul_add(1.0 - weight, end)
    }
}

/// `torch.addcmul(acc, a, b, value)`: `acc + (value·a)·b`.
#[inline(always)]
pub(crate) fn addcmul(acc: f32, value: f32, a: f32, b: f32) -> f32 {
    (value * a).mul_add(b, acc)
}

/// `torch.addcdiv(acc, a, b, value)`: `acc + (value·a)/b` (a division cannot fuse).
#[inline(always)]
pub(crate) fn addcdiv(acc: f32, value: f32, a: f32, b: f32) -> f32 {
    acc + value * a / b
}

/// `torch.maximum`: unlike [`f32::max`], a NaN on either side propagates.
#[inline(always)]
pub(crate) fn maximum(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}
