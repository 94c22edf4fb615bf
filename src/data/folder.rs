//! ImageNet-style folders: `<root>/<wnid>/<image>`, labelled by the standard class order
//! (rank of the sorted WordNet id among the 1000 ILSVRC classes), decoded in parallel.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use corruptions::{pil_resize, ResizeFilter};
use image::RgbImage;
use rayon::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};

const WNIDS: &str = include_str!("imagenet_wnids.txt");
const NAMES: &str = include_str!("imagenet_names.txt");
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// The 1000 ImageNet WordNet ids in class-index order.
pub fn imagenet_wnids() -> Vec<&'static str> {
    WNIDS.lines().collect()
}

/// Human-readable ImageNet class names in class-index order.
pub fn imagenet_class_names() -> Vec<&'static str> {
    NAMES.lines().collect()
}

/// How images are brought to the network's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// Resize the shorter side to `resize` (bilinear, antialiased), then centre-crop `crop`.
    ResizeCrop { resize: u32, crop: u32 },
    /// Use the images as stored (e.g. ImageNet-C, already 224×224); all must share one size.
    AsIs { size: u32 },
}

impl Preprocess {
    pub const IMAGENET: Self = Self::ResizeCrop {
        resize: 256,
        crop: 224,
    };

    fn output_side(&self) -> u32 {
        match *self {
            Self::ResizeCrop { crop, .. } => crop,
            Self::AsIs { size } => size,
        }
    }
}

pub struct ImageFolder {
    root: PathBuf,
    samples: Vec<(PathBuf, usize)>,
    preprocess: Preprocess,
}

impl ImageFolder {
    /// An ImageNet folder with the standard Resize(256) + CenterCrop(224).
    pub fn imagenet(root: &Path) -> Result<Self> {
        Self::open(root, Preprocess::IMAGENET)
    }

    pub fn open(root: &Path, preprocess: Preprocess) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::file(
                root,
                "not a directory of class folders (<wnid>/<image>)",
            ));
        }
        let wnids = imagenet_wnids();
        let mut samples = Vec::new();
        for class_dir in sorted_entries(root)? {
            if !class_dir.is_dir() {
                continue;
            }
            let name = class_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let label = wnids.binary_search(&name).map_err(|_| {
                Error::file(
                    &class_dir,
                    format!("folder '{name}' is not one of the 1000 ImageNet WordNet ids (like n01440764)"),
                )
            })?;
            let images: Vec<PathBuf> = sorted_entries(&class_dir)?
                .into_iter()
                .filter(|p| has_image_extension(p))
                .collect();
            if images.is_empty() {
                return Err(Error::file(&class_dir, "class folder holds no images"));
            }
            samples.extend(images.into_iter().map(|p| (p, label)));
        }
        if samples.is_empty() {
            let flat = sorted_entries(root)?
                .iter()
                .any(|p| p.is_file() && has_image_extension(p));
            return Err(Error::file(
                root,
                if flat {
                    "holds images but no class folders: give their labels with --labels (the \
                     devkit's ILSVRC2012_validation_ground_truth.txt, Kaggle's \
                     LOC_val_solution.csv or a '<file> <class index>' list)"
                } else {
                    "no class folders with images found"
                },
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            samples,
            preprocess,
        })
    }

    /// A flat folder of images labelled by a label file (see [`crate::data::labels`]).
    pub fn with_labels(root: &Path, labels: &Path, preprocess: Preprocess) -> Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
            samples: crate::data::labels::labelled_images(root, labels)?,
            preprocess,
        })
    }

    pub fn path(&self, index: usize) -> &Path {
        &self.samples[index].0
    }

    fn decode(&self, index: usize) -> Result<Vec<u8>> {
        let path = &self.samples[index].0;
        let img = read_rgb(path, self.preprocess)?;
        let img = match self.preprocess {
            Preprocess::ResizeCrop { resize, crop } => {
                center_crop(&resize_shorter(&img, resize), crop)
            }
            Preprocess::AsIs { size } => {
                if img.dimensions() != (size, size) {
                    return Err(Error::file(
                        path,
                        format!("image is {:?}, expected {size}×{size}", img.dimensions()),
                    ));
                }
                img
            }
        };
        Ok(to_chw(&img))
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn image_shape(&self) -> [usize; 3] {
        let side = self.preprocess.output_side() as usize;
        [3, side, side]
    }
    fn num_classes(&self) -> usize {
        1000
    }
    fn label(&self, index: usize) -> usize {
        self.samples[index].1
    }
    fn load_u8(&self, indices: &[usize]) -> Result<Vec<u8>> {
        let images: Vec<Vec<u8>> = indices
            .par_iter()
            .map(|&i| self.decode(i))
            .collect::<Result<_>>()?;
        Ok(images.concat())
    }
    fn source(&self) -> String {
        self.root.display().to_string()
    }
    fn content(&self, index: usize) -> Result<Vec<u8>> {
        let path = &self.samples[index].0;
        fs::read(path).map_err(|e| Error::io(path, "cannot read image", e))
    }
    fn item_name(&self, index: usize) -> Option<(String, String)> {
        let path = &self.samples[index].0;
        let file = path.file_name()?.to_str()?.to_string();
        let class = imagenet_wnids().get(self.samples[index].1)?.to_string();
        Some((class, file))
    }
    fn load_u8_random_resized(
        &self,
        indices: &[usize],
        seed: u64,
        epoch: usize,
    ) -> Result<Vec<u8>> {
        let side = self.preprocess.output_side();
        let images: Vec<Vec<u8>> = indices
            .par_iter()
            .map(|&i| {
                let img = read_rgb(&self.samples[i].0, self.preprocess)?;
                let mut rng = training_stream(seed, epoch, i);
                Ok(to_chw(&random_resized_crop(&img, side, &mut rng)))
            })
            .collect::<Result<_>>()?;
        Ok(images.concat())
    }
}

