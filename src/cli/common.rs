//! Arguments shared by the commands, and turning them into a model and a data set.

use crate::kernels::ConvBackend;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::{json, Value};

use crate::bundled;
use crate::checkpoint::{self, Format};
use crate::csc::Solver;
use crate::data::{self, DataSource, Dataset, DatasetKind, Split};
use crate::device::{backend_name, DeviceChoice};
use crate::error::{Error, Result};
use crate::models::{Domain, LambdaTarget, ModelSpec, Network};

/// The model used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "sdnet18";

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Architecture (see `robust-eval models`); defaults to the bundled model.
    #[arg(long)]
    pub model: Option<String>,
    /// Weights: a robust-eval checkpoint or a PyTorch file (official SDNet, torchvision,
    /// pytorch_resnet_cifar10). Without it, the bundled checkpoint of the model is used.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Use randomly initialised weights (for timing and testing only).
    #[arg(long, conflicts_with = "checkpoint")]
    pub random_init: bool,
    /// Width multiplier of the 18/34 families (1 = 64 channels in the first stage; default 1, or
    /// the width of the bundled checkpoint).
    #[arg(long)]
    pub width: Option<f64>,
    /// λ of every CSC layer (SDNet models; official default 0.1).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Unrolled CSC iterations (official default 2).
    #[arg(long)]
    pub csc_steps: Option<usize>,
    /// Extrapolation for CSC iterations beyond the second: fista, official or ista.
    #[arg(long, default_value = "fista")]
    pub csc_solver: String,
    /// Seed for random initialisation and every random draw of the command.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Data set kind: cifar10, cifar100 or imagenet.
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// A CIFAR .bin file or directory, or an ImageNet folder (<wnid>/<image>).
    /// Default: the 1000 bundled CIFAR-10 test images.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which split of a CIFAR directory to read.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Directory for the CSV, JSON and per-sample files.
    #[arg(long, default_value = "results")]
    pub out_dir: PathBuf,
    /// Continue an interrupted run with the same settings instead of starting over.
    #[arg(long)]
    pub resume: bool,
}

impl RunArgs {
    pub fn device(&self) -> Result<DeviceChoice> {
        self.device.parse()
    }
}

impl DataArgs {
    pub fn kind(&self) -> Result<DatasetKind> {
        self.dataset.parse()
    }

    pub fn split(&self) -> Result<Split> {
        match self.split.as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => Err(Error::input(format!(
                "unknown split '{other}' (expected train or test)"
            ))),
        }
    }

    pub fn open(&self) -> Result<Box<dyn Dataset>> {
        if self.batch_size == 0 {
            return Err(Error::input("--batch-size must be at least 1"));
        }
        if self.limit == Some(0) {
            return Err(Error::input("--limit must be at least 1"));
        }
        let source = DataSource::from_option(self.data.as_deref());
        data::open(self.kind()?, &source, self.split()?, self.limit)
    }

    pub fn describe(&self) -> String {
        match &self.data {
            Some(p) => p.display().to_string(),
            None => "bundled".into(),
        }
    }
}

/// A network ready to use and where its weights came from.
pub struct LoadedModel<B: Backend> {
    pub network: Network<B>,
    pub weights: String,
}

