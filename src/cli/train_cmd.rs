//! `robust-eval train`: the official recipes, resumable, with a per-epoch log.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use crate::data::{self, DataSource, Dataset, DatasetKind, Split};
use crate::device::{backend_name, dispatch, DeviceChoice, Job};
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::models::{Domain, ModelSpec};
use crate::report::{self, progress_bar};
use crate::train::{self, peak_memory_bytes, Recipe, TrainOutcome, TrainRequest, World, WorldArgs};

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[arg(long)]
    pub model: String,
    /// cifar10, cifar100 or imagenet (selects the official recipe).
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// Training data: CIFAR .bin file or directory (train split), or an ImageNet folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation data; default for CIFAR-10: the 1000 bundled test images.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Use only the first N training images.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Directory for checkpoints, the log and the final model.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the last checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Start afresh in an --out that holds an earlier run, replacing it.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Data-parallel peers in this process: one per GPU from --device cuda:N on, or CPU peers
    /// that split the cores. The global batch (--batch-size) is split evenly among all peers.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Processes in the run, one per machine or launcher task (default: $WORLD_SIZE or
    /// $SLURM_NTASKS, else 1).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// This process's index, 0 to --nodes − 1; node 0 coordinates and writes (default: $RANK or
    /// $SLURM_PROCID).
    #[arg(long)]
    pub node_rank: Option<usize>,
    /// HOST:PORT of node 0; the run uses PORT, PORT+1 and PORT+2+R on node R (default:
    /// $MASTER_ADDR:$MASTER_PORT).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Seconds a silent peer process is waited for before the run ends with an error.
    #[arg(long, default_value_t = 60.0)]
    pub peer_timeout: f64,
    /// With --resume: accept a checkpoint written by another number of peers.
    #[arg(long, requires = "resume")]
    pub allow_world_size_change: bool,
    /// Stop after this many optimizer steps (simulates an interruption; used by tests).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

