//! Severity tables of the reference generators, one `const` per corruption and preset, so they
//! can be checked against `make_imagenet_c.py` / `make_cifar_c.py` at a glance.

use crate::{Corruption, Error, RgbImage};

/// Which generator's parameters to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// CIFAR-10-C (`make_cifar_c.py`), for 32×32 images.
    Cifar,
    /// ImageNet-C (`make_imagenet_c.py`), for 224×224 images; other sizes ≥ 32 follow the same
    /// algorithms with the size-dependent parts scaled to the image.
    Imagenet,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cifar" => Ok(Self::Cifar),
            "imagenet" => Ok(Self::Imagenet),
            other => Err(format!(
                "unknown preset '{other}' (expected cifar or imagenet)"
            )),
        }
    }
}

// ---- ImageNet-C ----
pub const IN_GAUSSIAN_NOISE: [f64; 5] = [0.08, 0.12, 0.18, 0.26, 0.38];
pub const IN_SHOT_NOISE: [f64; 5] = [60.0, 25.0, 12.0, 5.0, 3.0];
pub const IN_IMPULSE_NOISE: [f64; 5] = [0.03, 0.06, 0.09, 0.17, 0.27];
pub const IN_SPECKLE_NOISE: [f64; 5] = [0.15, 0.2, 0.35, 0.45, 0.6];
pub const IN_GAUSSIAN_BLUR: [f64; 5] = [1.0, 2.0, 3.0, 4.0, 6.0];
/// (σ, max δ, iterations)
pub const IN_GLASS_BLUR: [(f64, i64, usize); 5] = [
    (0.7, 1, 2),
    (0.9, 2, 1),
    (1.0, 2, 3),
    (1.1, 3, 2),
    (1.5, 4, 2),
];
/// (radius, alias blur)
pub const IN_DEFOCUS_BLUR: [(f64, f64); 5] =
    [(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)];
/// (radius, σ)
pub const IN_MOTION_BLUR: [(f64, f64); 5] = [
    (10.0, 3.0),
    (15.0, 5.0),
    (15.0, 8.0),
    (15.0, 12.0),
    (20.0, 15.0),
];
/// (loc, scale, zoom, threshold, blur radius, blur σ, blend)
pub const IN_SNOW: [(f64, f64, f64, f64, f64, f64, f64); 5] = [
    (0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 0.8),
    (0.2, 0.3, 2.0, 0.5, 12.0, 4.0, 0.7),
    (0.55, 0.3, 4.0, 0.9, 12.0, 8.0, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12.0, 8.0, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12.0, 12.0, 0.55),
];
/// (image weight, frost weight)
pub const IN_FROST: [(f64, f64); 5] =
    [(1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)];
/// (amount, wibble decay)
pub const IN_FOG: [(f64, f64); 5] = [(1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)];
pub const IN_BRIGHTNESS: [f64; 5] = [0.1, 0.2, 0.3, 0.4, 0.5];
pub const IN_CONTRAST: [f64; 5] = [0.4, 0.3, 0.2, 0.1, 0.05];
/// (S·a + b)
pub const IN_SATURATE: [(f64, f64); 5] =
    [(0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)];
/// (α, σ, affine), written 244·k in the reference ("244 should have been 224").
pub const IN_ELASTIC: [(f64, f64, f64); 5] = [
    (244.0 * 2.0, 244.0 * 0.7, 244.0 * 0.1),
    (244.0 * 2.0, 244.0 * 0.08, 244.0 * 0.2),
    (244.0 * 0.05, 244.0 * 0.01, 244.0 * 0.02),
    (244.0 * 0.07, 244.0 * 0.01, 244.0 * 0.02),
    (244.0 * 0.12, 244.0 * 0.01, 244.0 * 0.02),
];
pub const IN_PIXELATE: [f64; 5] = [0.6, 0.5, 0.4, 0.3, 0.25];
pub const IN_JPEG: [u8; 5] = [25, 18, 15, 10, 7];
/// (loc, scale, σ, threshold, intensity or mud σ, mode: 0 water / 1 mud)
pub const IN_SPATTER: [(f64, f64, f64, f64, f64, u8); 5] = [
    (0.65, 0.3, 4.0, 0.69, 0.6, 0),
    (0.65, 0.3, 3.0, 0.68, 0.6, 0),
    (0.65, 0.3, 2.0, 0.68, 0.5, 0),
    (0.65, 0.3, 1.0, 0.65, 1.5, 1),
    (0.67, 0.4, 1.0, 0.65, 1.5, 1),
];
/// `np.arange(1, stop, step)` as numpy produces it (float round-off makes some lists one longer
/// than the naive count); start 1 and step per severity, with the list lengths numpy returns.
pub const IN_ZOOM: [(f64, usize); 5] = [(0.01, 12), (0.01, 16), (0.02, 11), (0.02, 13), (0.03, 11)];

