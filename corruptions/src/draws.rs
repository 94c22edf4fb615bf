//! Random draws, separated from the transforms.
//!
//! [`DrawStream`] is counter-based (splitmix64 of seed + k·φ), so the k-th draw of a stream is
//! one cheap function of (seed, k). The fixture generator (`tools/make_corruption_fixtures.py`)
//! implements the same stream in numpy and feeds it to the reference generators in place of
//! `np.random`, which is how the golden tests compare outputs for identical random fields.

use multiversion::multiversion;
use wide::f64x4;

/// Where corruptions take their randomness from. The conversions are part of the contract:
/// the reference side converts the same unit draws the same way.
pub trait Draws {
    /// Next uniform in [0, 1).
    fn uniform(&mut self) -> f64;

    /// `n` uniforms in [low, high): `low + (high − low)·u`.
    fn uniform_range(&mut self, low: f64, high: f64, n: usize) -> Vec<f64> {
        let mut values = self.uniforms(n);
        scale_uniforms(&mut values, low, high);
        values
    }

    /// `n` normal values `loc + scale·z`, z from Box–Muller: uniforms 2i and 2i+1 give
    /// r = √(−2 ln(1 − u₁)) and θ = 2π·u₂, and with them z₂ᵢ = r·cos θ and z₂ᵢ₊₁ = r·sin θ
    /// (an odd `n` still draws the whole last pair).
    fn normal(&mut self, loc: f64, scale: f64, n: usize) -> Vec<f64> {
        let mut values = Vec::with_capacity(n + 1);
        for _ in 0..n.div_ceil(2) {
            let u1 = self.uniform();
            let u2 = self.uniform();
            let r = (-2.0 * (1.0 - u1).ln()).sqrt();
            let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
            values.push(loc + scale * (r * cos));
            values.push(loc + scale * (r * sin));
        }
        values.truncate(n);
        values
    }

    /// The next `n` uniforms in [0, 1), in one call (no dynamic dispatch per value).
    fn uniforms(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// An integer uniform in [low, high): `low + ⌊u·(high − low)⌋`.
    fn integer(&mut self, low: i64, high: i64) -> i64 {
        integer_from(self.uniform(), low, high)
    }

    /// `n` integers as [`Draws::integer`] draws them, in one call.
    fn integers(&mut self, low: i64, high: i64, n: usize) -> Vec<i64> {
        integers_from(&self.uniforms(n), low, high)
    }

    /// Poisson(λ) by inverse-CDF summation from one uniform.
    fn poisson(&mut self, lambda: f64) -> f64 {
        let u = self.uniform();
        let mut k = 0u64;
        let mut p = (-lambda).exp();
        let mut cdf = p;
        while u > cdf && k < 100_000 {
            k += 1;
            p *= lambda / k as f64;
            cdf += p;
            if p == 0.0 && cdf < u {
                break; // numerically exhausted tail
            }
        }
        k as f64
    }
}

/// The integer in [low, high) that the uniform `u` stands for.
#[inline(always)]
fn integer_from(u: f64, low: i64, high: i64) -> i64 {
    low + (u * (high - low) as f64).floor() as i64
}

// The two maps below are the scalar formulas; compiled for SIMD targets the floor becomes one
// instruction instead of a libm call.
#[multiversion(targets = "simd")]
fn integers_from(uniforms: &[f64], low: i64, high: i64) -> Vec<i64> {
    uniforms
        .iter()
        .map(|&u| integer_from(u, low, high))
        .collect()
}

#[multiversion(targets = "simd")]
fn scale_uniforms(values: &mut [f64], low: f64, high: f64) {
    for v in values {
        *v = low + (high - low) * *v;
    }
}

/// A counter-based stream: draw k is `mix(seed + (k+1)·φ)`, φ = 0x9E3779B97F4A7C15.
#[derive(Clone, Debug)]
pub struct DrawStream {
    seed: u64,
    counter: u64,
}

impl DrawStream {
    const PHI: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    /// splitmix64's output function.
    #[inline(always)]
    pub fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// How many uniforms have been drawn.
    pub fn position(&self) -> u64 {
        self.counter
    }
}

impl Draws for DrawStream {
    fn uniform(&mut self) -> f64 {
        self.counter += 1;
        unit_from_bits(Self::mix(
            self.seed.wrapping_add(self.counter.wrapping_mul(Self::PHI)),
        ))
    }

    /// The same values as `n` calls of [`Draws::uniform`], computed in SIMD lanes.
    fn uniforms(&mut self, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n];
        fill_uniforms(self.seed, self.counter, &mut out);
        self.counter += n as u64;
        out
    }

    /// The Box–Muller transform of [`Draws::normal`] on four pairs at a time. The vector `ln`
    /// and `sin_cos` (cephes / Agner Fog polynomials) agree with libm to a few ulps, so the
    /// values are those of the scalar formula up to rounding, from the same uniforms.
    fn normal(&mut self, loc: f64, scale: f64, n: usize) -> Vec<f64> {
        let mut values = self.uniforms(2 * n.div_ceil(2));
        let done = crate::normal_avx2::box_muller_pairs(&mut values, loc, scale);
        box_muller_in_place(&mut values[done..], loc, scale);
        values.truncate(n);
        values
    }
}

/// A uniform in [0, 1) from the top 53 bits.
#[inline(always)]
fn unit_from_bits(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws `counter + 1 ..= counter + out.len()` of the stream of `seed`.
#[multiversion(targets = "simd")]
fn fill_uniforms(seed: u64, counter: u64, out: &mut [f64]) {
    for (k, v) in (counter + 1..).zip(out.iter_mut()) {
        *v = unit_from_bits(DrawStream::mix(
            seed.wrapping_add(k.wrapping_mul(DrawStream::PHI)),
        ));
    }
}

/// Replaces each pair of uniforms (u₁, u₂) by `loc + scale·(r cos θ, r sin θ)`.
#[multiversion(targets = "simd")]
pub(crate) fn box_muller_in_place(values: &mut [f64], loc: f64, scale: f64) {
    const LANES: usize = 4;
    let (loc, scale) = (f64x4::splat(loc), f64x4::splat(scale));
    for chunk in values.chunks_mut(2 * LANES) {
        let pairs = chunk.len() / 2;
        let (mut u1, mut u2) = ([0.5; LANES], [0.5; LANES]);
        for j in 0..pairs {
            u1[j] = chunk[2 * j];
            u2[j] = chunk[2 * j + 1];
        }
        let one = f64x4::splat(1.0);
        let r = (f64x4::splat(-2.0) * (one - f64x4::from(u1)).ln()).sqrt();
        let (sin, cos) = (f64x4::splat(std::f64::consts::TAU) * f64x4::from(u2)).sin_cos();
        let first = (loc + scale * (r * cos)).to_array();
        let second = (loc + scale * (r * sin)).to_array();
        for j in 0..pairs {
            chunk[2 * j] = first[j];
            chunk[2 * j + 1] = second[j];
        }
    }
}
