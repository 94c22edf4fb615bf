//! Weather corruptions: snow, frost, fog.

use std::sync::OnceLock;

use crate::draws::Draws;
use crate::filters::clipped_zoom;
use crate::image::{unit_to_scaled, RgbImage};
use crate::opencv::motion_blur_im;
use crate::params::Preset;
use crate::Error;

/// Snow flakes (a zoomed, thresholded noise layer, motion-blurred by ImageMagick at an angle in
/// [−135°, −45°)) over a greyed, brightened image.
pub fn snow(
    image: &RgbImage,
    p: (f64, f64, f64, f64, f64, f64, f64),
    draws: &mut dyn Draws,
) -> RgbImage {
    let (loc, scale, zoom, threshold, radius, sigma, blend) = p;
    let (w, h) = (image.width(), image.height());
    let n = w.min(h);
    let x = image.unit_f32();
    let layer = draws.normal(loc, scale, h * w);
    let mut layer = clipped_zoom(&layer, n, zoom);
    layer
        .iter_mut()
        .filter(|v| **v < threshold)
        .for_each(|v| *v = 0.0);
    let layer_u8: Vec<u8> = layer
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8)
        .collect();
    let angle = draws.uniform_range(-135.0, -45.0, 1)[0];
    let blurred = motion_blur_im(&layer_u8, h, w, 1, radius, sigma, angle);
    let flakes: Vec<f64> = blurred.iter().map(|&v| v as f64 / 255.0).collect();
    // numpy multiplies float32 arrays by Python floats in float32: both factors are rounded once.
    let (keep, mix) = (blend as f32, (1.0 - blend) as f32);
    let mut out = Vec::with_capacity(3 * w * h);
    for y in 0..h {
        for xx in 0..w {
            let i = y * w + xx;
            let [r, g, b] = [x[3 * i], x[3 * i + 1], x[3 * i + 2]];
            let gray = r * 0.299 + g * 0.587 + b * 0.114;
            let lifted = gray * 1.5 + 0.5;
            let rotated = flakes[(h - 1 - y) * w + (w - 1 - xx)];
            for v in [r, g, b] {
                let mixed = keep * v + mix * v.max(lifted);
                out.push(unit_to_scaled(mixed as f64 + flakes[i] + rotated));
            }
        }
    }
    RgbImage::from_scaled_f64(w, h, out)
}

/// The first five ImageNet-C frost textures (Apache-2.0, see frost/LICENSE), as OpenCV decodes
/// them, and their 0.2× versions (`cv2.resize`, bilinear) used by CIFAR-10-C.
const FROST: [&[u8]; 5] = [
    include_bytes!("../frost/frost1.png"),
    include_bytes!("../frost/frost2.png"),
    include_bytes!("../frost/frost3.png"),
    include_bytes!("../frost/frost4.png"),
    include_bytes!("../frost/frost5.png"),
];
const FROST_CIFAR: [&[u8]; 5] = [
    include_bytes!("../frost/frost1_cifar.png"),
    include_bytes!("../frost/frost2_cifar.png"),
    include_bytes!("../frost/frost3_cifar.png"),
    include_bytes!("../frost/frost4_cifar.png"),
    include_bytes!("../frost/frost5_cifar.png"),
];

/// A decoded texture: (width, height, RGB bytes).
type Texture = (usize, usize, Vec<u8>);

fn texture(preset: Preset, index: usize) -> Result<&'static Texture, Error> {
    static CACHE: OnceLock<Vec<Result<Texture, Error>>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        FROST
            .iter()
            .chain(FROST_CIFAR.iter())
            .map(|bytes| {
                let img = image_crate::load_from_memory(bytes)
                    .map_err(|e| Error::Decode(format!("frost texture: {e}")))?;
                let rgb = img.to_rgb8();
                Ok((rgb.width() as usize, rgb.height() as usize, rgb.into_raw()))
            })
            .collect()
    });
    let slot = match preset {
        Preset::Imagenet => index,
        Preset::Cifar => 5 + index,
    };
    all[slot].as_ref().map_err(|e| e.clone())
}