// ---- CIFAR-10-C ----
pub const C_GAUSSIAN_NOISE: [f64; 5] = [0.04, 0.06, 0.08, 0.09, 0.10];
pub const C_SHOT_NOISE: [f64; 5] = [500.0, 250.0, 100.0, 75.0, 50.0];
pub const C_IMPULSE_NOISE: [f64; 5] = [0.01, 0.02, 0.03, 0.05, 0.07];
pub const C_SPECKLE_NOISE: [f64; 5] = [0.06, 0.1, 0.12, 0.16, 0.2];
pub const C_GAUSSIAN_BLUR: [f64; 5] = [0.4, 0.6, 0.7, 0.8, 1.0];
pub const C_GLASS_BLUR: [(f64, i64, usize); 5] = [
    (0.05, 1, 1),
    (0.25, 1, 1),
    (0.4, 1, 1),
    (0.25, 1, 2),
    (0.4, 1, 2),
];
pub const C_DEFOCUS_BLUR: [(f64, f64); 5] =
    [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)];
pub const C_MOTION_BLUR: [(f64, f64); 5] =
    [(6.0, 1.0), (6.0, 1.5), (6.0, 2.0), (8.0, 2.0), (9.0, 2.5)];
pub const C_SNOW: [(f64, f64, f64, f64, f64, f64, f64); 5] = [
    (0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8),
];
pub const C_FROST: [(f64, f64); 5] = [
    (1.0, 0.2),
    (1.0, 0.3),
    (0.9, 0.4),
    (0.85, 0.4),
    (0.75, 0.45),
];
pub const C_FOG: [(f64, f64); 5] = [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)];
pub const C_BRIGHTNESS: [f64; 5] = [0.05, 0.1, 0.15, 0.2, 0.3];
pub const C_CONTRAST: [f64; 5] = [0.75, 0.5, 0.4, 0.3, 0.15];
pub const C_SATURATE: [(f64, f64); 5] =
    [(0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)];
/// (α, σ, affine) = IMSIZE·k with IMSIZE = 32.
pub const C_ELASTIC: [(f64, f64, f64); 5] = [
    (32.0 * 0.0, 32.0 * 0.0, 32.0 * 0.08),
    (32.0 * 0.05, 32.0 * 0.2, 32.0 * 0.07),
    (32.0 * 0.08, 32.0 * 0.06, 32.0 * 0.06),
    (32.0 * 0.1, 32.0 * 0.04, 32.0 * 0.05),
    (32.0 * 0.1, 32.0 * 0.03, 32.0 * 0.03),
];
pub const C_PIXELATE: [f64; 5] = [0.95, 0.9, 0.85, 0.75, 0.65];
pub const C_JPEG: [u8; 5] = [80, 65, 58, 50, 40];
pub const C_SPATTER: [(f64, f64, f64, f64, f64, u8); 5] = [
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
];
pub const C_ZOOM: [(f64, usize); 5] = [(0.01, 7), (0.01, 12), (0.01, 16), (0.01, 21), (0.01, 26)];

/// Zoom factors as `np.arange(1, stop, step)` computes them: `start + k·δ` with the increment
/// δ = (start + step) − start measured in floating point.
pub fn zoom_list(step: f64, n: usize) -> Vec<f64> {
    let delta = (1.0 + step) - 1.0;
    (0..n)
        .map(|k| if k == 0 { 1.0 } else { 1.0 + k as f64 * delta })
        .collect()
}

macro_rules! pick {
    ($self:expr, $s:expr, $cifar:ident, $imagenet:ident) => {
        match $self {
            Preset::Cifar => $cifar[$s],
            Preset::Imagenet => $imagenet[$s],
        }
    };
}

