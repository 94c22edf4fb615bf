//! Spatter: water drops (mode 0) or mud (mode 1) from a smoothed, thresholded noise layer.

use crate::draws::Draws;
use crate::filters::{gaussian_f32, gaussian_f64, Border};
use crate::image::{truncate_u8, RgbImage};
use crate::opencv::{
    box3_f32, box3_u8, canny, distance_transform_l2_5, equalize_hist, filter2d_u8,
};
use multiversion::multiversion;

pub fn spatter(
    image: &RgbImage,
    p: (f64, f64, f64, f64, f64, u8),
    draws: &mut dyn Draws,
) -> RgbImage {
    let (loc, scale, sigma, threshold, intensity, mode) = p;
    let (w, h) = (image.width(), image.height());
    let x = image.unit_f32();
    let noise = draws.normal(loc, scale, h * w);
    let mut liquid = gaussian_f64(&noise, [h, w, 1], sigma, 4.0, Border::Nearest);
    liquid
        .iter_mut()
        .filter(|v| **v < threshold)
        .for_each(|v| *v = 0.0);
    let out = if mode == 0 {
        water(&x, &liquid, h, w, intensity)
    } else {
        mud(&x, &liquid, h, w, threshold, intensity)
    };
    RgbImage::new(w, h, out).expect("same size")
}

/// Edges of the liquid layer → distance → emboss → drops tinted pale turquoise (175, 238, 238).
fn water(x: &[f32], liquid: &[f64], h: usize, w: usize, intensity: f64) -> Vec<u8> {
    // (liquid · 255).astype(uint8): a C cast, wrapping outside 0..255
    let liquid_u8: Vec<u8> = liquid.iter().map(|v| (v * 255.0) as i64 as u8).collect();
    let edges = canny(&liquid_u8, h, w, 50, 150);
    let inverted: Vec<u8> = edges.iter().map(|e| 255 - e).collect();
    let dist: Vec<f32> = distance_transform_l2_5(&inverted, h, w)
        .into_iter()
        .map(|d| d.min(20.0))
        .collect();
    let dist: Vec<u8> = box3_f32(&dist, h, w).into_iter().map(|v| v as u8).collect();
    let dist = equalize_hist(&dist);
    let dist = filter2d_u8(&dist, h, w, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]);
    let dist = box3_u8(&dist, h, w);
    let m: Vec<f32> = liquid_u8
        .iter()
        .zip(&dist)
        .map(|(&l, &d)| l as f32 * d as f32)
        .collect();
    let peak = m.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let tint = [175.0f32 / 255.0, 238.0 / 255.0, 238.0 / 255.0];
    tint_drops(x, &m, peak, intensity as f32, tint)
}

/// `x + (m / peak) · intensity · tint`, clipped, on the 0–255 scale, through `np.uint8`.
#[multiversion(targets = "simd")]
fn tint_drops(x: &[f32], m: &[f32], peak: f32, intensity: f32, tint: [f32; 3]) -> Vec<u8> {
    let mut out = vec![0u8; x.len()];
    for ((o, p), &mi) in out.chunks_exact_mut(3).zip(x.chunks_exact(3)).zip(m) {
        let scaled = (mi / peak) * intensity;
        for c in 0..3 {
            let v = (p[c] + scaled * tint[c]).clamp(0.0, 1.0) * 255.0;
            o[c] = truncate_u8(f64::from(v));
        }
    }
    out
}

/// Mud (63, 42, 20) where the smoothed mask exceeds 0.8.
fn mud(x: &[f32], liquid: &[f64], h: usize, w: usize, threshold: f64, mud_sigma: f64) -> Vec<u8> {
    let mask: Vec<f32> = liquid
        .iter()
        .map(|&v| if v > threshold { 1.0 } else { 0.0 })
        .collect();
    let mut m = gaussian_f32(&mask, [h, w, 1], mud_sigma, 4.0, Border::Nearest);
    m.iter_mut().filter(|v| **v < 0.8).for_each(|v| *v = 0.0);
    paint_mud(x, &m, [63.0f32 / 255.0, 42.0 / 255.0, 20.0 / 255.0])
}

/// `x · (1 − m) + colour · m`, clipped, on the 0–255 scale, through `np.uint8`.
#[multiversion(targets = "simd")]
fn paint_mud(x: &[f32], m: &[f32], colour: [f32; 3]) -> Vec<u8> {
    let mut out = vec![0u8; x.len()];
    for ((o, p), &mi) in out.chunks_exact_mut(3).zip(x.chunks_exact(3)).zip(m) {
        for c in 0..3 {
            let v = (p[c] * (1.0 - mi) + colour[c] * mi).clamp(0.0, 1.0) * 255.0;
            o[c] = truncate_u8(f64::from(v));
        }
    }
    out
}
