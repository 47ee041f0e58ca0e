//! Vectorised math for the hot elementwise loops: the exact GELU, x·Φ(x) =
//! ½·x·(1 + erf(x/√2)), and its derivative, and eˣ for the attention's softmax, eight
//! lanes at a time with AVX2 + FMA when the running CPU has them.
//!
//! The scalar path calls `libm::erff` per element, which dominated the GPT step's
//! profile. The vector path evaluates the same algorithm as `erff` (FreeBSD's `s_erff.c`:
//! a rational approximation on each of |x| < 0.84375, < 1.25, < 6, and 1 beyond) on all
//! eight lanes, blending the pieces, with an 8-lane `exp`; it stays within 1 ulp of
//! `libm::erff` everywhere (the test sweeps it). Each element's result depends only on
//! its own input, whatever its position (a short tail is padded to eight lanes), so the
//! split across threads never changes a bit. The two paths differ by those ulps, so one
//! machine always takes the same path: the choice is made once from the CPU's features.

use std::f32::consts::FRAC_1_SQRT_2;

/// 1/√(2π), the standard normal density's scale.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `out[i] = gelu(x[i])`, exact form.
pub(crate) fn gelu_forward(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on the running CPU.
        unsafe { avx2::forward(x, out) };
        return;
    }
    forward_scalar(x, out);
}

/// `out[i] = gelu(x[i])` and `d[i] = gelu'(x[i])`, exact form: the forward of a
/// recorded GELU saves the derivative, so its backward is one multiply per element
/// instead of a second erf. `g · d[i]` has the bits of `gelu_backward`'s result (the
/// same operations, and erf's value is the forward's).
pub(crate) fn gelu_forward_and_derivative(x: &[f32], out: &mut [f32], d: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on the running CPU.
        unsafe { avx2::forward_and_derivative(x, out, d) };
        return;
    }
    forward_and_derivative_scalar(x, out, d);
}

/// `out[i] = g[i] · gelu'(x[i])`, exact form (the reference that
/// [`gelu_forward_and_derivative`] must match bit for bit).
#[cfg(test)]
pub(crate) fn gelu_backward(g: &[f32], x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on the running CPU.
        unsafe { avx2::backward(g, x, out) };
        return;
    }
    backward_scalar(g, x, out);
}

/// `x[i] = e^x[i]` for every element (−∞ gives 0). The vector path is within 2 ulp of
/// `f32::exp` (flushing results below 2⁻¹²⁵ to 0); each element's result depends only
/// on its value, not on its position.
pub(crate) fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected on the running CPU.
        unsafe { avx2::exp_in_place(x) };
        return;
    }
    for v in x {
        *v = v.exp();
    }
}

/// The portable path: `libm::erff` per element.
fn forward_scalar(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = 0.5 * v * (1.0 + libm::erff(v * FRAC_1_SQRT_2));
    }
}

/// The portable forward and derivative, each with the operations of
/// [`forward_scalar`] and `backward_scalar`.
fn forward_and_derivative_scalar(x: &[f32], out: &mut [f32], d: &mut [f32]) {
    for ((o, dv), &v) in out.iter_mut().zip(d.iter_mut()).zip(x) {
        let e = libm::erff(v * FRAC_1_SQRT_2);
        *o = 0.5 * v * (1.0 + e);
        let cdf = 0.5 * (1.0 + e);
        *dv = cdf + v * INV_SQRT_2PI * (-0.5 * v * v).exp();
    }
}

