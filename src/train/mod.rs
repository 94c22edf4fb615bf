//! Training with the official SDNet recipes, resumable at every epoch boundary.
//!
//! Every epoch writes a checkpoint directory atomically (model, optimizer state, the position in
//! the schedule, the log); the random streams (shuffling, augmentation, CSC power-iteration starts)
//! depend only on (seed, epoch, image), so a resumed run ends with the same weights as an
//! uninterrupted one.
//!
//! With `--workers`/`--nodes` the same loop runs on every peer of a data-parallel run
//! ([`distributed`]); each peer trains on its shard of the epoch ([`World::shard`]).

pub mod augment;
pub mod control;
mod distributed;
pub mod recipe;
pub mod world;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::ElementConversion;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::checkpoint;
use crate::data::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::eval::{evaluate, Accuracy, EvalRequest};
use crate::kernels::ConvBackend;
use crate::models::{ModelSpec, Network};
use crate::report;
use distributed::Peer;
pub use recipe::{Augmentation, Recipe, Schedule};
pub use world::{World, WorldArgs};

/// One line of the training log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub images_per_second: f64,
    pub seconds: f64,
    /// Of `seconds`, the time rank 0 spent in all-reduces (waiting for the others included).
    #[serde(default)]
    pub sync_seconds: f64,
}

/// Where a run stands; saved with every checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Completed optimizer steps.
    pub iteration: usize,
    pub best_val_accuracy: Option<f64>,
    pub best_epoch: Option<usize>,
    pub log: Vec<EpochLog>,
    /// Peers that trained it (a resume with another number is refused unless allowed).
    #[serde(default = "one")]
    pub world_size: usize,
    /// Identifies the run: recipe, model, data (a resume with anything else is refused).
    pub run: serde_json::Value,
}

fn one() -> usize {
    1
}

/// The result of [`train`].
pub struct TrainOutcome {
    pub state: TrainState,
    /// Whether the run stopped early because of `stop_after_iterations`.
    pub interrupted: bool,
    pub final_checkpoint: PathBuf,
}

/// Everything a training run needs.
pub struct TrainRequest<'a> {
    pub spec: &'a ModelSpec,
    pub recipe: &'a Recipe,
    pub train_set: &'a dyn Dataset,
    pub val_set: Option<&'a dyn Dataset>,
    pub out_dir: &'a Path,
    pub resume: bool,
    /// Identifies the data for the resume check.
    pub data_description: serde_json::Value,
    /// Stop (without checkpointing the partial epoch) after this many optimizer steps in this
    /// process — simulates an interruption.
    pub stop_after_iterations: Option<usize>,
    pub progress: &'a ProgressBar,
    /// The peers of the run; [`World::single`] for plain training.
    pub world: World,
    /// Resume a checkpoint written by another number of peers (the schedule goes on by step).
    pub allow_world_size_change: bool,
    /// Give local peer k device index + k (GPUs); CPU peers share the device.
    pub device_per_worker: bool,
}

type Optim<B> =
    burn::optim::adaptor::OptimizerAdaptor<burn::optim::Sgd<B>, Network<Autodiff<B>>, Autodiff<B>>;

const CHECKPOINT: &str = "checkpoint";

/// Trains a network; see the module documentation.
pub fn train<B: ConvBackend>(
    request: TrainRequest<'_>,
    device: &B::Device,
) -> Result<TrainOutcome> {
    request.recipe.validate()?;
    if request.world.is_distributed() {
        distributed::train::<B>(&request, device)
    } else {
        train_peer::<B>(&request, &Peer::solo(&request.world), device)
    }
}