impl Preset {
    pub fn gaussian_noise(&self, s: usize) -> f64 {
        pick!(self, s, C_GAUSSIAN_NOISE, IN_GAUSSIAN_NOISE)
    }
    pub fn shot_noise(&self, s: usize) -> f64 {
        pick!(self, s, C_SHOT_NOISE, IN_SHOT_NOISE)
    }
    pub fn impulse_noise(&self, s: usize) -> f64 {
        pick!(self, s, C_IMPULSE_NOISE, IN_IMPULSE_NOISE)
    }
    pub fn speckle_noise(&self, s: usize) -> f64 {
        pick!(self, s, C_SPECKLE_NOISE, IN_SPECKLE_NOISE)
    }
    pub fn gaussian_blur(&self, s: usize) -> f64 {
        pick!(self, s, C_GAUSSIAN_BLUR, IN_GAUSSIAN_BLUR)
    }
    pub fn glass_blur(&self, s: usize) -> (f64, i64, usize) {
        pick!(self, s, C_GLASS_BLUR, IN_GLASS_BLUR)
    }
    pub fn defocus_blur(&self, s: usize) -> (f64, f64) {
        pick!(self, s, C_DEFOCUS_BLUR, IN_DEFOCUS_BLUR)
    }
    pub fn motion_blur(&self, s: usize) -> (f64, f64) {
        pick!(self, s, C_MOTION_BLUR, IN_MOTION_BLUR)
    }
    pub fn snow(&self, s: usize) -> (f64, f64, f64, f64, f64, f64, f64) {
        pick!(self, s, C_SNOW, IN_SNOW)
    }
    pub fn frost(&self, s: usize) -> (f64, f64) {
        pick!(self, s, C_FROST, IN_FROST)
    }
    pub fn fog(&self, s: usize) -> (f64, f64) {
        pick!(self, s, C_FOG, IN_FOG)
    }
    pub fn brightness(&self, s: usize) -> f64 {
        pick!(self, s, C_BRIGHTNESS, IN_BRIGHTNESS)
    }
    pub fn contrast(&self, s: usize) -> f64 {
        pick!(self, s, C_CONTRAST, IN_CONTRAST)
    }
    pub fn saturate(&self, s: usize) -> (f64, f64) {
        pick!(self, s, C_SATURATE, IN_SATURATE)
    }
    pub fn elastic(&self, s: usize) -> (f64, f64, f64) {
        pick!(self, s, C_ELASTIC, IN_ELASTIC)
    }
    pub fn pixelate(&self, s: usize) -> f64 {
        pick!(self, s, C_PIXELATE, IN_PIXELATE)
    }
    pub fn jpeg_quality(&self, s: usize) -> u8 {
        pick!(self, s, C_JPEG, IN_JPEG)
    }
    pub fn spatter(&self, s: usize) -> (f64, f64, f64, f64, f64, u8) {
        pick!(self, s, C_SPATTER, IN_SPATTER)
    }
    pub fn zoom_factors(&self, s: usize) -> Vec<f64> {
        let (step, n) = pick!(self, s, C_ZOOM, IN_ZOOM);
        zoom_list(step, n)
    }

    /// Side length of the plasma-fractal map used by fog.
    pub fn fog_map_size(&self, image_side: usize) -> usize {
        match self {
            Preset::Cifar => 32,
            Preset::Imagenet => image_side.next_power_of_two().max(256),
        }
    }

    /// CIFAR parameters only make sense at 32×32; the ImageNet ones at any size ≥ 32.
    pub fn check_size(&self, image: &RgbImage, corruption: Corruption) -> Result<(), Error> {
        let (w, h) = (image.width(), image.height());
        let problem = match self {
            Preset::Cifar if (w, h) != (32, 32) => {
                Some("the cifar preset needs 32×32 images".to_string())
            }
            Preset::Imagenet if w.min(h) < 32 => {
                Some("the imagenet preset needs images of at least 32×32".into())
            }
            Preset::Imagenet if w != h && needs_square(corruption) => Some(format!(
                "{corruption} follows the reference, which works on square images"
            )),
            _ => None,
        };
        match problem {
            Some(needed) => Err(Error::ImageSize {
                width: w,
                height: h,
                needed,
            }),
            None => Ok(()),
        }
    }
}

/// Corruptions whose reference crops or rotates square fields.
fn needs_square(c: Corruption) -> bool {
    matches!(c, Corruption::ZoomBlur | Corruption::Snow | Corruption::Fog)
}
