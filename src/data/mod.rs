//! Image data sets: CIFAR-10/100 binaries and ImageNet-style folders, with a bundled sample of
//! 1000 real CIFAR-10 test images used when no data path is given.

pub mod cifar;
pub mod folder;
pub mod labels;
pub mod pickled;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};

pub use cifar::CifarSet;
pub use folder::ImageFolder;

/// The first 1000 images of the official CIFAR-10 test set, lossless.
pub const BUNDLED_CIFAR10: &[u8] = include_bytes!("../../data/cifar10/test_first1000.bin");

/// Which data set format and label space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Cifar10,
    Cifar100,
    Imagenet,
}

impl std::str::FromStr for DatasetKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cifar10" => Ok(Self::Cifar10),
            "cifar100" => Ok(Self::Cifar100),
            "imagenet" => Ok(Self::Imagenet),
            other => Err(Error::input(format!(
                "unknown dataset kind '{other}' (expected cifar10, cifar100 or imagenet)"
            ))),
        }
    }
}

impl DatasetKind {
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100 => 100,
            Self::Imagenet => 1000,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Imagenet => "imagenet",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// A labelled image collection that loads batches on demand.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// [channels, height, width] of every image.
    fn image_shape(&self) -> [usize; 3];
    fn num_classes(&self) -> usize;
    fn label(&self, index: usize) -> usize;
    /// uint8 pixels of the given images, each CHW (RGB planes), concatenated.
    fn load_u8(&self, indices: &[usize]) -> Result<Vec<u8>>;
    /// Where the data came from, for reports.
    fn source(&self) -> String;
    /// What identifies an image's content: its pixels, or the bytes of the file it is decoded
    /// from (hashed into the data set's fingerprint without decoding anything).
    fn content(&self, index: usize) -> Result<Vec<u8>> {
        self.load_u8(&[index])
    }
    /// (class folder, file name) of an image that came from a file, for exports.
    fn item_name(&self, _index: usize) -> Option<(String, String)> {
        None
    }
    /// Training crops: RandomResizedCrop + horizontal flip, from streams seeded by
    /// (seed, epoch, index). Only image folders hold the full-size images this needs.
    fn load_u8_random_resized(
        &self,
        _indices: &[usize],
        _seed: u64,
        _epoch: usize,
    ) -> Result<Vec<u8>> {
        Err(Error::input(format!(
            "{}: random resized crops need an image folder (use the cifar augmentation)",
            self.source()
        )))
    }
}

/// One batch: pixels in [0,1] (NCHW, f32), labels, and the data-set indices of its images.
pub struct Batch {
    pub pixels: Vec<f32>,
    pub shape: [usize; 4],
    pub labels: Vec<usize>,
    pub indices: Vec<usize>,
}

impl Batch {
    pub fn load(dataset: &dyn Dataset, indices: &[usize]) -> Result<Self> {
        let raw = dataset.load_u8(indices)?;
        let [c, h, w] = dataset.image_shape();
        Ok(Self {
            pixels: raw.iter().map(|&v| v as f32 / 255.0).collect(),
            shape: [indices.len(), c, h, w],
            labels: indices.iter().map(|&i| dataset.label(i)).collect(),
            indices: indices.to_vec(),
        })
    }

    pub fn images<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.pixels.clone(), self.shape), device)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Where to read a data set from.
#[derive(Clone, Debug)]
pub enum DataSource {
    /// The 1000 CIFAR-10 test images compiled into the binary.
    Bundled,
    Path(PathBuf),
}

impl DataSource {
    pub fn from_option(path: Option<&Path>) -> Self {
        path.map_or(Self::Bundled, |p| Self::Path(p.to_path_buf()))
    }
}

/// Opens a data set, keeping at most `limit` images (the first ones, in file order).
pub fn open(
    kind: DatasetKind,
    source: &DataSource,
    split: Split,
    limit: Option<usize>,
) -> Result<Box<dyn Dataset>> {
    open_labelled(kind, source, split, limit, None)
}

/// [`open`], with the label file of a flat ImageNet validation folder.
pub fn open_labelled(
    kind: DatasetKind,
    source: &DataSource,
    split: Split,
    limit: Option<usize>,
    labels: Option<&Path>,
) -> Result<Box<dyn Dataset>> {
    if let (Some(file), false) = (labels, kind == DatasetKind::Imagenet) {
        return Err(Error::file(
            file,
            format!(
                "--labels labels a flat ImageNet folder; {} files carry their labels",
                kind.name()
            ),
        ));
    }
    let dataset: Box<dyn Dataset> = match (kind, source) {
        (DatasetKind::Cifar10, DataSource::Bundled) => Box::new(CifarSet::from_bytes(
            BUNDLED_CIFAR10,
            kind,
            "bundled CIFAR-10 test images 0-999",
            Path::new("<bundled>"),
        )?),
        (_, DataSource::Bundled) => {
            return Err(Error::input(format!(
                "no bundled {} data: give a data path with --data",
                kind.name()
            )))
        }
        (DatasetKind::Cifar10 | DatasetKind::Cifar100, DataSource::Path(path)) => {
            Box::new(CifarSet::open(path, kind, split)?)
        }
        (DatasetKind::Imagenet, DataSource::Path(path)) => match labels {
            Some(file) => Box::new(ImageFolder::with_labels(
                path,
                file,
                folder::Preprocess::IMAGENET,
            )?),
            None => Box::new(ImageFolder::imagenet(path)?),
        },
    };
    Ok(limited(dataset, limit))
}

/// The first `limit` images of a data set (all of them without a limit).
pub fn limited(dataset: Box<dyn Dataset>, limit: Option<usize>) -> Box<dyn Dataset> {
    match limit {
        Some(n) if n < dataset.len() => Box::new(Limited {
            inner: dataset,
            len: n,
        }),
        _ => dataset,
    }
}

/// The first `len` images of another data set.
struct Limited {
    inner: Box<dyn Dataset>,
    len: usize,
}

impl Dataset for Limited {
    fn len(&self) -> usize {
        self.len
    }
    fn image_shape(&self) -> [usize; 3] {
        self.inner.image_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn label(&self, index: usize) -> usize {
        self.inner.label(index)
    }
    fn load_u8(&self, indices: &[usize]) -> Result<Vec<u8>> {
        self.inner.load_u8(indices)
    }
    fn source(&self) -> String {
        format!("{} (first {})", self.inner.source(), self.len)
    }
    fn content(&self, index: usize) -> Result<Vec<u8>> {
        self.inner.content(index)
    }
    fn item_name(&self, index: usize) -> Option<(String, String)> {
        self.inner.item_name(index)
    }
    fn load_u8_random_resized(
        &self,
        indices: &[usize],
        seed: u64,
        epoch: usize,
    ) -> Result<Vec<u8>> {
        self.inner.load_u8_random_resized(indices, seed, epoch)
    }
}