/// The training loop of one peer (the only one in plain training).
fn train_peer<B: ConvBackend>(
    request: &TrainRequest<'_>,
    peer: &Peer<'_>,
    device: &B::Device,
) -> Result<TrainOutcome> {
    let recipe = request.recipe;
    let world = &request.world;
    let run = json!({"model": request.spec, "recipe": recipe, "data": request.data_description});
    let (mut network, mut optimizer, mut state) = start::<B>(request, &run, device)?;
    let sync = peer.collective();
    let control = match sync {
        Some(_) => distributed::join::<B>(
            peer,
            || distributed::announcement::<B>(world, &run, &network, &optimizer, &state),
            device,
        )?,
        None => None,
    };
    if peer.writes() {
        report::write_json(&request.out_dir.join("run.json"), &run)?;
    }
    let progress = match peer.local_rank {
        0 => request.progress.clone(),
        _ => ProgressBar::hidden(),
    };
    let n = request.train_set.len();
    let per_peer_batch = recipe.batch_size / world.size();
    let steps_per_epoch = n.div_ceil(world.size()).div_ceil(per_peer_batch);
    let total_steps = steps_per_epoch * recipe.epochs;
    let mut steps_here = 0;
    while state.epoch < recipe.epochs {
        let epoch = state.epoch;
        let start = Instant::now();
        let order = world.shard(&augment::epoch_order(recipe.seed, epoch, n), peer.rank);
        progress.reset();
        progress.set_length(order.len() as u64);
        progress.set_prefix(format!("epoch {}/{}", epoch + 1, recipe.epochs));
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0.0, 0.0, recipe.lr);
        let mut sync_seconds = 0.0;
        for chunk in order.chunks(per_peer_batch) {
            if request.stop_after_iterations == Some(steps_here) {
                if sync.is_some() {
                    distributed::leave::<B>(peer, control)?;
                }
                return Ok(TrainOutcome {
                    state,
                    interrupted: true,
                    final_checkpoint: request.out_dir.join(CHECKPOINT),
                });
            }
            let batch = recipe
                .augmentation
                .batch(request.train_set, chunk, recipe.seed, epoch)?;
            lr = recipe
                .schedule
                .lr(recipe, state.iteration, total_steps, steps_per_epoch);
            let (loss, hits, synced) =
                step::<B>(&mut network, &mut optimizer, &batch, lr, peer, device)?;
            sync_seconds += synced;
            loss_sum += loss * batch.len() as f64;
            correct += hits as f64;
            seen += batch.len() as f64;
            state.iteration += 1;
            steps_here += 1;
            progress.inc(batch.len() as u64);
        }
        if let Some(id) = sync {
            let before = Instant::now();
            [loss_sum, correct, seen] =
                distributed::sum_over_peers::<B, 3>(peer, id, [loss_sum, correct, seen], device)?;
            sync_seconds += before.elapsed().as_secs_f64();
        }
        let seconds = start.elapsed().as_secs_f64();
        state.epoch += 1;
        let val_accuracy = match (request.val_set, peer.writes()) {
            (Some(val), true) => Some(validate(&network, val, recipe.batch_size, device)?),
            _ => None,
        };
        state.log.push(EpochLog {
            epoch: state.epoch,
            train_loss: loss_sum / seen.max(1.0),
            train_accuracy: correct / seen.max(1.0),
            val_accuracy,
            lr,
            images_per_second: seen / seconds.max(1e-9),
            seconds,
            sync_seconds,
        });
        if peer.writes() {
            if let Some(acc) = val_accuracy {
                if state.best_val_accuracy.is_none_or(|best| acc > best) {
                    state.best_val_accuracy = Some(acc);
                    state.best_epoch = Some(state.epoch);
                    checkpoint::save(&network, &request.out_dir.join("best.bpk"))?;
                }
            }
            save_checkpoint(request.out_dir, &network, &optimizer, &state)?;
            write_log(request.out_dir, &state.log)?;
        }
    }
    if sync.is_some() {
        distributed::leave::<B>(peer, control)?;
    }
    let final_path = request.out_dir.join("final.bpk");
    if peer.writes() {
        checkpoint::save(&network, &final_path)?;
    }
    Ok(TrainOutcome {
        state,
        interrupted: false,
        final_checkpoint: final_path,
    })
}

