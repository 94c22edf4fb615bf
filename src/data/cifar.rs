//! CIFAR-10/100 as distributed: the binary version (per image one label byte for CIFAR-10, a
//! coarse and a fine label byte for CIFAR-100, then 3072 bytes of R, G and B planes of 32×32) and
//! the python version torchvision downloads (`cifar-10-batches-py/`, `cifar-100-python/`: pickled
//! dicts holding a numpy array of the same planes, read without executing the pickle).

use std::fs;
use std::path::{Path, PathBuf};

use crate::data::pickled;
use crate::data::{Dataset, DatasetKind, Split};
use crate::error::{Error, Result};

const PIXELS: usize = 3 * 32 * 32;

/// A CIFAR data set held in memory.
pub struct CifarSet {
    pixels: Vec<u8>,
    labels: Vec<usize>,
    num_classes: usize,
    source: String,
}

impl CifarSet {
    /// A set from decoded images (CHW planes, 3072 bytes each) and their labels.
    pub fn from_planes(
        pixels: Vec<u8>,
        labels: Vec<usize>,
        num_classes: usize,
        source: String,
    ) -> Self {
        debug_assert_eq!(pixels.len(), labels.len() * PIXELS);
        Self {
            pixels,
            labels,
            num_classes,
            source,
        }
    }

    /// Reads a single `.bin` file or the standard files of a directory
    /// (`data_batch_1..5.bin` / `test_batch.bin` for CIFAR-10, `train.bin` / `test.bin` for CIFAR-100).
    pub fn open(path: &Path, kind: DatasetKind, split: Split) -> Result<Self> {
        let files = if path.is_dir() {
            standard_files(&layout_root(path, kind), kind, split)?
        } else {
            vec![path.to_path_buf()]
        };
        let mut set = Self {
            pixels: Vec::new(),
            labels: Vec::new(),
            num_classes: kind.num_classes(),
            source: path.display().to_string(),
        };
        for file in files {
            let bytes =
                fs::read(&file).map_err(|e| Error::io(&file, "cannot read CIFAR file", e))?;
            if pickled::is_pickle(&bytes) {
                let (pixels, labels) = pickled::read_batch(&bytes, kind, &file)?;
                set.pixels.extend_from_slice(&pixels);
                set.labels.extend(labels);
            } else {
                set.append(&bytes, kind, &file)?;
            }
        }
        Ok(set)
    }

    pub fn from_bytes(bytes: &[u8], kind: DatasetKind, source: &str, path: &Path) -> Result<Self> {
        let mut set = Self {
            pixels: Vec::new(),
            labels: Vec::new(),
            num_classes: kind.num_classes(),
            source: source.to_string(),
        };
        set.append(bytes, kind, path)?;
        Ok(set)
    }

    fn append(&mut self, bytes: &[u8], kind: DatasetKind, path: &Path) -> Result<()> {
        let label_bytes = match kind {
            DatasetKind::Cifar10 => 1,
            DatasetKind::Cifar100 => 2,
            DatasetKind::Imagenet => unreachable!("ImageNet is not a CIFAR binary"),
        };
        let record = label_bytes + PIXELS;
        if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
            return Err(Error::file(
                path,
                format!(
                    "{} bytes is not a whole number of {}-byte {} records ({} label byte(s) + 3072 pixels): \
                     the file is truncated or not {}",
                    bytes.len(),
                    record,
                    kind.name(),
                    label_bytes,
                    kind.name()
                ),
            ));
        }
        for (i, chunk) in bytes.chunks_exact(record).enumerate() {
            // CIFAR-100 stores the coarse label first; the fine label is the class.
            let label = chunk[label_bytes - 1] as usize;
            if label >= kind.num_classes() {
                return Err(Error::file(
                    path,
                    format!(
                        "record {i} has label {label}, outside 0..{} for {}",
                        kind.num_classes(),
                        kind.name()
                    ),
                ));
            }
            self.labels.push(label);
            self.pixels.extend_from_slice(&chunk[label_bytes..]);
        }
        Ok(())
    }
}

/// The folder holding the batches: `path` itself, or the archive's folder inside it (the root
/// torchvision was given, holding `cifar-10-batches-py/` or `cifar-100-python/`).
fn layout_root(path: &Path, kind: DatasetKind) -> PathBuf {
    let archives: &[&str] = match kind {
        DatasetKind::Cifar10 => &["cifar-10-batches-py", "cifar-10-batches-bin"],
        _ => &["cifar-100-python", "cifar-100-binary"],
    };
    let holds_batches = |dir: &Path| {
        ["test_batch", "test_batch.bin", "test", "test.bin"]
            .iter()
            .any(|f| dir.join(f).is_file())
    };
    if holds_batches(path) {
        return path.to_path_buf();
    }
    archives
        .iter()
        .map(|a| path.join(a))
        .find(|dir| holds_batches(dir))
        .unwrap_or_else(|| path.to_path_buf())
}

/// The files of a split: the binary version's `.bin` names, or the python version's (the same
/// names without the extension).
fn standard_files(dir: &Path, kind: DatasetKind, split: Split) -> Result<Vec<PathBuf>> {
    let binary: Vec<String> = match (kind, split) {
        (DatasetKind::Cifar10, Split::Train) => {
            (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
        }
        (DatasetKind::Cifar10, Split::Test) => vec!["test_batch.bin".into()],
        (DatasetKind::Cifar100, Split::Train) => vec!["train.bin".into()],
        (DatasetKind::Cifar100, Split::Test) => vec!["test.bin".into()],
        (DatasetKind::Imagenet, _) => unreachable!("ImageNet is not a CIFAR binary"),
    };
    let python: Vec<String> = binary
        .iter()
        .map(|n| n.trim_end_matches(".bin").to_string())
        .collect();
    let names = if python.iter().all(|n| dir.join(n).is_file())
        && !binary.iter().any(|n| dir.join(n).is_file())
    {
        python
    } else {
        binary
    };
    let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let absent: Vec<&String> = names
        .iter()
        .zip(&files)
        .filter(|(_, f)| !f.is_file())
        .map(|(n, _)| n)
        .collect();
    if !absent.is_empty() {
        return Err(Error::file(
            dir,
            format!(
                "not a {} directory (the binary or the python version, or the folder holding \
                 it): missing {}",
                kind.name(),
                absent
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(files)
}

impl Dataset for CifarSet {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn image_shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }
    fn load_u8(&self, indices: &[usize]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            out.extend_from_slice(&self.pixels[i * PIXELS..(i + 1) * PIXELS]);
        }
        Ok(out)
    }
    fn source(&self) -> String {
        self.source.clone()
    }
}