pub fn run(args: TrainArgs) -> Result<TrainOutcome> {
    let world = WorldArgs {
        workers: args.workers,
        nodes: args.nodes,
        node_rank: args.node_rank,
        coordinator: args.coordinator.clone(),
        peer_timeout_seconds: args.peer_timeout,
    }
    .resolve(&|name| std::env::var(name).ok())?;
    // Only node 0 writes; the others read --out only to resume.
    let writes = world.node_rank == 0;
    if writes && !args.resume && !args.overwrite && args.out.join("run.json").exists() {
        return Err(Error::file(
            &args.out,
            "holds a training run: continue it with --resume or replace it with --overwrite",
        ));
    }
    let device: DeviceChoice = args.device.parse()?;
    let kind: DatasetKind = args.dataset.parse()?;
    let domain = if kind == DatasetKind::Imagenet {
        Domain::Imagenet
    } else {
        Domain::Cifar
    };
    let spec = ModelSpec::new(&args.model, domain, kind.num_classes())?.with_width(args.width)?;
    let mut recipe = Recipe::for_dataset(kind);
    recipe.epochs = args.epochs.unwrap_or(recipe.epochs);
    recipe.batch_size = args.batch_size.unwrap_or(recipe.batch_size);
    recipe.lr = args.lr.unwrap_or(recipe.lr);
    recipe.seed = args.seed;
    recipe.validate()?;
    world.validate(recipe.batch_size)?;
    // Fail on an unwritable output directory before any work.
    if writes {
        report::prepare_output_dir(&args.out)?;
    }
    let train_set = data::open(
        kind,
        &DataSource::Path(args.data.clone()),
        Split::Train,
        args.limit,
    )?;
    let val_set = match (&args.val_data, kind) {
        (Some(path), _) => Some(data::open(
            kind,
            &DataSource::Path(path.clone()),
            Split::Test,
            None,
        )?),
        (None, DatasetKind::Cifar10) => {
            Some(data::open(kind, &DataSource::Bundled, Split::Test, None)?)
        }
        (None, _) => None,
    };
    let start = Instant::now();
    let outcome = dispatch(
        device,
        TrainJob {
            args: &args,
            spec: &spec,
            recipe: &recipe,
            train_set: train_set.as_ref(),
            val_set: val_set.as_deref(),
            world: &world,
            device_per_worker: matches!(device, DeviceChoice::Cuda(_)),
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_memory_bytes();
    if !writes {
        println!(
            "node {} done; node 0 reports and writes the results",
            world.node_rank
        );
        return Ok(outcome);
    }
    if let Some(last) = outcome.state.log.last() {
        println!(
            "epoch {}: train loss {:.4}, train acc {:.2} %, val acc {}, {:.0} images/s",
            last.epoch,
            last.train_loss,
            100.0 * last.train_accuracy,
            last.val_accuracy
                .map(|a| format!("{:.2} %", 100.0 * a))
                .unwrap_or("-".into()),
            last.images_per_second
        );
    }
    if outcome.interrupted {
        println!(
            "stopped after {} steps; continue with --resume",
            args.stop_after.unwrap_or(0)
        );
        return Ok(outcome);
    }
    report::write_json(
        &args.out.join("train.json"),
        &json!({
            "settings": {"model": spec, "recipe": recipe, "data": args.data.display().to_string(),
                         "train_images": train_set.len(),
                         "val_data": val_set.as_ref().map(|v| v.source()),
                         "device": device.to_string(), "backend": backend_name(device),
                         "world": {"nodes": world.nodes, "workers_per_node": world.workers,
                                   "peers": world.size(),
                                   "per_peer_batch": recipe.batch_size / world.size()},
                         "versions": report::versions()},
            "results": {"best_val_accuracy": outcome.state.best_val_accuracy, "best_epoch": outcome.state.best_epoch,
                        "final_val_accuracy": outcome.state.log.last().and_then(|e| e.val_accuracy),
                        "seconds_this_process": seconds, "peak_memory_bytes": peak,
                        "log": outcome.state.log},
        }),
    )?;
    println!(
        "best val acc {} (epoch {}), {:.0} s, peak memory {} MiB; wrote {}",
        outcome
            .state
            .best_val_accuracy
            .map(|a| format!("{:.2} %", 100.0 * a))
            .unwrap_or("-".into()),
        outcome
            .state
            .best_epoch
            .map(|e| e.to_string())
            .unwrap_or("-".into()),
        seconds,
        peak.map(|b| (b >> 20).to_string()).unwrap_or("?".into()),
        outcome.final_checkpoint.display()
    );
    Ok(outcome)
}

struct TrainJob<'a> {
    args: &'a TrainArgs,
    spec: &'a ModelSpec,
    recipe: &'a Recipe,
    train_set: &'a dyn Dataset,
    val_set: Option<&'a dyn Dataset>,
    world: &'a World,
    device_per_worker: bool,
}

impl Job for TrainJob<'_> {
    type Output = TrainOutcome;

    fn run<B: ConvBackend>(self, device: B::Device) -> Result<TrainOutcome> {
        if self.train_set.is_empty() {
            return Err(Error::input("the training set is empty"));
        }
        let bar = progress_bar(self.train_set.len() as u64, "train");
        let outcome = train::train::<B>(
            TrainRequest {
                spec: self.spec,
                recipe: self.recipe,
                train_set: self.train_set,
                val_set: self.val_set,
                out_dir: &self.args.out,
                resume: self.args.resume,
                data_description: json!({"train": self.train_set.source(), "limit": self.args.limit}),
                stop_after_iterations: self.args.stop_after,
                progress: &bar,
                world: self.world.clone(),
                allow_world_size_change: self.args.allow_world_size_change,
                device_per_worker: self.device_per_worker,
            },
            &device,
        );
        bar.finish_and_clear();
        outcome
    }
}
