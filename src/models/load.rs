//! From a model description (architecture, weights source, CSC settings) to a network ready to
//! evaluate, with a content identity of its weights that results and resume are keyed by.

use std::path::{Path, PathBuf};

use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundled;
use crate::checkpoint::{self, Format};
use crate::csc::Solver;
use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::models::{Domain, ModelSpec, Network, Normalization};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "sdnet18";

/// Where the weights come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsSource {
    /// The checkpoint compiled into the binary for this model and data set.
    Bundled,
    /// A robust-eval checkpoint or a PyTorch file.
    Checkpoint(PathBuf),
    /// Random initialisation from a seed (timing and tests only).
    Random(u64),
}

/// Everything that decides which network is evaluated (the λ defense aside).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Architecture; `None` takes it from a native checkpoint, or the default model.
    pub name: Option<String>,
    pub weights: WeightsSource,
    pub width: Option<f64>,
    /// Unrolled CSC iterations (default: the checkpoint's).
    pub csc_steps: Option<usize>,
    /// Extrapolation of CSC iterations beyond the second.
    #[serde(with = "crate::models::spec::solver_name")]
    pub csc_solver: Solver,
    /// Normalisation replacing the architecture's (and the checkpoint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalization>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: None,
            weights: WeightsSource::Bundled,
            width: None,
            csc_steps: None,
            csc_solver: Solver::Fista,
            normalize: None,
        }
    }
}

/// A network ready to use, where its weights came from, and their content digest.
pub struct LoadedModel<B: burn::tensor::backend::Backend> {
    pub network: Network<B>,
    /// Human-readable origin of the weights (a path, "bundled …", "random …").
    pub weights: String,
    /// SHA-256 (hex) of every parameter and buffer: names, shapes and values.
    pub identity: String,
}

impl ModelConfig {
    pub fn model_name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_MODEL)
    }

    /// Builds the network with its weights for this data set.
    pub fn load<B: ConvBackend>(
        &self,
        kind: DatasetKind,
        device: &B::Device,
    ) -> Result<LoadedModel<B>> {
        let (mut network, weights) = self.load_weights(kind, device)?;
        let classes = network.spec().num_classes;
        if classes != kind.num_classes() {
            return Err(Error::input(format!(
                "the model has {classes} classes but {} has {}",
                kind.name(),
                kind.num_classes()
            )));
        }
        let steps = self.csc_steps.unwrap_or(network.spec().csc.n_steps);
        if steps == 0 {
            return Err(Error::input("--csc-steps must be at least 1"));
        }
        network.set_csc_steps(steps, self.csc_solver);
        if let Some(normalization) = self.normalize {
            network.set_normalization(normalization);
        }
        let identity = weights_digest(&network);
        Ok(LoadedModel {
            network,
            weights,
            identity,
        })
    }

    fn load_weights<B: ConvBackend>(
        &self,
        kind: DatasetKind,
        device: &B::Device,
    ) -> Result<(Network<B>, String)> {
        let name = self.model_name();
        match &self.weights {
            WeightsSource::Checkpoint(path) => Ok((
                self.load_checkpoint(path, kind, device)?,
                path.display().to_string(),
            )),
            WeightsSource::Random(seed) => Ok((
                Network::new(&self.spec(name, kind)?, *seed, device),
                format!("random initialisation (seed {seed})"),
            )),
            WeightsSource::Bundled => match bundled::find(name, kind, self.width) {
                Some(b) => Ok((b.load(device)?, format!("bundled {} ({})", b.file, b.origin))),
                None => Err(Error::input(format!(
                    "no bundled {name} checkpoint for {}{}: give --checkpoint FILE (or --random-init)",
                    kind.name(),
                    self.width.map(|w| format!(" at width {w}")).unwrap_or_default()
                ))),
            },
        }
    }

    fn load_checkpoint<B: ConvBackend>(
        &self,
        path: &Path,
        kind: DatasetKind,
        device: &B::Device,
    ) -> Result<Network<B>> {
        match checkpoint::detect_format(path)? {
            Format::Native => {
                let stored = checkpoint::read_native_spec(path)?;
                if let Some(name) = &self.name {
                    if *name != stored.name() {
                        return Err(Error::CheckpointMismatch {
                            path: path.to_path_buf(),
                            model: name.clone(),
                            details: format!("  the checkpoint holds a {}", stored.name()),
                        });
                    }
                }
                checkpoint::load_native(path, device)
            }
            Format::Pytorch | Format::Safetensors => {
                let name = self.name.as_deref().ok_or_else(|| {
                    Error::input(
                        "PyTorch and safetensors checkpoints do not record their architecture: \
                         give --model",
                    )
                })?;
                let mut network = Network::for_loading(&self.spec(name, kind)?, device);
                checkpoint::load_weights(&mut network, path)?;
                Ok(network)
            }
        }
    }

    fn spec(&self, name: &str, kind: DatasetKind) -> Result<ModelSpec> {
        let domain = match kind {
            DatasetKind::Imagenet => Domain::Imagenet,
            _ => Domain::Cifar,
        };
        ModelSpec::new(name, domain, kind.num_classes())?.with_width(self.width.unwrap_or(1.0))
    }
}

/// SHA-256 over the network's tensors in a fixed order (name, shape, f32 little-endian values):
/// the same weights give the same digest whatever file format or path they came from.
pub fn weights_digest<B: ConvBackend>(network: &Network<B>) -> String {
    let mut snapshots = network.collect(None, None, true);
    snapshots.sort_by_key(|s| s.full_path());
    let mut hasher = Sha256::new();
    for snapshot in snapshots {
        hasher.update(snapshot.full_path().as_bytes());
        let data = snapshot
            .to_data()
            .expect("a network tensor can be read")
            .convert::<f32>();
        hasher.update(format!("{:?}", data.shape).as_bytes());
        for v in data.to_vec::<f32>().expect("f32 values") {
            hasher.update(v.to_le_bytes());
        }
    }
    hex(&hasher.finalize())
}

/// Lower-case hexadecimal of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
