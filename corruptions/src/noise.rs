//! Noise corruptions, in float64 as the reference computes them.

use crate::draws::Draws;
use crate::image::{unit_to_scaled, RgbImage};

/// x + N(0, σ)
pub fn gaussian(image: &RgbImage, sigma: f64, draws: &mut dyn Draws) -> RgbImage {
    let x = image.unit_f64();
    let noise = draws.normal(0.0, sigma, x.len());
    let out = x.iter().zip(noise).map(|(v, n)| unit_to_scaled(v + n));
    RgbImage::from_scaled_f64(image.width(), image.height(), out)
}

/// Poisson(x·c) / c
pub fn shot(image: &RgbImage, photons: f64, draws: &mut dyn Draws) -> RgbImage {
    let x = image.unit_f64();
    let out: Vec<f64> = x
        .iter()
        .map(|v| unit_to_scaled(draws.poisson(v * photons) / photons))
        .collect();
    RgbImage::from_scaled_f64(image.width(), image.height(), out)
}

/// Salt and pepper as skimage's `random_noise(mode='s&p')`: every value is flipped with
/// probability `amount` (u ≤ amount), then salted (1) if a second uniform ≤ 0.5, else peppered (0).
pub fn impulse(image: &RgbImage, amount: f64, draws: &mut dyn Draws) -> RgbImage {
    let x = image.unit_f64();
    let flipped: Vec<bool> = (0..x.len()).map(|_| draws.uniform() <= amount).collect();
    let salted: Vec<bool> = (0..x.len()).map(|_| draws.uniform() <= 0.5).collect();
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
    let x = image.unit_f64();
    let noise = draws.normal(0.0, sigma, x.len());
    let out = x.iter().zip(noise).map(|(v, n)| unit_to_scaled(v + v * n));
    RgbImage::from_scaled_f64(image.width(), image.height(), out)
}
