//! The 19 common corruptions of ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019),
//! reproducing the reference generators (`make_imagenet_c.py`, `make_cifar_c.py`) quirks
//! included: float64/float32 where they compute in those types, `np.uint8` truncation of the
//! result, the hard-coded zoom lists, the glass-blur copy semantics, ImageMagick's motion blur,
//! OpenCV's border modes and fixed-point warps, PIL's box resampling.
//!
//! Randomness is separated from the transforms: every corruption reads its random fields from a
//! [`Draws`] stream; [`corrupt`] seeds that stream from (seed, image index, corruption,
//! severity), so the same seed gives identical bytes whatever the batching or thread count.
//!
//! ```
//! use corruptions::{corrupt, Corruption, Preset, RgbImage};
//! let image = RgbImage::new(32, 32, vec![128; 32 * 32 * 3]).unwrap();
//! let noisy = corrupt(&image, Corruption::GaussianNoise, 3, Preset::Cifar, 0, 7).unwrap();
//! assert_eq!(noisy.width(), 32);
//! ```

mod blur;
mod color;
mod dft;
mod digital;
mod draws;
mod filters;
mod image;
mod jpeg;
pub mod metrics;
mod noise;
mod normal_avx2;
mod opencv;
pub mod params;
mod spatter;
mod weather;

pub use digital::{decode_jpeg, encode_jpeg};
pub use draws::{DrawStream, Draws};
pub use filters::{pil_resize, ResizeFilter};
pub use image::RgbImage;
pub use params::Preset;

use std::fmt;
use std::str::FromStr;

/// The 19 corruptions, in the benchmark order (the first 15 are used for mCE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corruption {
    GaussianNoise,
    ShotNoise,
    ImpulseNoise,
    DefocusBlur,
    GlassBlur,
    MotionBlur,
    ZoomBlur,
    Snow,
    Frost,
    Fog,
    Brightness,
    Contrast,
    ElasticTransform,
    Pixelate,
    JpegCompression,
    SpeckleNoise,
    GaussianBlur,
    Spatter,
    Saturate,
}

/// The family a corruption belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Noise,
    Blur,
    Weather,
    Digital,
}

