//! Digital corruptions: brightness, contrast, saturation, elastic transform, pixelation, JPEG.

use crate::color::{hsv_to_rgb4, rgb_to_hsv4, Rgb4};
use crate::draws::Draws;
use crate::filters::{gaussian_f64, pil_box_resize, sample_linear_reflect, Border};
use crate::image::{unit_table, unit_to_scaled, RgbImage};
use crate::opencv::{affine_transform, warp_affine_linear};
use crate::Error;
use multiversion::multiversion;
use wide::f64x4;

/// `hsv2rgb(f(rgb2hsv(x / 255)))`, four pixels at a time (a last partial group padded with
/// black and its padding dropped).
fn map_hsv(image: &RgbImage, f: impl Fn(Rgb4) -> Rgb4) -> RgbImage {
    let unit = unit_table();
    let bytes = image.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for group in bytes.chunks(12) {
        let pixels = group.len() / 3;
        let lanes = |c: usize| {
            f64x4::from(std::array::from_fn(|i| {
                group.get(3 * i + c).map_or(0.0, |&v| unit[usize::from(v)])
            }))
        };
        let rgb = hsv_to_rgb4(f(rgb_to_hsv4([lanes(0), lanes(1), lanes(2)])));
        let rgb = rgb.map(|channel| channel.to_array());
        for i in 0..pixels {
            out.extend(rgb.iter().map(|channel| channel[i]));
        }
    }
    RgbImage::from_unit_f64(image.width(), image.height(), &out)
}

/// V += c in HSV (clipped).
pub fn brightness(image: &RgbImage, c: f64) -> RgbImage {
    let clip = |x: f64x4| x.max(f64x4::splat(0.0)).min(f64x4::splat(1.0));
    map_hsv(image, |[h, s, v]| [h, s, clip(v + f64x4::splat(c))])
}

/// S = S·a + b in HSV (clipped).
pub fn saturate(image: &RgbImage, (a, b): (f64, f64)) -> RgbImage {
    let clip = |x: f64x4| x.max(f64x4::splat(0.0)).min(f64x4::splat(1.0));
    map_hsv(image, |[h, s, v]| {
        [h, clip(s * f64x4::splat(a) + f64x4::splat(b)), v]
    })
}

/// (x − μ)·c + μ with μ the per-channel mean over the image.
pub fn contrast(image: &RgbImage, c: f64) -> RgbImage {
    let x = image.unit_f64();
    let n = (x.len() / 3) as f64;
    let mut means = [0.0; 3];
    for p in x.chunks(3) {
        for ch in 0..3 {
            means[ch] += p[ch];
        }
    }
    means.iter_mut().for_each(|m| *m /= n);
    let out = x
        .iter()
        .enumerate()
        .map(|(i, v)| unit_to_scaled((v - means[i % 3]) * c + means[i % 3]));
    RgbImage::from_scaled_f64(image.width(), image.height(), out)
}

/// PIL BOX resize down to ⌊side·c⌋, then back up with BOX.
pub fn pixelate(image: &RgbImage, c: f64) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let (sw, sh) = (((w as f64) * c) as usize, ((h as f64) * c) as usize);
    let small = pil_box_resize(image.as_bytes(), w, h, sw.max(1), sh.max(1));
    let back = pil_box_resize(&small, sw.max(1), sh.max(1), w, h);
    RgbImage::new(w, h, back).expect("same size")
}

/// Encode as JPEG at `quality` and decode, both with libjpeg-turbo's defaults (4:2:0, standard
/// tables, islow DCT, fancy upsampling) as PIL does: byte-identical to the reference. The round
/// trip is computed directly (`crate::jpeg`), without the lossless entropy coding in between.
pub fn jpeg(image: &RgbImage, quality: u8) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    RgbImage::new(
        w,
        h,
        crate::jpeg::round_trip(image.as_bytes(), w, h, quality),
    )
    .expect("same size")
}