fn training_stream(seed: u64, epoch: usize, index: usize) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(
        seed ^ ((epoch as u64) << 40) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// torchvision's RandomResizedCrop(size, scale (0.08, 1), ratio (3/4, 4/3)) + RandomHorizontalFlip:
/// ten tries at a random area and log-uniform aspect ratio, else a centre crop.
pub fn random_resized_crop(img: &RgbImage, size: u32, rng: &mut impl rand::Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let area = (w * h) as f64;
    let (ln_lo, ln_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    let mut window = None;
    for _ in 0..10 {
        let target = area * rng.random_range(0.08..1.0);
        let ratio = rng.random_range(ln_lo..ln_hi).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            window = Some((
                rng.random_range(0..=w - cw),
                rng.random_range(0..=h - ch),
                cw,
                ch,
            ));
            break;
        }
    }
    let (x, y, cw, ch) = window.unwrap_or_else(|| {
        let side = w.min(h);
        ((w - side) / 2, (h - side) / 2, side, side)
    });
    let crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
    let resized = pil_resize(
        crop.as_raw(),
        cw as usize,
        ch as usize,
        size as usize,
        size as usize,
        ResizeFilter::Bilinear,
    );
    let mut out = RgbImage::from_raw(size, size, resized).expect("matching size");
    if rng.random_bool(0.5) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// PIL's refusal threshold (`2 × Image.MAX_IMAGE_PIXELS`): a larger image is most likely a
/// decompression bomb.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 178_956_970;

static MAX_IMAGE_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_IMAGE_PIXELS);

/// Sets the largest image (in pixels, before and after resizing) the process decodes — a
/// process-wide setting, like PIL's `Image.MAX_IMAGE_PIXELS`.
pub fn set_max_image_pixels(pixels: u64) {
    MAX_IMAGE_PIXELS.store(pixels, Ordering::Relaxed);
}

pub fn max_image_pixels() -> u64 {
    MAX_IMAGE_PIXELS.load(Ordering::Relaxed)
}

/// Checks what the file's header declares before anything is decoded: the pixel count, the
/// size after the shorter-side resize, and (JPEG) that the file was not cut short.
fn check_image_file(bytes: &[u8], path: &Path, preprocess: Preprocess) -> Result<()> {
    let (w, h) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, "cannot read image", e))?
        .into_dimensions()
        .map_err(|e| Error::file(path, format!("cannot read the image header: {e}")))?;
    let limit = max_image_pixels();
    let pixels = w as u64 * h as u64;
    if pixels > limit || w == 0 || h == 0 {
        return Err(Error::file(
            path,
            format!(
                "declares {w}×{h} = {pixels} pixels, outside 1..={limit} \
                 (--max-image-pixels; a decompression bomb or a damaged header?)"
            ),
        ));
    }
    if let Preprocess::ResizeCrop { resize, .. } = preprocess {
        let (short, long) = (w.min(h) as u64, w.max(h) as u64);
        let resized_long = resize as u64 * long / short;
        if resize as u64 * resized_long > limit {
            return Err(Error::file(
                path,
                format!(
                    "is {w}×{h}: Resize({resize}) would make it {resize}×{resized_long}, over \
                     {limit} pixels (--max-image-pixels); the aspect ratio is not a photograph's"
                ),
            ));
        }
    }
    if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(bytes) {
        return Err(Error::file(
            path,
            "truncated JPEG: no end-of-image marker after the last scan (PIL: \"image file is truncated\")",
        ));
    }
    Ok(())
}