impl Corruption {
    pub const ALL: [Corruption; 19] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::DefocusBlur,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::ZoomBlur,
        Corruption::Snow,
        Corruption::Frost,
        Corruption::Fog,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::ElasticTransform,
        Corruption::Pixelate,
        Corruption::JpegCompression,
        Corruption::SpeckleNoise,
        Corruption::GaussianBlur,
        Corruption::Spatter,
        Corruption::Saturate,
    ];

    /// The 15 corruptions of the benchmark (mCE).
    pub fn benchmark() -> &'static [Corruption] {
        &Self::ALL[..15]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::ZoomBlur => "zoom_blur",
            Corruption::Snow => "snow",
            Corruption::Frost => "frost",
            Corruption::Fog => "fog",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::ElasticTransform => "elastic_transform",
            Corruption::Pixelate => "pixelate",
            Corruption::JpegCompression => "jpeg_compression",
            Corruption::SpeckleNoise => "speckle_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Spatter => "spatter",
            Corruption::Saturate => "saturate",
        }
    }

    pub fn category(&self) -> Category {
        use Corruption::*;
        match self {
            GaussianNoise | ShotNoise | ImpulseNoise | SpeckleNoise => Category::Noise,
            DefocusBlur | GlassBlur | MotionBlur | ZoomBlur | GaussianBlur => Category::Blur,
            Snow | Frost | Fog | Spatter => Category::Weather,
            Brightness | Contrast | ElasticTransform | Pixelate | JpegCompression | Saturate => {
                Category::Digital
            }
        }
    }

    fn index(&self) -> u64 {
        Self::ALL.iter().position(|c| c == self).expect("listed") as u64
    }

    /// Parses a selection: `all`, `benchmark`, `noise`, `blur`, `weather`, `digital`, or a
    /// comma-separated list of names.
    pub fn parse_selection(text: &str) -> Result<Vec<Corruption>, Error> {
        let mut out: Vec<Corruption> = Vec::new();
        for part in text.split(',').map(str::trim) {
            let group: Vec<Corruption> = match part {
                "all" => Self::ALL.to_vec(),
                "benchmark" => Self::benchmark().to_vec(),
                "noise" => Self::filter(Category::Noise),
                "blur" => Self::filter(Category::Blur),
                "weather" => Self::filter(Category::Weather),
                "digital" => Self::filter(Category::Digital),
                name => vec![name.parse()?],
            };
            for c in group {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    fn filter(category: Category) -> Vec<Corruption> {
        Self::ALL
            .iter()
            .copied()
            .filter(|c| c.category() == category)
            .collect()
    }
}

impl FromStr for Corruption {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| Error::UnknownCorruption(s.to_string()))
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    UnknownCorruption(String),
    Severity(u8),
    ImageSize {
        width: usize,
        height: usize,
        needed: String,
    },
    Buffer {
        expected: usize,
        found: usize,
    },
    Decode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownCorruption(name) => write!(
                f,
                "unknown corruption '{name}'; known: {}, or all, benchmark, noise, blur, weather, digital",
                Corruption::ALL.map(|c| c.name()).join(", ")
            ),
            Error::Severity(s) => write!(f, "severity {s} is outside 1..=5"),
            Error::ImageSize { width, height, needed } => {
                write!(f, "image of {width}×{height} cannot be corrupted: {needed}")
            }
            Error::Buffer { expected, found } => {
                write!(f, "RGB buffer has {found} bytes, expected {expected} (width × height × 3)")
            }
            Error::Decode(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The seed of the draw stream of one (image, corruption, severity).
pub fn stream_seed(seed: u64, image_index: u64, corruption: Corruption, severity: u8) -> u64 {
    let mut s = DrawStream::mix(seed ^ 0x0C0A_11A5_5EED_0000);
    s = DrawStream::mix(s ^ image_index);
    s = DrawStream::mix(s ^ corruption.index());
    DrawStream::mix(s ^ severity as u64)
}

/// Corrupts `image` at `severity` (1–5) with the parameters of `preset`, drawing randomness
/// from the stream of (seed, image_index, corruption, severity).
pub fn corrupt(
    image: &RgbImage,
    corruption: Corruption,
    severity: u8,
    preset: Preset,
    seed: u64,
    image_index: u64,
) -> Result<RgbImage, Error> {
    let mut draws = DrawStream::new(stream_seed(seed, image_index, corruption, severity));
    corrupt_with(image, corruption, severity, preset, &mut draws)
}

/// Corrupts many images in parallel; image `i` uses the stream of (seed, `indices[i]`), so the
/// result does not depend on how images are grouped or on the number of threads.
pub fn corrupt_many(
    images: &[RgbImage],
    indices: &[u64],
    corruption: Corruption,
    severity: u8,
    preset: Preset,
    seed: u64,
) -> Result<Vec<RgbImage>, Error> {
    use rayon::prelude::*;
    images
        .par_iter()
        .zip(indices.par_iter())
        .map(|(image, &index)| corrupt(image, corruption, severity, preset, seed, index))
        .collect()
}

/// [`corrupt`] with an explicit source of random draws.
pub fn corrupt_with(
    image: &RgbImage,
    corruption: Corruption,
    severity: u8,
    preset: Preset,
    draws: &mut dyn Draws,
) -> Result<RgbImage, Error> {
    if !(1..=5).contains(&severity) {
        return Err(Error::Severity(severity));
    }
    preset.check_size(image, corruption)?;
    let s = (severity - 1) as usize;
    use Corruption::*;
    let out = match corruption {
        GaussianNoise => noise::gaussian(image, preset.gaussian_noise(s), draws),
        ShotNoise => noise::shot(image, preset.shot_noise(s), draws),
        ImpulseNoise => noise::impulse(image, preset.impulse_noise(s), draws),
        SpeckleNoise => noise::speckle(image, preset.speckle_noise(s), draws),
        DefocusBlur => blur::defocus(image, preset.defocus_blur(s)),
        GlassBlur => blur::glass(image, preset.glass_blur(s), draws),
        MotionBlur => blur::motion(image, preset.motion_blur(s), draws),
        ZoomBlur => blur::zoom(image, preset.zoom_factors(s)),
        GaussianBlur => blur::gaussian(image, preset.gaussian_blur(s)),
        Snow => weather::snow(image, preset.snow(s), draws),
        Frost => weather::frost(image, preset.frost(s), preset, draws)?,
        Fog => weather::fog(image, preset.fog(s), preset, draws),
        Spatter => spatter::spatter(image, preset.spatter(s), draws),
        Brightness => digital::brightness(image, preset.brightness(s)),
        Contrast => digital::contrast(image, preset.contrast(s)),
        Saturate => digital::saturate(image, preset.saturate(s)),
        ElasticTransform => digital::elastic(image, preset.elastic(s), draws),
        Pixelate => digital::pixelate(image, preset.pixelate(s)),
        JpegCompression => digital::jpeg(image, preset.jpeg_quality(s)),
    };
    Ok(out)
}

/// Decodes an image file's bytes (JPEG with libjpeg-turbo, as PIL decodes it; other formats with
/// the `image` crate; grayscale and RGBA converted to RGB).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, Error> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(bytes);
    }
    let img = image_crate::load_from_memory(bytes)
        .map_err(|e| Error::Decode(format!("cannot decode image: {e}")))?;
    let rgb = img.to_rgb8();
    RgbImage::new(rgb.width() as usize, rgb.height() as usize, rgb.into_raw())
}