/// libjpeg-compatible JPEG encoding (what PIL's `save(..., 'JPEG', quality=q)` writes).
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, Error> {
    let fail = |e: std::io::Error| Error::Decode(format!("JPEG encoding failed: {e}"));
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    compress.set_fastest_defaults();
    compress.set_quality(quality as f32);
    compress.set_size(image.width(), image.height());
    let mut started = compress.start_compress(Vec::new()).map_err(fail)?;
    started.write_scanlines(image.as_bytes()).map_err(fail)?;
    started.finish().map_err(fail)
}

/// libjpeg-turbo decoding to RGB.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, Error> {
    // libjpeg reports some errors of damaged files by unwinding through the decoder.
    std::panic::catch_unwind(|| decode_jpeg_unguarded(bytes)).unwrap_or_else(|_| {
        Err(Error::Decode(
            "JPEG decoding failed: the data is damaged".into(),
        ))
    })
}

fn decode_jpeg_unguarded(bytes: &[u8]) -> Result<RgbImage, Error> {
    let fail = |e: std::io::Error| Error::Decode(format!("JPEG decoding failed: {e}"));
    let decompress = mozjpeg::Decompress::new_mem(bytes).map_err(fail)?;
    let mut started = decompress.rgb().map_err(fail)?;
    let (w, h) = (started.width(), started.height());
    let rows: Vec<[u8; 3]> = started.read_scanlines().map_err(fail)?;
    started.finish().map_err(fail)?;
    RgbImage::new(w, h, rows.concat())
}

/// Random affine warp (OpenCV, REFLECT_101) then Gaussian-smoothed random displacement fields
/// resampled linearly with scipy's 'reflect' rule.
pub fn elastic(
    image: &RgbImage,
    (alpha, sigma, affine): (f64, f64, f64),
    draws: &mut dyn Draws,
) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let x = image.unit_f32();
    // np.float32(shape_size) // 2 and min(shape_size) // 3
    let (cy, cx) = ((h as f32 / 2.0).floor(), (w as f32 / 2.0).floor());
    let s = (h.min(w) / 3) as f32;
    let pts1 = [[cy + s, cx + s], [cy + s, cx - s], [cy - s, cx - s]];
    let jitter = draws.uniform_range(-affine, affine, 6);
    let mut pts2 = pts1;
    for (i, j) in jitter.iter().enumerate() {
        pts2[i / 2][i % 2] += *j as f32;
    }
    let m = affine_transform(pts1, pts2);
    let warped = warp_affine_linear(&x, h, w, 3, m);
    let field = |draws: &mut dyn Draws| -> Vec<f32> {
        let noise = draws.uniform_range(-1.0, 1.0, h * w);
        gaussian_f64(&noise, [h, w, 1], sigma, 3.0, Border::Reflect)
            .into_iter()
            .map(|v| (v * alpha) as f32)
            .collect()
    };
    let dx = field(draws);
    let dy = field(draws);
    displace(&warped, [h, w], &dx, &dy)
}

/// Samples the warped image at each pixel moved by (dx, dy), linear with scipy's 'reflect'.
#[multiversion(targets = "simd")]
fn displace(warped: &[f32], [h, w]: [usize; 2], dx: &[f32], dy: &[f32]) -> RgbImage {
    let mut out = Vec::with_capacity(warped.len());
    let mut pixel = [0.0; 3];
    for y in 0..h {
        for xx in 0..w {
            let i = y * w + xx;
            let (sy, sx) = (y as f64 + dy[i] as f64, xx as f64 + dx[i] as f64);
            sample_linear_reflect(warped, [h, w, 3], sy, sx, &mut pixel);
            out.extend(pixel.map(|v| ((v as f32).clamp(0.0, 1.0) * 255.0) as f64));
        }
    }
    RgbImage::from_scaled_f64(w, h, out)
}
