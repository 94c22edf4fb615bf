//! Box–Muller on 256-bit registers, operation for operation what `wide`'s portable `f64x4`
//! computes (its `ln` and `sin_cos`, built without FMA), so the values are bit for bit those of
//! [`crate::draws`]'s portable path.
//!
//! Why it exists: `wide` picks its representation when it is compiled, and without a global
//! `target-feature=+avx` an `f64x4` is two SSE halves even inside AVX2-compiled functions. Those
//! made the normal draws about 60 % of speckle and Gaussian noise.

// The constants are wide's (cephes' and vectorclass') digits as written there.
#![allow(clippy::excessive_precision, clippy::unreadable_literal)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Transforms the leading whole groups of four pairs (eight values) in place and returns how many
/// values it did: all but the last `len % 8`, or none where the CPU lacks AVX2.
pub(crate) fn box_muller_pairs(values: &mut [f64], loc: f64, scale: f64) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked just above.
        return unsafe { box_muller_avx2(values, loc, scale) };
    }
    let _ = (values, loc, scale);
    0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn box_muller_avx2(values: &mut [f64], loc: f64, scale: f64) -> usize {
    let (loc, scale) = (_mm256_set1_pd(loc), _mm256_set1_pd(scale));
    let mut chunks = values.chunks_exact_mut(8);
    let mut done = 0;
    for chunk in &mut chunks {
        let p = chunk.as_mut_ptr();
        let (low, high) = (_mm256_loadu_pd(p), _mm256_loadu_pd(p.add(4)));
        // Lanes hold pairs 0, 2, 1, 3: elementwise, so the order only has to be undone on the way out.
        let u1 = _mm256_unpacklo_pd(low, high);
        let u2 = _mm256_unpackhi_pd(low, high);
        let one = _mm256_set1_pd(1.0);
        let r = _mm256_sqrt_pd(_mm256_mul_pd(
            _mm256_set1_pd(-2.0),
            ln(_mm256_sub_pd(one, u1)),
        ));
        let (sin, cos) = sin_cos(_mm256_mul_pd(_mm256_set1_pd(std::f64::consts::TAU), u2));
        let first = _mm256_add_pd(loc, _mm256_mul_pd(scale, _mm256_mul_pd(r, cos)));
        let second = _mm256_add_pd(loc, _mm256_mul_pd(scale, _mm256_mul_pd(r, sin)));
        _mm256_storeu_pd(p, _mm256_unpacklo_pd(first, second));
        _mm256_storeu_pd(p.add(4), _mm256_unpackhi_pd(first, second));
        done += 8;
    }
    done
}

/// `a·b + c` as two roundings (wide's `mul_add` without FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mul_add(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
    _mm256_add_pd(_mm256_mul_pd(a, b), c)
}

/// `c − a·b` (wide's `mul_neg_add` without FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mul_neg_add(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
    _mm256_sub_pd(c, _mm256_mul_pd(a, b))
}

/// wide's `polynomial_5!`: c₀ + … + c₅x⁵ grouped as (c₃x + c₂)x² + ((c₅x + c₄)x⁴ + (c₁x + c₀)).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn polynomial_5(x: __m256d, c: [f64; 6]) -> __m256d {
    let k = |i: usize| _mm256_set1_pd(c[i]);
    let x2 = _mm256_mul_pd(x, x);
    let x4 = _mm256_mul_pd(x2, x2);
    let inner = mul_add(mul_add(k(5), x, k(4)), x4, mul_add(k(1), x, k(0)));
    mul_add(mul_add(k(3), x, k(2)), x2, inner)
}

/// The natural logarithm of values in [2⁻⁵³, 1] (`1 − u` for a uniform u), cephes' rational
/// approximation as wide writes it. Its overflow and underflow fix-ups never apply to that range.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ln(v: __m256d) -> __m256d {
    const P: [f64; 6] = [
        7.70838733755885391666E0,
        1.79368678507819816313E1,
        1.44989225341610930846E1,
        4.70579119878881725854E0,
        4.97494994976747001425E-1,
        1.01875663804580931796E-4,
    ];
    const Q: [f64; 5] = [
        2.31251620126765340583E1,
        7.11544750618563894466E1,
        8.29875266912776603211E1,
        4.52279145837532221105E1,
        1.12873587189167450590E1,
    ];
    let k = _mm256_set1_pd;
    let bits = _mm256_castpd_si256(v);
    // The mantissa in [0.5, 1) and the exponent of the value written as m·2^(e+1).
    let fraction = _mm256_castsi256_pd(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi64x(0x000F_FFFF_FFFF_FFFF)),
        _mm256_set1_epi64x(0x3FE0_0000_0000_0000),
    ));
    let pow2_52 = 4_503_599_627_370_496.0;
    let biased = _mm256_or_si256(
        _mm256_srli_epi64::<52>(bits),
        _mm256_castpd_si256(k(pow2_52)),
    );
    let e = _mm256_sub_pd(_mm256_castsi256_pd(biased), k(pow2_52 + 1023.0));
    let above = _mm256_cmp_pd::<_CMP_GT_OQ>(fraction, k(std::f64::consts::SQRT_2 * 0.5));
    let x = _mm256_blendv_pd(_mm256_add_pd(fraction, fraction), fraction, above);
    let fe = _mm256_blendv_pd(e, _mm256_add_pd(e, k(1.0)), above);
    let x = _mm256_sub_pd(x, k(1.0));
    let px = polynomial_5(x, P);
    let x2 = _mm256_mul_pd(x, x);
    let px = _mm256_mul_pd(_mm256_mul_pd(x2, x), px);
    // wide's `polynomial_5n!` (a monic quintic): x²(Q₃x + Q₂) + (x⁴(Q₄ + x) + (Q₁x + Q₀)).
    let x4 = _mm256_mul_pd(x2, x2);
    let qx = mul_add(
        x2,
        mul_add(x, k(Q[3]), k(Q[2])),
        mul_add(x4, _mm256_add_pd(k(Q[4]), x), mul_add(x, k(Q[1]), k(Q[0]))),
    );
    let res = _mm256_div_pd(px, qx);
    let res = mul_add(fe, k(-2.12194440e-4), res);
    let res = _mm256_add_pd(res, mul_neg_add(x2, k(0.5), x));
    mul_add(fe, k(0.693359375), res)
}