/// `clip(a·x + b·frost_crop, 0, 255)` with one of the first five textures and a random crop.
pub fn frost(
    image: &RgbImage,
    (a, b): (f64, f64),
    preset: Preset,
    draws: &mut dyn Draws,
) -> Result<RgbImage, Error> {
    let (w, h) = (image.width(), image.height());
    let index = draws.integer(0, 5) as usize;
    let (tw, th, tex) = texture(preset, index)?;
    if *th <= h || *tw <= w {
        return Err(Error::ImageSize {
            width: w,
            height: h,
            needed: format!("frost textures are {tw}×{th}; images must be smaller"),
        });
    }
    let top = draws.integer(0, (th - h) as i64) as usize;
    let left = draws.integer(0, (tw - w) as i64) as usize;
    let src = image.as_bytes();
    let mut out = Vec::with_capacity(src.len());
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let f = tex[((top + y) * tw + left + x) * 3 + c] as f64;
                out.push((a * src[(y * w + x) * 3 + c] as f64 + b * f).clamp(0.0, 255.0));
            }
        }
    }
    Ok(RgbImage::from_scaled_f64(w, h, out))
}

/// Diamond-square plasma fractal of side `size` (a power of two), normalised to [0, 1]; every
/// random value is `wibble · U(−wibble, wibble)` drawn in the reference's order.
pub fn plasma_fractal(size: usize, decay: f64, draws: &mut dyn Draws) -> Vec<f64> {
    let mut map = vec![0f64; size * size];
    let mut step = size;
    let mut wibble = 100.0;
    let mean_with_noise = |values: Vec<f64>, wibble: f64, draws: &mut dyn Draws| -> Vec<f64> {
        let noise = draws.uniform_range(-wibble, wibble, values.len());
        values
            .iter()
            .zip(noise)
            .map(|(v, n)| v / 4.0 + wibble * n)
            .collect()
    };
    while step >= 2 {
        let k = size / step;
        let half = step / 2;
        let grid = |map: &Vec<f64>, oy: usize, ox: usize| -> Vec<f64> {
            (0..k)
                .flat_map(|i| (0..k).map(move |j| (i, j)))
                .map(|(i, j)| map[(oy + i * step) * size + ox + j * step])
                .collect()
        };
        let roll = |a: &Vec<f64>, shift: isize, axis: usize| -> Vec<f64> {
            // np.roll: result[i] = a[(i − shift) mod k] along the axis
            let mut out = vec![0.0; k * k];
            for i in 0..k {
                for j in 0..k {
                    let (si, sj) = if axis == 0 {
                        (((i as isize - shift).rem_euclid(k as isize)) as usize, j)
                    } else {
                        (i, ((j as isize - shift).rem_euclid(k as isize)) as usize)
                    };
                    out[i * k + j] = a[si * k + sj];
                }
            }
            out
        };
        let add = |a: &Vec<f64>, b: &Vec<f64>| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| x + y).collect()
        };
        let put = |map: &mut Vec<f64>, oy: usize, ox: usize, values: &[f64]| {
            for i in 0..k {
                for j in 0..k {
                    map[(oy + i * step) * size + ox + j * step] = values[i * k + j];
                }
            }
        };
        // fill squares
        let corners = grid(&map, 0, 0);
        let square = add(&corners, &roll(&corners, -1, 0));
        let square = add(&square, &roll(&square, -1, 1));
        let centres = mean_with_noise(square, wibble, draws);
        put(&mut map, half, half, &centres);
        // fill diamonds
        let dr = grid(&map, half, half);
        let ul = grid(&map, 0, 0);
        let lt = add(&add(&dr, &roll(&dr, 1, 0)), &add(&ul, &roll(&ul, -1, 1)));
        let top = mean_with_noise(lt, wibble, draws);
        put(&mut map, 0, half, &top);
        let tt = add(&add(&dr, &roll(&dr, 1, 1)), &add(&ul, &roll(&ul, -1, 0)));
        let left = mean_with_noise(tt, wibble, draws);
        put(&mut map, half, 0, &left);
        step /= 2;
        wibble /= decay;
    }
    let min = map.iter().cloned().fold(f64::INFINITY, f64::min);
    map.iter_mut().for_each(|v| *v -= min);
    let max = map.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    map.iter().map(|v| v / max).collect()
}

/// x + amount·fractal, rescaled by max(x)/(max(x) + amount).
pub fn fog(
    image: &RgbImage,
    (amount, decay): (f64, f64),
    preset: Preset,
    draws: &mut dyn Draws,
) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let size = preset.fog_map_size(w.max(h));
    let fractal = plasma_fractal(size, decay, draws);
    let x = image.unit_f64();
    let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut out = Vec::with_capacity(x.len());
    for y in 0..h {
        for xx in 0..w {
            let f = fractal[y * size + xx];
            for c in 0..3 {
                let v = x[(y * w + xx) * 3 + c] + amount * f;
                out.push(unit_to_scaled(v * max / (max + amount)));
            }
        }
    }
    RgbImage::from_scaled_f64(w, h, out)
}