/// A fresh network, or the run restored from the last checkpoint in the output directory.
fn start<B: ConvBackend>(
    request: &TrainRequest<'_>,
    run: &serde_json::Value,
    device: &B::Device,
) -> Result<(Network<Autodiff<B>>, Optim<B>, TrainState)> {
    let world_size = request.world.size();
    if !request.resume {
        let network = Network::<Autodiff<B>>::new(request.spec, request.recipe.seed, device)
            .with_positional_ids();
        let state = TrainState {
            run: run.clone(),
            world_size,
            ..TrainState::default()
        };
        return Ok((network, request.recipe.optimizer::<B>(), state));
    }
    let (network, optimizer, mut state) =
        restore::<B>(request.out_dir, run, request.recipe, device)?;
    if state.world_size != world_size {
        if !request.allow_world_size_change {
            return Err(Error::input(format!(
                "cannot resume from {}: it was trained by {} peer(s), this run has {world_size}; \
                 the shards and per-peer batches would change. Resume with the same \
                 --nodes × --workers, or pass --allow-world-size-change to go on by global step",
                request.out_dir.display(),
                state.world_size
            )));
        }
        state.world_size = world_size;
    }
    Ok((network, optimizer, state))
}

/// One optimizer step; returns the mean loss, the number of correct predictions and the seconds
/// spent averaging the gradients with the other peers.
fn step<B: ConvBackend>(
    network: &mut Network<Autodiff<B>>,
    optimizer: &mut Optim<B>,
    batch: &Batch,
    lr: f64,
    peer: &Peer<'_>,
    device: &B::Device,
) -> Result<(f64, usize, f64)> {
    let images = batch.images::<Autodiff<B>>(device);
    let logits = network.forward_train(images);
    let losses = attacks::cross_entropy(logits.clone(), &batch.labels);
    let loss = losses.mean();
    let loss_value: f64 = loss.clone().into_scalar().elem();
    if !loss_value.is_finite() {
        return Err(Error::input(format!(
            "training diverged: loss is {loss_value} at learning rate {lr} (lower --lr)"
        )));
    }
    let predictions = attacks::argmax(logits.inner());
    let hits = predictions
        .iter()
        .zip(&batch.labels)
        .filter(|(p, l)| p == l)
        .count();
    let mut grads = GradientsParams::from_grads(loss.backward(), &*network);
    let mut synced = 0.0;
    if let Some(id) = peer.collective() {
        let before = Instant::now();
        grads = distributed::average_gradients::<B>(peer, id, grads)?;
        synced = before.elapsed().as_secs_f64();
    }
    let mut updated = optimizer.step(lr, network.clone(), grads);
    updated.normalize_dictionaries();
    *network = updated;
    Ok((loss_value, hits, synced))
}

fn validate<B: ConvBackend>(
    network: &Network<Autodiff<B>>,
    val: &dyn Dataset,
    batch_size: usize,
    device: &B::Device,
) -> Result<f64> {
    let mut frozen: Network<B> = network.valid();
    frozen.reset_step_caches(); // the copy shares the cache with the trainable network
    let indices: Vec<usize> = (0..val.len()).collect();
    let evaluation = evaluate(
        EvalRequest {
            model: &frozen,
            dataset: val,
            indices: &indices,
            batch_size,
            device,
            progress: &ProgressBar::hidden(),
        },
        |_| Ok(()),
    )?;
    Ok(Accuracy::of(&evaluation.predictions).top1)
}