/// The portable derivative: Φ(x) + x·φ(x).
#[cfg(test)]
fn backward_scalar(g: &[f32], x: &[f32], out: &mut [f32]) {
    for ((o, &gv), &v) in out.iter_mut().zip(g).zip(x) {
        let cdf = 0.5 * (1.0 + libm::erff(v * FRAC_1_SQRT_2));
        *o = gv * (cdf + v * INV_SQRT_2PI * (-0.5 * v * v).exp());
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The 8-lane kernels. Every function here needs AVX2 and FMA.

    use std::arch::x86_64::*;

    use super::{FRAC_1_SQRT_2, INV_SQRT_2PI};

    // erff's coefficients, bit for bit (FreeBSD s_erff.c, via the `libm` crate).
    const ERX: f32 = f32::from_bits(0x3f58560b);
    const PP: [f32; 5] = [
        f32::from_bits(0x3e0375d4),
        f32::from_bits(0xbea66beb),
        f32::from_bits(0xbce9528f),
        f32::from_bits(0xbbbd1489),
        f32::from_bits(0xb7c756b1),
    ];
    const QQ: [f32; 5] = [
        f32::from_bits(0x3ecbbbce),
        f32::from_bits(0x3d852a63),
        f32::from_bits(0x3ba68116),
        f32::from_bits(0x390aee49),
        f32::from_bits(0xb684e21a),
    ];
    const PA: [f32; 7] = [
        f32::from_bits(0xbb1acdc6),
        f32::from_bits(0x3ed46805),
        f32::from_bits(0xbebe9208),
        f32::from_bits(0x3ea2fe54),
        f32::from_bits(0xbde31cc2),
        f32::from_bits(0x3d1151b3),
        f32::from_bits(0xbb0df9c0),
    ];
    const QA: [f32; 6] = [
        f32::from_bits(0x3dd9f331),
        f32::from_bits(0x3f0a5785),
        f32::from_bits(0x3d931ae7),
        f32::from_bits(0x3e013307),
        f32::from_bits(0x3c5f6e13),
        f32::from_bits(0x3c445aa3),
    ];
    // On [1.25, 1/0.35) (RA, SA) and [1/0.35, 6) (RB, SB, padded with a zero top term).
    const RA: [f32; 8] = [
        f32::from_bits(0xbc21a093),
        f32::from_bits(0xbf31a0b7),
        f32::from_bits(0xc128f022),
        f32::from_bits(0xc2798057),
        f32::from_bits(0xc322658c),
        f32::from_bits(0xc3389ae7),
        f32::from_bits(0xc2a2932b),
        f32::from_bits(0xc11d077e),
    ];
    const SA: [f32; 8] = [
        f32::from_bits(0x419d35ce),
        f32::from_bits(0x4309a863),
        f32::from_bits(0x43d9486f),
        f32::from_bits(0x442158c9),
        f32::from_bits(0x43d6810b),
        f32::from_bits(0x42d9451f),
        f32::from_bits(0x40d23f7c),
        f32::from_bits(0xbd777f97),
    ];
    const RB: [f32; 8] = [
        f32::from_bits(0xbc21a092),
        f32::from_bits(0xbf4c9dd4),
        f32::from_bits(0xc18e104b),
        f32::from_bits(0xc320a2ea),
        f32::from_bits(0xc41f6441),
        f32::from_bits(0xc480230b),
        f32::from_bits(0xc3f1c275),
        0.0,
    ];
    const SB: [f32; 8] = [
        f32::from_bits(0x41f2b459),
        f32::from_bits(0x43a2e571),
        f32::from_bits(0x44c01759),
        f32::from_bits(0x4547fdbb),
        f32::from_bits(0x451f90ce),
        f32::from_bits(0x43ed43a7),
        f32::from_bits(0xc1b38712),
        0.0,
    ];

    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }

    /// `c[0] + z·(c[1] + z·(… + z·c[n−1]))`.
    #[inline(always)]
    unsafe fn horner(z: __m256, c: &[f32]) -> __m256 {
        let mut acc = splat(c[c.len() - 1]);
        for &k in c[..c.len() - 1].iter().rev() {
            acc = _mm256_fmadd_ps(acc, z, splat(k));
        }
        acc
    }

    /// `1 + z·(c[0] + z·(c[1] + …))`.
    #[inline(always)]
    unsafe fn horner1(z: __m256, c: &[f32]) -> __m256 {
        _mm256_fmadd_ps(horner(z, c), z, splat(1.0))
    }

    /// Per lane: `a` where `mask`, else `b`.
    #[inline(always)]
    unsafe fn select(mask: __m256, a: __m256, b: __m256) -> __m256 {
        _mm256_blendv_ps(b, a, mask)
    }

    /// Below ln(2⁻¹²⁵) [`exp`] flushes its result to 0: results near the subnormal range
    /// would cost a microcode assist per lane (masked attention scores are −∞, so half
    /// a causal tile lands here).
    const EXP_LO: f32 = -86.643_4; // ln(2⁻¹²⁵)
    /// Above ln(f32::MAX) [`exp`] gives +∞.
    const EXP_HI: f32 = 88.722_83;

    /// The shared body of [`exp`] and [`exp_nonpositive`] for `xc` already clamped to
    /// [EXP_LO, EXP_HI]: (y, n) with eˣᶜ = y·2ⁿ, y within [½√2, √2].
    #[inline(always)]
    unsafe fn exp_parts(xc: __m256) -> (__m256, __m256i) {
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(xc, splat(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, splat(0.693_359_4), xc);
        let r = _mm256_fnmadd_ps(n, splat(-2.121_944_4e-4), r);
        let p = horner(
            r,
            &[
                0.5, // Cephes' 5.0000001201e-1 rounds to 0.5 in f32
                1.666_666_5e-1,
                4.166_579_6e-2,
                8.333_452e-3,
                1.398_2e-3,
                1.987_569_1e-4,
            ],
        );
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), splat(1.0));
        (y, _mm256_cvtps_epi32(n))
    }

    /// eˣ within about 1 ulp (Cephes' expf: x = n·ln2 + r, a degree-7 polynomial in r,
    /// 2ⁿ built in the exponent bits). Results below 2⁻¹²⁵ flush to 0; above the
    /// largest float, +∞; NaN stays NaN.
    #[inline(always)]
    pub(super) unsafe fn exp(x: __m256) -> __m256 {
        let xc = _mm256_min_ps(_mm256_max_ps(x, splat(EXP_LO)), splat(EXP_HI));
        let (y, ni) = exp_parts(xc);
        // n ∈ [−126, 128]: split 2ⁿ in two halves so n = 128 does not overflow the
        // exponent field before the multiply.
        let half = _mm256_srai_epi32::<1>(ni);
        let y = _mm256_mul_ps(
            _mm256_mul_ps(y, pow2(half)),
            pow2(_mm256_sub_epi32(ni, half)),
        );
        let y = select(
            _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(EXP_LO)),
            _mm256_setzero_ps(),
            y,
        );
        let y = select(
            _mm256_cmp_ps::<_CMP_GT_OQ>(x, splat(EXP_HI)),
            splat(f32::INFINITY),
            y,
        );
        select(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x), x, y)
    }

    /// [`exp`] for x ≤ 0, with its bits there (the GELU density's e^(−x²/2)); a NaN
    /// lane gives some finite value instead of NaN. The upper clamp and the +∞ and NaN
    /// blends cannot act on x ≤ 0, and n ∈ [−125, 0] makes 2ⁿ one normal float, with
    /// y·2ⁿ ≥ ½√2·2⁻¹²⁵ normal: one exact multiply gives the bits of `exp`'s two.
    #[inline(always)]
    unsafe fn exp_nonpositive(x: __m256) -> __m256 {
        let (y, ni) = exp_parts(_mm256_max_ps(x, splat(EXP_LO)));
        select(
            _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(EXP_LO)),
            _mm256_setzero_ps(),
            _mm256_mul_ps(y, pow2(ni)),
        )
    }

    /// 2ᵏ per lane for integer k in [−126, 127], built in the exponent bits. (A function,
    /// not a closure, so that it is inlined into the AVX2 code.)
    #[inline(always)]
    unsafe fn pow2(k: __m256i) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(127),
        )))
    }

    /// erf(x) per lane, `erff`'s algorithm on every piece, blended.
    #[inline(always)]
    pub(super) unsafe fn erf(x: __m256) -> __m256 {
        let sign_bit = splat(-0.0);
        let sign = _mm256_and_ps(x, sign_bit);
        let ax = _mm256_andnot_ps(sign_bit, x);
        // |x| < 0.84375: x + x·P(x²)/Q(x²) (already signed).
        let z = _mm256_mul_ps(x, x);
        let small = _mm256_fmadd_ps(x, _mm256_div_ps(horner(z, &PP), horner1(z, &QQ)), x);
        let in_mid = _mm256_cmp_ps::<_CMP_GE_OQ>(ax, splat(0.843_75));
        let in_tail = _mm256_cmp_ps::<_CMP_GE_OQ>(ax, splat(1.25));
        let mut y = small;
        if _mm256_movemask_ps(in_mid) != 0 {
            // 0.84375 ≤ |x| < 1.25: 1 − (1 − erx − P(s)/Q(s)), s = |x| − 1.
            let s = _mm256_sub_ps(ax, splat(1.0));
            let erfc = _mm256_sub_ps(
                splat(1.0 - ERX),
                _mm256_div_ps(horner(s, &PA), horner1(s, &QA)),
            );
            let mut big = _mm256_sub_ps(splat(1.0), erfc);
            if _mm256_movemask_ps(in_tail) != 0 {
                // 1.25 ≤ |x| < 6: erfc = e^(−z² − 0.5625) · e^((z − |x|)(z + |x|) + R/S) / |x|,
                // z = |x| with its low 13 bits cleared, R and S rational in 1/x².
                let axc = _mm256_min_ps(ax, splat(6.0));
                let s = _mm256_div_ps(splat(1.0), _mm256_mul_ps(axc, axc));
                let near = _mm256_cmp_ps::<_CMP_LT_OQ>(
                    axc,
                    splat(f32::from_bits(0x4036_db6d)), /* 1/0.35 */
                );
                let mut r = _mm256_setzero_ps();
                let mut q = _mm256_setzero_ps();
                for i in (0..8).rev() {
                    r = _mm256_fmadd_ps(r, s, select(near, splat(RA[i]), splat(RB[i])));
                    q = _mm256_fmadd_ps(q, s, select(near, splat(SA[i]), splat(SB[i])));
                }
                let q = _mm256_fmadd_ps(q, s, splat(1.0));
                let zt = _mm256_and_ps(
                    axc,
                    _mm256_castsi256_ps(_mm256_set1_epi32(0xffff_e000u32 as i32)),
                );
                let e1 = exp(_mm256_sub_ps(
                    _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(zt, zt)),
                    splat(0.5625),
                ));
                let arg = _mm256_add_ps(
                    _mm256_mul_ps(_mm256_sub_ps(zt, axc), _mm256_add_ps(zt, axc)),
                    _mm256_div_ps(r, q),
                );
                let erfc = _mm256_div_ps(_mm256_mul_ps(e1, exp(arg)), axc);
                let tail = _mm256_sub_ps(splat(1.0), erfc);
                let tail = select(
                    _mm256_cmp_ps::<_CMP_GE_OQ>(ax, splat(6.0)),
                    splat(1.0),
                    tail,
                );
                big = select(in_tail, tail, big);
            }
            y = select(in_mid, _mm256_or_ps(big, sign), y);
        }
        // NaN stays NaN (the small piece already gives NaN); ±∞ gives ±1 above.
        y
    }

    #[inline(always)]
    unsafe fn gelu8(x: __m256) -> __m256 {
        let e = erf(_mm256_mul_ps(x, splat(FRAC_1_SQRT_2)));
        _mm256_mul_ps(_mm256_mul_ps(splat(0.5), x), _mm256_add_ps(splat(1.0), e))
    }

    /// gelu'(x) given e = erf(x/√2): Φ(x) + x·φ(x). The density's exponent −x²/2 is
    /// never positive, so [`exp_nonpositive`] gives [`exp`]'s bits (a NaN x makes the
    /// sum NaN either way).
    #[inline(always)]
    unsafe fn derivative8(x: __m256, e: __m256) -> __m256 {
        let cdf = _mm256_mul_ps(splat(0.5), _mm256_add_ps(splat(1.0), e));
        let pdf = exp_nonpositive(_mm256_mul_ps(_mm256_mul_ps(splat(-0.5), x), x));
        _mm256_add_ps(
            cdf,
            _mm256_mul_ps(_mm256_mul_ps(x, splat(INV_SQRT_2PI)), pdf),
        )
    }

    /// g · gelu'(x) as the backward computed it before the derivative was saved, with
    /// the general [`exp`]: the tests' reference.
    #[cfg(test)]
    #[inline(always)]
    unsafe fn gelu_grad8(g: __m256, x: __m256) -> __m256 {
        let e = erf(_mm256_mul_ps(x, splat(FRAC_1_SQRT_2)));
        let cdf = _mm256_mul_ps(splat(0.5), _mm256_add_ps(splat(1.0), e));
        let pdf = exp(_mm256_mul_ps(_mm256_mul_ps(splat(-0.5), x), x));
        let d = _mm256_add_ps(
            cdf,
            _mm256_mul_ps(_mm256_mul_ps(x, splat(INV_SQRT_2PI)), pdf),
        );
        _mm256_mul_ps(g, d)
    }

    /// (gelu(x), gelu'(x)) from one erf.
    #[inline(always)]
    unsafe fn gelu_and_derivative8(x: __m256) -> (__m256, __m256) {
        let e = erf(_mm256_mul_ps(x, splat(FRAC_1_SQRT_2)));
        let y = _mm256_mul_ps(_mm256_mul_ps(splat(0.5), x), _mm256_add_ps(splat(1.0), e));
        (y, derivative8(x, e))
    }

    /// Loads up to eight floats, padding with zeros.
    #[inline(always)]
    unsafe fn load_tail(x: &[f32]) -> __m256 {
        let mut buf = [0.0f32; 8];
        buf[..x.len()].copy_from_slice(x);
        _mm256_loadu_ps(buf.as_ptr())
    }

    #[inline(always)]
    unsafe fn store_tail(v: __m256, out: &mut [f32]) {
        let mut buf = [0.0f32; 8];
        _mm256_storeu_ps(buf.as_mut_ptr(), v);
        let n = out.len();
        out.copy_from_slice(&buf[..n]);
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward(x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len());
        let full = n / 8 * 8;
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ both lengths.
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), gelu8(v));
        }
        if full < n {
            store_tail(gelu8(load_tail(&x[full..n])), &mut out[full..n]);
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_and_derivative(x: &[f32], out: &mut [f32], d: &mut [f32]) {
        let n = x.len().min(out.len()).min(d.len());
        let full = n / 8 * 8;
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ all three lengths.
            let (y, dv) = gelu_and_derivative8(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            _mm256_storeu_ps(d.as_mut_ptr().add(i), dv);
        }
        if full < n {
            let (y, dv) = gelu_and_derivative8(load_tail(&x[full..n]));
            store_tail(y, &mut out[full..n]);
            store_tail(dv, &mut d[full..n]);
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[cfg(test)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn backward(g: &[f32], x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len()).min(g.len());
        let full = n / 8 * 8;
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ all three lengths.
            let gv = _mm256_loadu_ps(g.as_ptr().add(i));
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), gelu_grad8(gv, v));
        }
        if full < n {
            let d = gelu_grad8(load_tail(&g[full..n]), load_tail(&x[full..n]));
            store_tail(d, &mut out[full..n]);
        }
    }

    /// eˣ of each element, in place.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_in_place(x: &mut [f32]) {
        let n = x.len();
        let full = n / 8 * 8;
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ x.len().
            let p = x.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, exp(_mm256_loadu_ps(p)));
        }
        if full < n {
            let v = exp(load_tail(&x[full..]));
            store_tail(v, &mut x[full..]);
        }
    }

    /// erf of each element (for the tests).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[cfg(test)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn erf_slice(x: &[f32], out: &mut [f32]) {
        for (xs, os) in x.chunks(8).zip(out.chunks_mut(8)) {
            store_tail(erf(load_tail(xs)), os);
        }
    }

    /// eˣ of each element (for the tests).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[cfg(test)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_slice(x: &[f32], out: &mut [f32]) {
        for (xs, os) in x.chunks(8).zip(out.chunks_mut(8)) {
            store_tail(exp(load_tail(xs)), os);
        }
    }

    /// [`exp_nonpositive`] of each element (for the tests).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[cfg(test)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_nonpositive_slice(x: &[f32], out: &mut [f32]) {
        for (xs, os) in x.chunks(8).zip(out.chunks_mut(8)) {
            store_tail(exp_nonpositive(load_tail(xs)), os);
        }
    }
}

#[cfg(test)]
#[path = "vecmath_tests.rs"]
mod tests;