/// Whether a JPEG's last end-of-image marker follows its last start-of-scan marker. Inside the
/// entropy-coded data every 0xFF byte is stuffed, so neither marker can occur there by chance.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    matches!((last(0xDA), last(0xD9)), (Some(scan), Some(end)) if end > scan)
}

/// Decodes an image file to RGB; JPEGs with libjpeg-turbo, as PIL (and so torchvision) does.
fn read_rgb(path: &Path, preprocess: Preprocess) -> Result<RgbImage> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read image", e))?;
    check_image_file(&bytes, path, preprocess)?;
    let rgb = corruptions::decode_rgb(&bytes).map_err(|e| Error::file(path, e.to_string()))?;
    let (w, h) = (rgb.width() as u32, rgb.height() as u32);
    Ok(RgbImage::from_raw(w, h, rgb.into_bytes()).expect("matching size"))
}

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "cannot list directory", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// torchvision's Resize(int) on PIL images: the shorter side becomes `target`, the longer one
/// scales with it (truncated), PIL's bilinear resampling (antialiased, fixed point).
pub fn resize_shorter(img: &RgbImage, target: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (target, (target as u64 * h as u64 / w as u64) as u32)
    } else {
        ((target as u64 * w as u64 / h as u64) as u32, target)
    };
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    let resized = pil_resize(
        img.as_raw(),
        w as usize,
        h as usize,
        nw as usize,
        nh as usize,
        ResizeFilter::Bilinear,
    );
    RgbImage::from_raw(nw, nh, resized).expect("matching size")
}

/// torchvision's CenterCrop: offsets `round((side − crop) / 2)` with Python's ties-to-even.
pub fn center_crop(img: &RgbImage, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let left = ((w.saturating_sub(crop)) as f64 / 2.0).round_ties_even() as u32;
    let top = ((h.saturating_sub(crop)) as f64 / 2.0).round_ties_even() as u32;
    image::imageops::crop_imm(img, left, top, crop.min(w), crop.min(h)).to_image()
}

/// HWC RGB → CHW planes.
pub fn to_chw(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        out[i] = px[0];
        out[plane + i] = px[1];
        out[2 * plane + i] = px[2];
    }
    out
}
