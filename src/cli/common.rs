//! Arguments shared by the evaluation commands, and turning them into a plan.

use std::path::PathBuf;

use clap::Args;

use crate::data::Split;
use crate::defense::Schedule;
use crate::error::{Error, Result};
use crate::evaluate::{DataConfig, Defense, ModelEntry, Plan};
use crate::models::{ModelConfig, Normalization, WeightsSource};

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Architecture (see `robust-eval models`); defaults to the bundled model.
    #[arg(long)]
    pub model: Option<String>,
    /// Weights: a robust-eval checkpoint, a PyTorch file (.pt/.pth/.th: a state dict, bare or
    /// in a training checkpoint) or a safetensors file, in the key names of official SDNet,
    /// RobustBench, DeepMind, torchvision or pytorch_resnet_cifar10. Without it, the bundled
    /// checkpoint of the model is used.
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
    #[arg(long, conflicts_with = "defense")]
    pub lambda: Option<f64>,
    /// A test-time λ schedule (SDNet models): `fixed:0.5` (every CSC layer), `first=0.5`,
    /// `fixed:layer0=0.5,layer1.0.conv1=0.2`, `noise:a=0.1,b=8`, `residual:a=…,b=…`, or a
    /// schedule .json written by `lambda calibrate`.
    #[arg(long)]
    pub defense: Option<String>,
    /// Test-time BatchNorm adaptation: BatchNorm normalises with each test batch's statistics
    /// (any model; alone or with --defense). Predictions then depend on the batch.
    #[arg(long)]
    pub bn_adapt: bool,
    /// Unrolled CSC iterations (official default 2).
    #[arg(long)]
    pub csc_steps: Option<usize>,
    /// Extrapolation for CSC iterations beyond the second: fista, official or ista.
    #[arg(long, default_value = "fista")]
    pub csc_solver: String,
    /// Normalisation inside the model, replacing the architecture's default and any mean/std
    /// the checkpoint carries: none, imagenet, cifar10, cifar100 (DeepMind's statistics),
    /// MEAN,STD or m1,m2,m3,s1,s2,s3.
    #[arg(long)]
    pub normalize: Option<String>,
    /// Seed for random initialisation and every random draw of the command.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Data set kind: cifar10, cifar100 or imagenet.
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// CIFAR: a .bin or python batch file, or a directory (the binary or the python version,
    /// or the root torchvision downloaded into); ImageNet: a folder of <wnid>/<image>, or a flat
    /// folder with --labels. Default: the 1000 bundled CIFAR-10 test images.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Labels of a flat ImageNet validation folder (ILSVRC2012_val_*.JPEG): the devkit's
    /// ILSVRC2012_validation_ground_truth.txt, Kaggle's LOC_val_solution.csv, or a
    /// '<file> <class index>' list such as Caffe's val.txt.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Which split of a CIFAR directory to read (default: test).
    #[arg(long)]
    pub split: Option<String>,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Refuse images larger than this many pixels, as declared by their headers and after the
    /// shorter-side resize (PIL's convention: 178956970).
    #[arg(long, default_value_t = crate::data::folder::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Directory for results.csv, results.jsonl, samples.csv and the per-cell journals.
    #[arg(long, default_value = "results")]
    pub out_dir: PathBuf,
    /// Continue interrupted cells (the default: finished cells and batches in --out-dir are
    /// always reused; the flag is kept for scripts).
    #[arg(long)]
    pub resume: bool,
    /// Recompute this command's cells, discarding what earlier runs left for them.
    #[arg(long, conflicts_with = "resume")]
    pub fresh: bool,
}

impl ModelArgs {
    pub fn config(&self) -> Result<ModelConfig> {
        let weights = match (&self.checkpoint, self.random_init) {
            (Some(path), _) => WeightsSource::Checkpoint(path.clone()),
            (None, true) => WeightsSource::Random(self.seed),
            (None, false) => WeightsSource::Bundled,
        };
        Ok(ModelConfig {
            name: self.model.clone(),
            weights,
            width: self.width,
            csc_steps: self.csc_steps,
            csc_solver: self.csc_solver.parse().map_err(Error::input)?,
            normalize: self
                .normalize
                .as_deref()
                .map(Normalization::parse)
                .transpose()?,
        })
    }

    pub fn defense(&self) -> Result<Defense> {
        let schedule = match (&self.defense, self.lambda) {
            (Some(spec), _) => Some(Schedule::parse(spec)?),
            (None, Some(lambda)) => Some(Schedule::parse(&format!("fixed:all={lambda}"))?),
            (None, None) => None,
        };
        Ok(Defense::from_parts(schedule, self.bn_adapt))
    }

    pub fn entry(&self) -> Result<ModelEntry> {
        Ok(ModelEntry::new(self.config()?, self.defense()?))
    }
}

impl DataArgs {
    pub fn config(&self) -> Result<DataConfig> {
        if let (Some(split), Some(path)) = (&self.split, &self.data) {
            if path.is_file() {
                eprintln!(
                    "warning: --split {split} is ignored: {} is a single file (the split picks \
                     the files of a CIFAR directory)",
                    path.display()
                );
            }
        }
        let split = match self.split.as_deref().unwrap_or("test") {
            "train" => Split::Train,
            "test" => Split::Test,
            other => {
                return Err(Error::input(format!(
                    "unknown split '{other}' (expected train or test)"
                )))
            }
        };
        crate::data::folder::set_max_image_pixels(self.max_image_pixels);
        Ok(DataConfig {
            dataset: self.dataset.parse()?,
            path: self.data.clone(),
            split,
            limit: self.limit,
            labels: self.labels.clone(),
        })
    }
}

/// A one-model plan from the shared arguments; `name` puts the results in `<out-dir>/<name>/`.
pub fn single_model_plan(
    command: &str,
    model: &ModelArgs,
    data: &DataArgs,
    run: &RunArgs,
    name: Option<&str>,
) -> Result<Plan> {
    let mut plan = Plan::new(command, vec![model.entry()?], data.config()?);
    plan.batch_size = data.batch_size;
    plan.seed = model.seed;
    plan.device = run.device.parse()?;
    plan.fresh = run.fresh;
    plan.out_dir = match name {
        Some(name) => run.out_dir.join(checked_name(name)?),
        None => run.out_dir.clone(),
    };
    Ok(plan)
}

/// A results name is one path component: it cannot escape the output directory.
fn checked_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.contains('\0');
    if plain {
        Ok(name)
    } else {
        Err(Error::input(format!(
            "--name '{name}' must be a plain file name (no path separators, not . or ..)"
        )))
    }
}