/// Sine and cosine of angles in [0, 2π) (Agner Fog's vectorclass polynomials as wide writes
/// them). The quadrant is at most 4, so wide's overflow fix-up never applies.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sin_cos(angle: __m256d) -> (__m256d, __m256d) {
    const SIN: [f64; 6] = [
        -1.66666666666666307295E-1,
        8.33333333332211858878E-3,
        -1.98412698295895385996E-4,
        2.75573136213857245213E-6,
        -2.50507477628578072866E-8,
        1.58962301576546568060E-10,
    ];
    const COS: [f64; 6] = [
        4.16666666666665929218E-2,
        -1.38888888888730564116E-3,
        2.48015872888517045348E-5,
        -2.75573141792967388112E-7,
        2.08757008419747316778E-9,
        -1.13585365213876817300E-11,
    ];
    let k = _mm256_set1_pd;
    let magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let xa = _mm256_and_pd(angle, magnitude);
    let y = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_pd(
        xa,
        k(2.0 / std::f64::consts::PI),
    ));
    let q = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(y));
    let x = mul_neg_add(y, k(7.853981554508209228515625E-1 * 2.0), xa);
    let x = mul_neg_add(y, k(7.94662735614792836714E-9 * 2.0), x);
    let x = mul_neg_add(y, k(3.06161699786838294307E-17 * 2.0), x);
    let x2 = _mm256_mul_pd(x, x);
    let s = mul_add(_mm256_mul_pd(x, x2), polynomial_5(x2, SIN), x);
    let c = mul_add(
        _mm256_mul_pd(x2, x2),
        polynomial_5(x2, COS),
        mul_neg_add(x2, k(0.5), k(1.0)),
    );
    let one = _mm256_set1_epi64x(1);
    let even = _mm256_castsi256_pd(_mm256_cmpeq_epi64(
        _mm256_and_si256(q, one),
        _mm256_setzero_si256(),
    ));
    let sign_bit = _mm256_set1_epi64x(i64::MIN);
    let sin_sign = _mm256_and_si256(
        _mm256_xor_si256(_mm256_slli_epi64::<62>(q), _mm256_castpd_si256(angle)),
        sign_bit,
    );
    let cos_sign = _mm256_slli_epi64::<62>(_mm256_and_si256(
        _mm256_add_epi64(q, one),
        _mm256_set1_epi64x(2),
    ));
    let sin = _mm256_xor_pd(_mm256_blendv_pd(c, s, even), _mm256_castsi256_pd(sin_sign));
    let cos = _mm256_xor_pd(_mm256_blendv_pd(s, c, even), _mm256_castsi256_pd(cos_sign));
    (sin, cos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draws::{box_muller_in_place, DrawStream, Draws};

    /// Uniforms from the stream, then the edges: u₁ = 0 and the largest u₁ below 1 (the log's
    /// ends), and angles on and next to the quadrant boundaries and the half-way ties.
    fn uniforms() -> Vec<f64> {
        let mut values = DrawStream::new(7).uniforms(1 << 17);
        let largest_below_one = 1.0 - f64::EPSILON / 2.0;
        for u2 in [
            0.0,
            0.125,
            0.25,
            0.375,
            0.5,
            0.625,
            0.75,
            0.875,
            largest_below_one,
        ] {
            for nudge in [-1, 0, 1] {
                let angle = f64::from_bits(u2.to_bits().saturating_add_signed(nudge));
                for u1 in [0.0, largest_below_one, 0.5] {
                    values.extend([u1, angle.clamp(0.0, largest_below_one)]);
                }
            }
        }
        values.truncate(values.len() / 8 * 8);
        values
    }

    #[test]
    fn equals_the_portable_lanes_bit_for_bit() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return; // nothing to compare on this CPU: the portable path runs alone
        }
        let input = uniforms();
        for (loc, scale) in [(0.0, 1.0), (0.3, 0.08)] {
            let (mut fast, mut portable) = (input.clone(), input.clone());
            assert_eq!(box_muller_pairs(&mut fast, loc, scale), input.len());
            box_muller_in_place(&mut portable, loc, scale);
            for (i, (a, b)) in fast.iter().zip(&portable).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "value {i}: {a} against {b}");
            }
        }
    }

    #[test]
    fn leaves_the_last_partial_group_to_the_caller() {
        let mut values = vec![0.25; 13];
        let done = box_muller_pairs(&mut values, 0.0, 1.0);
        assert!(done == 8 || done == 0);
        assert!(values[done..].iter().all(|&v| v == 0.25));
    }
}
