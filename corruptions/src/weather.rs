//! Weather corruptions: snow, frost, fog.

use std::sync::OnceLock;

use crate::draws::Draws;
use crate::filters::clipped_zoom;
use crate::image::{truncate_u8, unit_to_scaled, RgbImage};
use crate::opencv::motion_blur_im;
use crate::params::Preset;
use crate::Error;
use multiversion::multiversion;

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
    // numpy multiplies float32 arrays by Python floats in float32: both factors are rounded once.
    let out = blend_snow(&x, &blurred, (blend as f32, (1.0 - blend) as f32));
    RgbImage::new(w, h, out).expect("same size")
}

/// `keep·x + mix·max(x, 1.5·gray + 0.5)` (float32) plus the flakes and the flakes rotated by
/// 180°, clipped, through `np.uint8`.
#[multiversion(targets = "simd")]
fn blend_snow(x: &[f32], flakes: &[u8], (keep, mix): (f32, f32)) -> Vec<u8> {
    let n = flakes.len();
    let mut out = vec![0u8; x.len()];
    for (i, (o, p)) in out.chunks_exact_mut(3).zip(x.chunks_exact(3)).enumerate() {
        let gray = p[0] * 0.299 + p[1] * 0.587 + p[2] * 0.114;
        let lifted = gray * 1.5 + 0.5;
        let flake = f64::from(flakes[i]) / 255.0;
        let rotated = f64::from(flakes[n - 1 - i]) / 255.0;
        for (o, &v) in o.iter_mut().zip(p) {
            let mixed = keep * v + mix * v.max(lifted);
            *o = truncate_u8(unit_to_scaled(f64::from(mixed) + flake + rotated));
        }
    }
    out
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
    while step >= 2 {
        let grid = Grid::new(size, step);
        // fill squares: the mean of each cell's four corners
        let noise = draws.uniform_range(-wibble, wibble, grid.cells());
        grid.fill_squares(&mut map, &noise, wibble);
        // fill diamonds: the top, then the left edge midpoints of each cell
        let top = draws.uniform_range(-wibble, wibble, grid.cells());
        let left = draws.uniform_range(-wibble, wibble, grid.cells());
        grid.fill_diamonds(&mut map, &top, &left, wibble);
        step /= 2;
        wibble /= decay;
    }
    let min = map.iter().cloned().fold(f64::INFINITY, f64::min);
    map.iter_mut().for_each(|v| *v -= min);
    let max = map.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    map.iter().map(|v| v / max).collect()
}

/// One level of the diamond-square recursion: the `k × k` cells of side `step`. The sums are
/// those of the reference's `np.roll` expressions, term for term and in its order.
struct Grid {
    size: usize,
    step: usize,
    /// Cells per side.
    k: usize,
}

impl Grid {
    fn new(size: usize, step: usize) -> Self {
        Self {
            size,
            step,
            k: size / step,
        }
    }

    fn cells(&self) -> usize {
        self.k * self.k
    }

    /// The cell after `i`, wrapping around (a roll by −1).
    #[inline(always)]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.k {
            0
        } else {
            i + 1
        }
    }

    /// The cell before `i`, wrapping around (a roll by +1).
    #[inline(always)]
    fn prev(&self, i: usize) -> usize {
        if i == 0 {
            self.k - 1
        } else {
            i - 1
        }
    }

    /// Map value at cell (i, j) of the grid offset by (oy, ox).
    #[inline(always)]
    fn at(&self, map: &[f64], oy: usize, ox: usize, i: usize, j: usize) -> f64 {
        map[(oy + i * self.step) * self.size + ox + j * self.step]
    }

    fn fill_squares(&self, map: &mut [f64], noise: &[f64], wibble: f64) {
        let (k, half) = (self.k, self.step / 2);
        let mut centres = vec![0.0; k * k];
        for i in 0..k {
            let i1 = self.next(i);
            for j in 0..k {
                let j1 = self.next(j);
                let c = |i, j| self.at(map, 0, 0, i, j);
                // (corners + roll(corners, -1, 0)), then + its roll(-1, 1)
                let square = (c(i, j) + c(i1, j)) + (c(i, j1) + c(i1, j1));
                centres[i * k + j] = square / 4.0 + wibble * noise[i * k + j];
            }
        }
        self.put(map, half, half, &centres);
    }

    fn fill_diamonds(&self, map: &mut [f64], top: &[f64], left: &[f64], wibble: f64) {
        let (k, half) = (self.k, self.step / 2);
        let mut tops = vec![0.0; k * k];
        let mut lefts = vec![0.0; k * k];
        for i in 0..k {
            let (i_next, i_prev) = (self.next(i), self.prev(i));
            for j in 0..k {
                let (j_next, j_prev) = (self.next(j), self.prev(j));
                let dr = |i, j| self.at(map, half, half, i, j);
                let ul = |i, j| self.at(map, 0, 0, i, j);
                let lt = (dr(i, j) + dr(i_prev, j)) + (ul(i, j) + ul(i, j_next));
                tops[i * k + j] = lt / 4.0 + wibble * top[i * k + j];
                let tt = (dr(i, j) + dr(i, j_prev)) + (ul(i, j) + ul(i_next, j));
                lefts[i * k + j] = tt / 4.0 + wibble * left[i * k + j];
            }
        }
        self.put(map, 0, half, &tops);
        self.put(map, half, 0, &lefts);
    }

    fn put(&self, map: &mut [f64], oy: usize, ox: usize, values: &[f64]) {
        for (i, row) in values.chunks_exact(self.k).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                map[(oy + i * self.step) * self.size + ox + j * self.step] = v;
            }
        }
    }
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
    let out = add_fog(image.as_bytes(), w, &fractal, size, amount);
    RgbImage::new(w, h, out).expect("same size")
}

/// `(x + amount·fractal) · max / (max + amount)` on the 0–1 scale, then the final clip and
/// `np.uint8`, for each value of the interleaved RGB bytes.
#[multiversion(targets = "simd")]
fn add_fog(bytes: &[u8], w: usize, fractal: &[f64], size: usize, amount: f64) -> Vec<u8> {
    let max = f64::from(bytes.iter().copied().max().unwrap_or(0)) / 255.0;
    let mut out = vec![0u8; bytes.len()];
    // amount·fractal repeated for the three channels, so the inner loop is one flat pass.
    let mut fog_row = vec![0.0; 3 * w];
    for (y, (row, source)) in out
        .chunks_exact_mut(3 * w)
        .zip(bytes.chunks_exact(3 * w))
        .enumerate()
    {
        let fractal_row = &fractal[y * size..y * size + w];
        for (f3, &f) in fog_row.chunks_exact_mut(3).zip(fractal_row) {
            f3.fill(amount * f);
        }
        for ((o, &p), &f) in row.iter_mut().zip(source).zip(&fog_row) {
            let v = f64::from(p) / 255.0 + f;
            *o = truncate_u8(unit_to_scaled(v * max / (max + amount)));
        }
    }
    out
}