fn save_checkpoint<B: ConvBackend>(
    out_dir: &Path,
    network: &Network<Autodiff<B>>,
    optimizer: &Optim<B>,
    state: &TrainState,
) -> Result<()> {
    let tmp = out_dir.join(format!("{CHECKPOINT}.tmp"));
    let old = out_dir.join(format!("{CHECKPOINT}.old"));
    let current = out_dir.join(CHECKPOINT);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)
        .map_err(|e| Error::io(&tmp, "cannot create checkpoint directory", e))?;
    checkpoint::save(network, &tmp.join("model.bpk"))?;
    let warm = network.clone().csc_warm_state();
    report::write_json(
        &tmp.join("csc_warm_start.json"),
        &serde_json::to_value(warm).expect("vectors serialise"),
    )?;
    BinFileRecorder::<FullPrecisionSettings>::new()
        .record(optimizer.to_record(), tmp.join("optimizer"))
        .map_err(|e| {
            Error::file(
                tmp.join("optimizer.bin"),
                format!("cannot save optimizer state: {e}"),
            )
        })?;
    report::write_json(
        &tmp.join("state.json"),
        &serde_json::to_value(state).expect("state serialises"),
    )?;
    // Swap directories so that a crash leaves either the old or the new checkpoint complete.
    let _ = fs::remove_dir_all(&old);
    if current.exists() {
        fs::rename(&current, &old)
            .map_err(|e| Error::io(&current, "cannot move old checkpoint", e))?;
    }
    fs::rename(&tmp, &current)
        .map_err(|e| Error::io(&current, "cannot move checkpoint into place", e))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

fn restore<B: ConvBackend>(
    out_dir: &Path,
    run: &serde_json::Value,
    recipe: &Recipe,
    device: &B::Device,
) -> Result<(Network<Autodiff<B>>, Optim<B>, TrainState)> {
    let mut dir = out_dir.join(CHECKPOINT);
    if !dir.exists() && out_dir.join(format!("{CHECKPOINT}.old")).exists() {
        dir = out_dir.join(format!("{CHECKPOINT}.old"));
    }
    if !dir.exists() {
        return Err(Error::file(
            out_dir,
            "--resume: no checkpoint to resume from in this directory",
        ));
    }
    let text = fs::read_to_string(dir.join("state.json"))
        .map_err(|e| Error::io(dir.join("state.json"), "cannot read", e))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| Error::file(dir.join("state.json"), format!("bad training state: {e}")))?;
    if &state.run != run {
        let stored_model = state.run["model"]["arch"].clone();
        return Err(Error::input(format!(
            "cannot resume from {}: it was trained with other settings (model {stored_model}); \
             now: model {}",
            dir.display(),
            run["model"]["arch"]
        )));
    }
    let mut network = checkpoint::load_native::<Autodiff<B>>(&dir.join("model.bpk"), device)?
        .with_positional_ids();
    let warm_path = dir.join("csc_warm_start.json");
    let warm =
        fs::read_to_string(&warm_path).map_err(|e| Error::io(&warm_path, "cannot read", e))?;
    network.set_csc_warm_state(
        serde_json::from_str(&warm)
            .map_err(|e| Error::file(&warm_path, format!("bad warm-start vectors: {e}")))?,
    );
    let record = BinFileRecorder::<FullPrecisionSettings>::new()
        .load(dir.join("optimizer"), device)
        .map_err(|e| {
            Error::file(
                dir.join("optimizer.bin"),
                format!("cannot load optimizer state: {e}"),
            )
        })?;
    let optimizer = recipe.optimizer::<B>().load_record(record);
    Ok((network, optimizer, state))
}

fn write_log(out_dir: &Path, log: &[EpochLog]) -> Result<()> {
    let rows: Vec<Vec<String>> = log
        .iter()
        .map(|e| {
            vec![
                e.epoch.to_string(),
                format!("{:.5}", e.train_loss),
                format!("{:.4}", e.train_accuracy),
                e.val_accuracy
                    .map(|a| format!("{a:.4}"))
                    .unwrap_or_default(),
                format!("{:.3e}", e.lr),
                format!("{:.1}", e.images_per_second),
                format!("{:.1}", e.seconds),
                format!("{:.2}", e.sync_seconds),
            ]
        })
        .collect();
    report::write_csv(
        &out_dir.join("log.csv"),
        &[
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_accuracy",
            "lr",
            "images_per_second",
            "seconds",
            "sync_seconds",
        ],
        &rows,
    )
}

/// Peak resident memory of this process in bytes (Linux), for reports.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
