//! The data a plan evaluates on, and a cheap content identity for it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::data::{self, DataSource, Dataset, DatasetKind, Split};
use crate::error::{Error, Result};
use crate::models::load::hex;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// A CIFAR .bin file or directory, or an ImageNet folder; `None`: the bundled images.
    pub path: Option<PathBuf>,
    pub split: Split,
    /// Only the first N images.
    pub limit: Option<usize>,
    /// The label file of a flat ImageNet validation folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
}

impl DataConfig {
    pub fn bundled() -> Self {
        Self {
            dataset: DatasetKind::Cifar10,
            path: None,
            split: Split::Test,
            limit: None,
            labels: None,
        }
    }

    pub fn open(&self) -> Result<Box<dyn Dataset>> {
        if self.limit == Some(0) {
            return Err(Error::input("--limit must be at least 1"));
        }
        let source = DataSource::from_option(self.path.as_deref());
        data::open_labelled(
            self.dataset,
            &source,
            self.split,
            self.limit,
            self.labels.as_deref(),
        )
    }

    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "bundled".into(),
        }
    }
}

/// The data set as results record it: what was asked for, what was read, and a fingerprint
/// (SHA-256 of every label and of every image's content — its pixels, or its file's bytes in an
/// image folder) that tells two data sets apart whatever their paths.
pub fn data_identity(config: &DataConfig, dataset: &dyn Dataset) -> Result<Value> {
    let n = dataset.len();
    let mut hasher = Sha256::new();
    for i in 0..n {
        hasher.update((dataset.label(i) as u32).to_le_bytes());
        let content = dataset.content(i)?;
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    Ok(json!({
        "dataset": config.dataset.name(),
        "path": config.describe(),
        "split": config.split,
        "limit": config.limit,
        "n": n,
        "source": dataset.source(),
        "fingerprint": hex(&hasher.finalize())[..16],
    }))
}
