//! Noise corruptions, in float64 as the reference computes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::draws::Draws;
use crate::image::{truncate_u8, unit_to_scaled, RgbImage};
use multiversion::multiversion;

/// x + N(0, σ)
pub fn gaussian(image: &RgbImage, sigma: f64, draws: &mut dyn Draws) -> RgbImage {
    let noise = draws.normal(0.0, sigma, image.as_bytes().len());
    let out = add_noise(image.as_bytes(), &noise, false);
    RgbImage::new(image.width(), image.height(), out).expect("same size")
}

/// `x + n` (or `x + x·n` when `multiplicative`) on the 0–1 scale, clipped, through `np.uint8`.
#[multiversion(targets = "simd")]
fn add_noise(bytes: &[u8], noise: &[f64], multiplicative: bool) -> Vec<u8> {
    let unit = |b: u8| f64::from(b) / 255.0;
    if multiplicative {
        let values = bytes.iter().zip(noise).map(|(&b, n)| unit(b) + unit(b) * n);
        values.map(|v| truncate_u8(unit_to_scaled(v))).collect()
    } else {
        let values = bytes.iter().zip(noise).map(|(&b, n)| unit(b) + n);
        values.map(|v| truncate_u8(unit_to_scaled(v))).collect()
    }
}

/// Poisson(x·c) / c. The 256 possible rates of an 8-bit image get their CDF tabulated once, by
/// the same summation as [`Draws::poisson`], so a lookup returns exactly what the summation would.
pub fn shot(image: &RgbImage, photons: f64, draws: &mut dyn Draws) -> RgbImage {
    let tables = poisson_tables(photons);
    let uniforms = draws.uniforms(image.as_bytes().len());
    let out: Vec<f64> = image
        .as_bytes()
        .iter()
        .zip(uniforms)
        .map(|(&v, u)| unit_to_scaled(tables[v as usize].sample(u) as f64 / photons))
        .collect();
    RgbImage::from_scaled_f64(image.width(), image.height(), out)
}

/// The CDF of one Poisson rate with a guide table (Chen & Asau): `guide[b]` is the first index
/// whose CDF reaches b/GUIDE, so a lookup scans a step or two instead of bisecting.
struct PoissonTable {
    cdf: Vec<f64>,
    guide: Vec<usize>,
}

impl PoissonTable {
    const GUIDE: usize = 1024;

    fn new(lambda: f64) -> Self {
        let cdf = poisson_cdf(lambda);
        let guide = (0..Self::GUIDE)
            .map(|b| cdf.partition_point(|&c| c < b as f64 / Self::GUIDE as f64))
            .collect();
        Self { cdf, guide }
    }

    /// The first k with CDF(k) ≥ u (the last entry when the summation stopped short).
    fn sample(&self, u: f64) -> usize {
        let mut k = self.guide[((u * Self::GUIDE as f64) as usize).min(Self::GUIDE - 1)];
        while k < self.cdf.len() && self.cdf[k] < u {
            k += 1;
        }
        k.min(self.cdf.len() - 1)
    }
}

/// CDF tables of Poisson(v/255 · photons), v = 0..=255, cached per photon count.
fn poisson_tables(photons: f64) -> Arc<Vec<PoissonTable>> {
    type Tables = Arc<Vec<PoissonTable>>;
    static CACHE: OnceLock<Mutex<HashMap<u64, Tables>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().expect("cache poisoned");
    map.entry(photons.to_bits())
        .or_insert_with(|| {
            Arc::new(
                (0..=255u32)
                    .map(|v| PoissonTable::new(v as f64 / 255.0 * photons))
                    .collect(),
            )
        })
        .clone()
}

/// The partial sums [`Draws::poisson`] compares the uniform against, up to where the
/// summation stops (the probability underflows, or 100 000 terms).
fn poisson_cdf(lambda: f64) -> Vec<f64> {
    let mut p = (-lambda).exp();
    let mut cdf = vec![p];
    let mut total = p;
    for k in 1..=100_000u64 {
        p *= lambda / k as f64;
        total += p;
        cdf.push(total);
        if p == 0.0 {
            break; // the summation stops here whatever the uniform
        }
    }
    cdf
}

/// Salt and pepper as skimage's `random_noise(mode='s&p')`: every value is flipped with
/// probability `amount` (u ≤ amount), then salted (1) if a second uniform ≤ 0.5, else peppered (0).
pub fn impulse(image: &RgbImage, amount: f64, draws: &mut dyn Draws) -> RgbImage {
    let x = image.unit_f64();
    let flipped: Vec<bool> = draws
        .uniforms(x.len())
        .iter()
        .map(|&u| u <= amount)
        .collect();
    let salted: Vec<bool> = draws.uniforms(x.len()).iter().map(|&u| u <= 0.5).collect();
    let out = x.iter().enumerate().map(|(i, &v)| {
        let value = match (flipped[i], salted[i]) {
            (true, true) => 1.0,
            (true, false) => 0.0,
            _ => v,
        };
        unit_to_scaled(value)
    });
    RgbImage::from_scaled_f64(image.width(), image.height(), out)
}

/// x + x·N(0, σ)
pub fn speckle(image: &RgbImage, sigma: f64, draws: &mut dyn Draws) -> RgbImage {
    let noise = draws.normal(0.0, sigma, image.as_bytes().len());
    let out = add_noise(image.as_bytes(), &noise, true);
    RgbImage::new(image.width(), image.height(), out).expect("same size")
}
