//! Blur corruptions.

use crate::draws::Draws;
use crate::filters::{add_clipped_zoom_rgb, filter2d_planes, gaussian_f64, Border};
use crate::image::{truncate_u8, unit_table, unit_to_scaled, RgbImage};
use crate::opencv::{gaussian_blur_cv, motion_blur_im};

/// skimage `gaussian(x / 255, σ, channel_axis=-1)` (mode 'nearest', truncate 4).
pub fn gaussian(image: &RgbImage, sigma: f64) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let blurred = gaussian_f64(&image.unit_f64(), [h, w, 3], sigma, 4.0, Border::Nearest);
    RgbImage::from_unit_f64(w, h, &blurred)
}

/// The reference's `disk`: an aliased disk of radius r on a grid of −8..8 (r ≤ 8, then a 3×3
/// Gaussian) or −r..r (5×5 Gaussian), normalised, in float32.
fn disk(radius: f64, alias_blur: f64) -> (Vec<f32>, usize) {
    let (half, ksize) = if radius <= 8.0 {
        (8, 3)
    } else {
        (radius as i64, 5)
    };
    let n = (2 * half + 1) as usize;
    let mut kernel: Vec<f32> = (-half..=half)
        .flat_map(|y| {
            (-half..=half).map(move |x| ((x * x + y * y) as f64 <= radius * radius) as u8 as f32)
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|v| *v /= total);
    (gaussian_blur_cv(&kernel, n, n, ksize, alias_blur), n)
}

/// Each channel filtered with the anti-aliased disk (OpenCV filter2D, REFLECT_101).
pub fn defocus(image: &RgbImage, (radius, alias): (f64, f64)) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let (kernel, n) = disk(radius, alias);
    let bytes = image.as_bytes();
    // The planes of `unit_f64` (the quotients v / 255 from a table), and back as
    // `from_scaled_f64` does, without the interleaved float copies.
    let unit = unit_table();
    let mut planes = vec![vec![0.0; w * h]; 3];
    for (i, pixel) in bytes.chunks_exact(3).enumerate() {
        for (plane, &v) in planes.iter_mut().zip(pixel) {
            plane[i] = unit[usize::from(v)];
        }
    }
    let filtered = filter2d_planes(&planes, h, w, &kernel, n, n);
    let mut out = vec![0u8; bytes.len()];
    for (i, pixel) in out.chunks_exact_mut(3).enumerate() {
        for (v, plane) in pixel.iter_mut().zip(&filtered) {
            *v = truncate_u8(unit_to_scaled(plane[i]));
        }
    }
    RgbImage::new(w, h, out).expect("same size")
}

/// Gaussian blur → uint8 → local pixel shuffling → Gaussian blur. The reference's "swap"
/// `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on numpy views copies pixel (h', w') onto (h, w)
/// and leaves both equal to it; that is what is reproduced here.
pub fn glass(
    image: &RgbImage,
    (sigma, delta, iterations): (f64, i64, usize),
    draws: &mut dyn Draws,
) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let first = gaussian_f64(&image.unit_f64(), [h, w, 3], sigma, 4.0, Border::Nearest);
    let mut pixels: Vec<u8> = first.iter().map(|v| truncate_u8(v * 255.0)).collect();
    let (rows, columns) = (delta + 1..=h as i64 - delta, delta + 1..=w as i64 - delta);
    let visits = rows.clone().count() * columns.clone().count();
    for _ in 0..iterations {
        // (dx, dy) per visited pixel, drawn in visiting order.
        let shifts = draws.integers(-delta, delta, 2 * visits);
        let mut next = 0;
        for y in rows.clone().rev() {
            for x in columns.clone().rev() {
                let (dx, dy) = (shifts[next], shifts[next + 1]);
                next += 2;
                let (sy, sx) = ((y + dy) as usize, (x + dx) as usize);
                let (src, dst) = ((sy * w + sx) * 3, (y as usize * w + x as usize) * 3);
                for c in 0..3 {
                    pixels[dst + c] = pixels[src + c];
                }
            }
        }
    }
    let unit: Vec<f64> = pixels.iter().map(|&v| v as f64 / 255.0).collect();
    let second = gaussian_f64(&unit, [h, w, 3], sigma, 4.0, Border::Nearest);
    RgbImage::from_unit_f64(w, h, &second)
}

/// ImageMagick's motion blur at an angle uniform in [−45°, 45°).
pub fn motion(image: &RgbImage, (radius, sigma): (f64, f64), draws: &mut dyn Draws) -> RgbImage {
    let angle = draws.uniform_range(-45.0, 45.0, 1)[0];
    let (w, h) = (image.width(), image.height());
    let out = motion_blur_im(image.as_bytes(), h, w, 3, radius, sigma, angle);
    RgbImage::new(w, h, out).expect("same size")
}

/// The mean of the image and its zooms (float32 accumulation, as in the reference).
pub fn zoom(image: &RgbImage, factors: Vec<f64>) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let x = image.unit_f32();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut acc = vec![0f32; x.len()];
    for z in &factors {
        add_clipped_zoom_rgb(&x64, w.min(h), *z, &mut acc);
    }
    let count = (factors.len() + 1) as f32;
    let out = x
        .iter()
        .zip(&acc)
        .map(|(v, a)| (((v + a) / count).clamp(0.0, 1.0) * 255.0) as f64);
    RgbImage::from_scaled_f64(w, h, out)
}

#[cfg(test)]
mod dft_tests {
    use super::*;
    use crate::filters::correlate_for_tests;

    /// The DFT path against the direct sum on real photographs at every ImageNet and CIFAR
    /// defocus setting: the same bytes after the final truncation.
    #[test]
    fn defocus_through_the_dft_gives_the_bytes_of_the_direct_sum() {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/imagenet_input.png"
        );
        let image = crate::decode_rgb(&std::fs::read(root).unwrap()).unwrap();
        let (w, h) = (image.width(), image.height());
        let x = image.unit_f64();
        let mut differing = 0;
        let mut total = 0;
        for preset in [crate::Preset::Imagenet, crate::Preset::Cifar] {
            for s in 0..5 {
                let (radius, alias) = preset.defocus_blur(s);
                let (kernel, n) = disk(radius, alias);
                for c in 0..3 {
                    let plane: Vec<f64> = (0..w * h).map(|i| x[3 * i + c]).collect();
                    let dft = correlate_for_tests(&plane, [h, w], &kernel, n, true);
                    let direct = correlate_for_tests(&plane, [h, w], &kernel, n, false);
                    for (a, b) in dft.iter().zip(&direct) {
                        assert!((a - b).abs() < 1e-12);
                        let byte = |v: f64| (v.clamp(0.0, 1.0) * 255.0) as u8;
                        differing += usize::from(byte(*a) != byte(*b));
                        total += 1;
                    }
                }
            }
        }
        eprintln!("{differing} of {total} bytes differ");
        assert_eq!(differing, 0);
    }
}