impl ModelArgs {
    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_MODEL)
    }

    fn solver(&self) -> Result<Solver> {
        self.csc_solver.parse().map_err(Error::input)
    }

    /// Builds the model the arguments describe, with its weights, for this data set.
    pub fn load<B: ConvBackend>(
        &self,
        kind: DatasetKind,
        device: &B::Device,
    ) -> Result<LoadedModel<B>> {
        let solver = self.solver()?;
        let mut loaded = self.load_weights(kind, device)?;
        let network = &mut loaded.network;
        let classes = network.spec().num_classes;
        if classes != kind.num_classes() {
            return Err(Error::input(format!(
                "the model has {classes} classes but {} has {}",
                kind.name(),
                kind.num_classes()
            )));
        }
        if let Some(lambda) = self.lambda {
            check_lambda(lambda)?;
            network.set_lambda(LambdaTarget::All, lambda);
        }
        let steps = self.csc_steps.unwrap_or(network.spec().csc.n_steps);
        if steps == 0 {
            return Err(Error::input("--csc-steps must be at least 1"));
        }
        network.set_csc_steps(steps, solver);
        Ok(loaded)
    }

    fn load_weights<B: ConvBackend>(
        &self,
        kind: DatasetKind,
        device: &B::Device,
    ) -> Result<LoadedModel<B>> {
        if let Some(path) = &self.checkpoint {
            return self.load_checkpoint(path, kind, device);
        }
        let name = self.model_name();
        if self.random_init {
            let spec = self.spec(name, kind)?;
            return Ok(LoadedModel {
                network: Network::new(&spec, self.seed, device),
                weights: format!("random initialisation (seed {})", self.seed),
            });
        }
        match bundled::find(name, kind, self.width) {
            Some(b) => Ok(LoadedModel {
                network: b.load(device)?,
                weights: format!("bundled {} ({})", b.file, b.origin),
            }),
            None => {
                Err(Error::input(format!(
                "no bundled {name} checkpoint for {}{}: give --checkpoint FILE (or --random-init)",
                kind.name(),
                self.width.map(|w| format!(" at width {w}")).unwrap_or_default()
            )))
            }
        }
    }

    fn load_checkpoint<B: ConvBackend>(
        &self,
        path: &Path,
        kind: DatasetKind,
        device: &B::Device,
    ) -> Result<LoadedModel<B>> {
        let network = match checkpoint::detect_format(path)? {
            Format::Native => {
                let stored = checkpoint::read_native_spec(path)?;
                if let Some(name) = &self.model {
                    if *name != stored.name() {
                        return Err(Error::CheckpointMismatch {
                            path: path.to_path_buf(),
                            model: name.clone(),
                            details: format!("  the checkpoint holds a {}", stored.name()),
                        });
                    }
                }
                checkpoint::load_native(path, device)?
            }
            Format::Pytorch => {
                let name = self.model.as_deref().ok_or_else(|| {
                    Error::input(
                        "PyTorch checkpoints do not record their architecture: give --model",
                    )
                })?;
                let spec = self.spec(name, kind)?;
                let mut network = Network::new(&spec, self.seed, device);
                checkpoint::import_pytorch(&mut network, path)?;
                network
            }
        };
        Ok(LoadedModel {
            network,
            weights: path.display().to_string(),
        })
    }

    fn spec(&self, name: &str, kind: DatasetKind) -> Result<ModelSpec> {
        let domain = match kind {
            DatasetKind::Imagenet => Domain::Imagenet,
            _ => Domain::Cifar,
        };
        ModelSpec::new(name, domain, kind.num_classes())?.with_width(self.width.unwrap_or(1.0))
    }
}

fn check_lambda(lambda: f64) -> Result<()> {
    if lambda.is_finite() && lambda >= 0.0 {
        Ok(())
    } else {
        Err(Error::input(format!(
            "λ must be a non-negative number, got {lambda}"
        )))
    }
}

/// The settings every report carries.
pub fn model_settings<B: ConvBackend>(loaded: &LoadedModel<B>) -> Value {
    let spec = loaded.network.spec();
    json!({
        "model": spec.name(),
        "weights": loaded.weights,
        "domain": spec.domain,
        "num_classes": spec.num_classes,
        "width": spec.width,
        "csc": if spec.arch.has_csc() { json!(spec.csc) } else { Value::Null },
    })
}

/// A command's settings as its JSON report carries them: plus batch size, device, backend and
/// the versions of the tool and its libraries.
pub fn settings_with_run_context(
    settings: &Value,
    batch_size: usize,
    device: DeviceChoice,
) -> Value {
    let mut full = settings.clone();
    full["batch_size"] = json!(batch_size);
    full["device"] = json!(device.to_string());
    full["backend"] = json!(backend_name(device));
    full["versions"] = crate::report::versions();
    full
}
