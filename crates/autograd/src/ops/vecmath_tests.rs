//! Tests of `vecmath`: the 8-lane erf and exp against `libm::erff` and `f32::exp` over
//! dense sweeps, and the two GELU paths against each other.

use super::*;

/// Distance in units in the last place between two finite floats of the same sign
/// (or either side of zero, counted through it).
fn ulps(a: f32, b: f32) -> u32 {
    let key = |v: f32| {
        let bits = v.to_bits() as i32;
        if bits < 0 {
            i32::MIN.wrapping_sub(bits) as i64
        } else {
            bits as i64
        }
    };
    (key(a) - key(b)).unsigned_abs() as u32
}

/// Inputs across every piece of erf: a dense linear sweep of [−7, 7], every piece
/// boundary with its neighbours, and tiny values down to subnormals.
fn sweep() -> Vec<f32> {
    let mut xs: Vec<f32> = (0..=280_000).map(|i| -7.0 + i as f32 * 5e-5).collect();
    for b in [
        0.843_75f32,
        1.25,
        f32::from_bits(0x4036_db6d),
        6.0,
        1.0,
        0.0,
    ] {
        let mut v = b;
        for _ in 0..16 {
            xs.extend([v, -v]);
            v = f32::from_bits(v.to_bits() + 1);
        }
    }
    let mut v = 1e-30f32;
    while v < 1.0 {
        xs.extend([v, -v]);
        v *= 1.37;
    }
    xs.extend([
        f32::MIN_POSITIVE / 4.0,
        30.0,
        -30.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    xs
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vector_erf_is_within_1_ulp_of_libm() {
    if !crate::cpu::has_avx2_fma() {
        return;
    }
    let xs = sweep();
    let mut got = vec![0.0; xs.len()];
    // SAFETY: AVX2 and FMA were detected just above.
    unsafe { avx2::erf_slice(&xs, &mut got) };
    let mut worst = (0, 0.0f32);
    for (&x, &y) in xs.iter().zip(&got) {
        let d = ulps(y, libm::erff(x));
        if d > worst.0 {
            worst = (d, x);
        }
    }
    assert!(worst.0 <= 1, "{} ulp at x = {}", worst.0, worst.1);
    let mut nan = [0.0; 1];
    // SAFETY: as above.
    unsafe { avx2::erf_slice(&[f32::NAN], &mut nan) };
    assert!(nan[0].is_nan());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vector_exp_is_within_2_ulp_of_std() {
    if !crate::cpu::has_avx2_fma() {
        return;
    }
    let xs: Vec<f32> = (0..=200_000).map(|i| -86.6 + i as f32 * 8.76e-4).collect();
    let mut got = vec![0.0; xs.len()];
    // SAFETY: AVX2 and FMA were detected just above.
    unsafe { avx2::exp_slice(&xs, &mut got) };
    for (&x, &y) in xs.iter().zip(&got) {
        assert!(ulps(y, x.exp()) <= 2, "exp({x}) = {y}, std {}", x.exp());
    }
    // The in-place form used by attention gives the same bits, tail included.
    let mut inplace = xs[..13].to_vec();
    exp_in_place(&mut inplace);
    for (a, b) in inplace.iter().zip(&got[..13]) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    let specials = [-86.7, 100.0, f32::NAN, f32::NEG_INFINITY];
    let mut out = [1.0; 4];
    // SAFETY: as above.
    unsafe { avx2::exp_slice(&specials, &mut out) };
    assert_eq!(out[0], 0.0);
    assert_eq!(out[1], f32::INFINITY);
    assert!(out[2].is_nan());
    assert_eq!(out[3], 0.0);
}

#[test]
fn both_paths_agree_on_gelu_and_its_derivative() {
    // 37 elements: four full vectors and a padded tail.
    let xs: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.31).collect();
    let gs: Vec<f32> = (0..37).map(|i| 1.0 + (i % 5) as f32 * 0.25).collect();
    let (mut y_s, mut y_d) = (vec![0.0; 37], vec![0.0; 37]);
    let (mut d_s, mut d_d) = (vec![0.0; 37], vec![0.0; 37]);
    forward_scalar(&xs, &mut y_s);
    backward_scalar(&gs, &xs, &mut d_s);
    gelu_forward(&xs, &mut y_d);
    gelu_backward(&gs, &xs, &mut d_d);
    for i in 0..37 {
        let tol = |v: f32| 4e-7 * v.abs().max(1e-3);
        assert!(
            (y_s[i] - y_d[i]).abs() <= tol(y_s[i]),
            "gelu({}): {} vs {}",
            xs[i],
            y_s[i],
            y_d[i]
        );
        assert!(
            (d_s[i] - d_d[i]).abs() <= tol(d_s[i]),
            "gelu'({}): {} vs {}",
            xs[i],
            d_s[i],
            d_d[i]
        );
    }
    // An element's value does not depend on its position (tail or full vector).
    let mut one = [0.0];
    gelu_forward(&xs[36..], &mut one);
    assert_eq!(one[0].to_bits(), y_d[36].to_bits());
    gelu_forward(&xs[3..4], &mut one);
    assert_eq!(one[0].to_bits(), y_d[3].to_bits());
}

/// `y` matches `y_ref` and `g·d` matches the backward's `dx_ref`, bit for bit.
fn same_bits(xs: &[f32], gs: &[f32], (y, d): (&[f32], &[f32]), (y_ref, dx_ref): (&[f32], &[f32])) {
    for i in 0..xs.len() {
        assert_eq!(y[i].to_bits(), y_ref[i].to_bits(), "gelu({})", xs[i]);
        assert_eq!(
            (gs[i] * d[i]).to_bits(),
            dx_ref[i].to_bits(),
            "gelu'({})",
            xs[i]
        );
    }
}

#[test]
fn the_saved_derivative_gives_the_backward_s_bits() {
    // Values in every erf piece (small, mid, tail, beyond 6), a padded tail of 3.
    let xs: Vec<f32> = (0..59).map(|i| (i as f32 - 29.0) * 0.23).collect();
    let gs: Vec<f32> = (0..59).map(|i| 0.5 + (i % 7) as f32 * 0.3).collect();
    let (mut y, mut d) = (vec![0.0; 59], vec![0.0; 59]);
    let (mut y_ref, mut dx_ref) = (vec![0.0; 59], vec![0.0; 59]);
    gelu_forward_and_derivative(&xs, &mut y, &mut d);
    gelu_forward(&xs, &mut y_ref);
    gelu_backward(&gs, &xs, &mut dx_ref);
    same_bits(&xs, &gs, (&y, &d), (&y_ref, &dx_ref));
    // The portable path, against its own reference.
    forward_and_derivative_scalar(&xs, &mut y, &mut d);
    forward_scalar(&xs, &mut y_ref);
    backward_scalar(&gs, &xs, &mut dx_ref);
    same_bits(&xs, &gs, (&y, &d), (&y_ref, &dx_ref));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_nonpositive_exp_has_the_general_exp_s_bits() {
    if !crate::cpu::has_avx2_fma() {
        return;
    }
    // A dense sweep of [−100, 0] (past the flush to 0), ±0 and −∞.
    let mut xs: Vec<f32> = (0..=400_000).map(|i| -(i as f32) * 2.5e-4).collect();
    xs.extend([
        0.0,
        -0.0,
        f32::NEG_INFINITY,
        -86.643_4,
        -86.643_3,
        -86.643_5,
    ]);
    let (mut want, mut got) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
    // SAFETY: AVX2 and FMA were detected just above.
    unsafe {
        avx2::exp_slice(&xs, &mut want);
        avx2::exp_nonpositive_slice(&xs, &mut got);
    }
    for ((x, w), g) in xs.iter().zip(&want).zip(&got) {
        assert_eq!(w.to_bits(), g.to_bits(), "exp({x})");
    }
}
