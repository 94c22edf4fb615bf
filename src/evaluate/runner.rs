//! The one run loop: a plan's cells, resumed from their journals, computed batch by batch with
//! the next batch loaded in the background, journaled, summarised, exported and written.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::corrupted::{premade_len, CorruptedSet, Exporter};
use crate::data::Dataset;
use crate::device::{dispatch, Job};
use crate::error::{Error, Result};
use crate::evaluate::cell::{resolve, Cell, ModelFacts};
use crate::evaluate::condition::{Condition, CorruptionSource};
use crate::evaluate::data::data_identity;
use crate::evaluate::executor::{execute, CellImages, LoadedBatch, ModelSlot};
use crate::evaluate::journal::{resumable_rows, Journal};
use crate::evaluate::lock::DirLock;
use crate::evaluate::plan::Plan;
use crate::evaluate::results::{
    cell_journal, cell_json, read_record, stored_result, write_results, CELLS_DIR,
};
use crate::evaluate::sample::SampleRow;
use crate::evaluate::summary::{summarize, CellResult};
use crate::kernels::ConvBackend;
use crate::report::{self, NpyWriter};

/// A finished cell as a command sees it.
#[derive(Clone, Debug)]
pub struct CellOutcome {
    pub key: String,
    /// Position of the model and condition in the plan.
    pub model: usize,
    pub condition: usize,
    pub result: CellResult,
    /// Per-sample rows in image order.
    pub rows: Vec<SampleRow>,
    /// Settings record (as in `results.jsonl`).
    pub record: Value,
    /// Rows that came from an earlier run.
    pub resumed_samples: usize,
}

/// What [`run`] did.
pub struct RunOutcome {
    /// The plan's finished cells in plan order (all of them, unless sharded).
    pub cells: Vec<CellOutcome>,
    pub files: Vec<PathBuf>,
    /// Cells already finished before this run.
    pub reused_cells: usize,
    /// Images computed by this run, and the time it took.
    pub computed_images: usize,
    pub seconds: f64,
}

impl RunOutcome {
    pub fn cell(&self, model: usize, condition: usize) -> Option<&CellOutcome> {
        self.cells
            .iter()
            .find(|c| c.model == model && c.condition == condition)
    }
}

/// Runs a plan. `on_cell` sees every finished cell of the plan, in plan order, as soon as it and
/// all before it are done (earlier runs' cells included).
pub fn run(plan: &Plan, on_cell: &mut dyn FnMut(&CellOutcome)) -> Result<RunOutcome> {
    plan.check()?;
    report::prepare_output_dir(&plan.out_dir)?;
    let cells_dir = plan.out_dir.join(CELLS_DIR);
    fs::create_dir_all(&cells_dir).map_err(|e| Error::io(&cells_dir, "cannot create", e))?;
    let _lock = DirLock::acquire(&plan.out_dir)?;
    for dir in [
        &plan.exports.adversarial,
        &plan.exports.corrupted.as_ref().map(|c| c.0.clone()),
    ]
    .into_iter()
    .flatten()
    {
        report::prepare_output_dir(dir)?;
    }
    let base = if plan.needs_base_data() {
        Some(plan.data.open()?)
    } else {
        None
    };
    if let Some(set) = &base {
        check_corruption_sizes(plan, set.as_ref())?;
    }
    dispatch(
        plan.device,
        RunJob {
            plan,
            base: base.as_deref(),
            on_cell,
        },
    )
}

/// On-the-fly corruptions refuse image sizes their preset cannot handle, before anything runs.
fn check_corruption_sizes(plan: &Plan, set: &dyn Dataset) -> Result<()> {
    let [_, h, w] = set.image_shape();
    let probe = corruptions::RgbImage::new(w, h, vec![0; h * w * 3])
        .map_err(|e| Error::input(e.to_string()))?;
    for condition in &plan.conditions {
        if let Condition::Corruption {
            corruption,
            source: CorruptionSource::OnTheFly(preset),
            ..
        } = condition
        {
            preset
                .check_size(&probe, *corruption)
                .map_err(|e| Error::input(format!("{}: {e}", set.source())))?;
        }
    }
    Ok(())
}

struct RunJob<'a> {
    plan: &'a Plan,
    base: Option<&'a dyn Dataset>,
    on_cell: &'a mut dyn FnMut(&CellOutcome),
}

/// One batch of work: images `indices` of cell `cell`.
struct WorkItem {
    cell: usize,
    indices: Vec<usize>,
}

/// A cell's state during the run.
struct CellState {
    rows: BTreeMap<usize, SampleRow>,
    pending_units: usize,
    resumed: usize,
    journal: Option<Journal>,
    finished: Option<CellResult>,
    logits: Vec<f32>,
    adversarial: Option<NpyWriter<f32>>,
}

impl Job for RunJob<'_> {
    type Output = RunOutcome;

    fn run<B: ConvBackend>(self, device: B::Device) -> Result<RunOutcome> {
        let plan = self.plan;
        let kind = plan.data.dataset;
        let mut slots: Vec<ModelSlot<B>> = plan
            .models
            .iter()
            .map(|m| ModelSlot::load(m, kind, &device))
            .collect::<Result<_>>()?;
        let cells = resolve_cells(plan, &slots, self.base)?;
        let (mut states, work) = prepare_cells(plan, &cells)?;
        let reused_cells = states.iter().filter(|s| s.finished.is_some()).count();
        if reused_cells > 0 {
            eprintln!(
                "reusing {reused_cells} finished cell(s) of {} in {}",
                cells.len(),
                plan.out_dir.display()
            );
        }
        let mut loop_state = Loop {
            plan,
            cells: &cells,
            states: &mut states,
            next_to_report: 0,
            reported: Vec::new(),
            on_cell: self.on_cell,
            exporter: match &plan.exports.corrupted {
                Some((dir, preset)) => Some(Exporter::new(dir, *preset)?),
                None => None,
            },
            base: self.base,
        };
        let start = Instant::now();
        let computed_images = loop_state.compute(&work, &mut slots, &device)?;
        loop_state.report_ready(None);
        let reported = std::mem::take(&mut loop_state.reported);
        let mut files = write_results(&plan.out_dir)?;
        if let Some(shard) = plan.shard {
            files.push(write_shard_record(plan, shard, &cells)?);
        }
        files.extend(export_files(plan));
        Ok(RunOutcome {
            cells: reported,
            files,
            reused_cells,
            computed_images,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

fn resolve_cells<B: ConvBackend>(
    plan: &Plan,
    slots: &[ModelSlot<B>],
    base: Option<&dyn Dataset>,
) -> Result<Vec<Cell>> {
    let base_identity = match base {
        Some(set) => Some(data_identity(&plan.data, set)?),
        None => None,
    };
    let mut cells = Vec::new();
    let models: Vec<Option<usize>> = if slots.is_empty() {
        vec![None]
    } else {
        (0..slots.len()).map(Some).collect()
    };
    for model in models {
        for (position, condition) in plan.conditions.iter().enumerate() {
            let (data, n) = match condition {
                Condition::Corruption {
                    corruption,
                    severity,
                    source: CorruptionSource::Premade(dir),
                } => {
                    let n = premade_len(
                        plan.data.dataset,
                        dir,
                        *corruption,
                        *severity,
                        plan.data.limit,
                    )?;
                    let data = json!({"dataset": plan.data.dataset.name(), "premade": dir,
                                      "limit": plan.data.limit, "n": n});
                    (data, n)
                }
                _ => {
                    let identity = base_identity.clone().expect("base data is open");
                    let n = base.map_or(0, |b| b.len());
                    (identity, n)
                }
            };
            let facts = model.map(|m| {
                let slot = &slots[m];
                (
                    m,
                    ModelFacts {
                        label: &slot.entry.label,
                        network: &slot.clean,
                        weights: &slot.weights,
                        identity: &slot.identity,
                        defense: slot.entry.defense.to_string(),
                        defense_settings: slot.entry.defense.settings(),
                    },
                )
            });
            cells.push(resolve(plan, facts, position, &data, n));
        }
    }
    let mut seen = HashMap::new();
    for cell in &cells {
        if let Some(other) = seen.insert(cell.digest.clone(), cell.key.clone()) {
            return Err(Error::input(format!(
                "the plan holds the same cell twice ({other}); give the models distinct labels"
            )));
        }
    }
    Ok(cells)
}

/// Reads what earlier runs left for each cell and lists the batches still to compute.
fn prepare_cells(plan: &Plan, cells: &[Cell]) -> Result<(Vec<CellState>, Vec<WorkItem>)> {
    let mut states = Vec::new();
    let mut work = Vec::new();
    let mut unit_number = 0usize;
    for (position, cell) in cells.iter().enumerate() {
        let exported = has_export(plan, cell);
        let json_path = cell_json(&plan.out_dir, &cell.digest);
        let journal_path = cell_journal(&plan.out_dir, &cell.digest);
        let fresh = plan.fresh || exported;
        let mut state = CellState {
            rows: BTreeMap::new(),
            pending_units: 0,
            resumed: 0,
            journal: None,
            finished: None,
            logits: Vec::new(),
            adversarial: None,
        };
        let record = if fresh || cell.model.is_none() {
            None
        } else {
            read_record(&json_path)?
        };
        let units: Vec<Vec<usize>> = (0..cell.n)
            .collect::<Vec<_>>()
            .chunks(plan.batch_size)
            .map(|c| c.to_vec())
            .collect();
        let mut rows = if fresh || cell.model.is_none() {
            BTreeMap::new()
        } else {
            resumable_rows(&journal_path, cell.n)?
        };
        if let Some(record) = record.filter(|r| r["status"] == "finished") {
            let result = stored_result(&record, &json_path)?;
            if rows.len() == cell.n && result.n == cell.n {
                state.rows = rows;
                state.resumed = cell.n;
                state.finished = Some(result);
                unit_number += units.len();
                states.push(state);
                continue;
            }
        }
        if cell.model.is_some() {
            // Keep whole batches only: a batch is recomputed as it was first computed.
            let mut kept = BTreeMap::new();
            for unit in &units {
                if unit.iter().all(|i| rows.contains_key(i)) {
                    for i in unit {
                        kept.insert(*i, rows.remove(i).expect("present"));
                    }
                }
            }
            state.rows = kept;
            state.resumed = state.rows.len();
        }
        for unit in units {
            let owned = plan.shard.is_none_or(|s| s.owns(unit_number));
            unit_number += 1;
            let done = unit.iter().all(|i| state.rows.contains_key(i));
            if owned && !done {
                state.pending_units += 1;
                work.push(WorkItem {
                    cell: position,
                    indices: unit,
                });
            }
        }
        if cell.model.is_some() {
            let mut record = cell.record.clone();
            record["status"] = json!("running");
            report::write_json(&json_path, &record)?;
            state.journal = Some(Journal::open(&journal_path, state.rows.values())?);
        }
        states.push(state);
    }
    Ok((states, work))
}

fn has_export(plan: &Plan, cell: &Cell) -> bool {
    match &plan.conditions[cell.condition] {
        Condition::Clean => plan.exports.logits.is_some(),
        Condition::Attack(_) => plan.exports.adversarial.is_some(),
        Condition::Corruption { source, .. } => {
            plan.exports.corrupted.is_some() && matches!(source, CorruptionSource::OnTheFly(_))
        }
    }
}

/// The export file of attack condition `condition`: `adversarial-eps<k>.npy`, k counting the
/// plan's attack conditions.
fn adversarial_path(plan: &Plan, condition: usize) -> Option<PathBuf> {
    let dir = plan.exports.adversarial.as_ref()?;
    let k = plan.conditions[..condition]
        .iter()
        .filter(|c| matches!(c, Condition::Attack(_)))
        .count();
    Some(dir.join(format!("adversarial-eps{k}.npy")))
}

fn export_files(plan: &Plan) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (0..plan.conditions.len())
        .filter(|&c| matches!(plan.conditions[c], Condition::Attack(_)))
        .filter_map(|c| adversarial_path(plan, c))
        .collect();
    files.extend(plan.exports.logits.clone());
    files.extend(plan.exports.corrupted.as_ref().map(|c| c.0.clone()));
    files
}

struct Loop<'a, 'b> {
    plan: &'a Plan,
    cells: &'a [Cell],
    states: &'a mut Vec<CellState>,
    next_to_report: usize,
    reported: Vec<CellOutcome>,
    on_cell: &'a mut dyn FnMut(&CellOutcome),
    exporter: Option<Exporter>,
    base: Option<&'b dyn Dataset>,
}

impl Loop<'_, '_> {
    fn cost(&self, item: &WorkItem) -> u64 {
        let condition = &self.plan.conditions[self.cells[item.cell].condition];
        (condition.cost_per_image() * item.indices.len() as f64).round() as u64
    }

    /// Computes the work list; returns the number of images computed.
    fn compute<B: ConvBackend>(
        &mut self,
        work: &[WorkItem],
        slots: &mut [ModelSlot<B>],
        device: &B::Device,
    ) -> Result<usize> {
        let total: u64 = work.iter().map(|w| self.cost(w)).sum();
        let bar = report::plan_progress_bar(total);
        self.report_ready(Some(&bar));
        let keep_corrupted = self.plan.exports.corrupted.is_some();
        let (plan, cells, base) = (self.plan, self.cells, self.base);
        let start = Instant::now();
        let mut images = 0usize;
        std::thread::scope(|scope| -> Result<()> {
            let (sender, receiver) = mpsc::sync_channel::<Result<(usize, LoadedBatch)>>(2);
            scope.spawn(move || load_batches(plan, cells, base, work, keep_corrupted, sender));
            for (position, loaded) in receiver.into_iter().enumerate() {
                let (cell, loaded) = loaded?;
                self.process(cell, loaded, slots, device)?;
                images += work[position].indices.len();
                bar.inc(self.cost(&work[position]));
                bar.set_message(format!(
                    "cell {}/{} {:.1} images/s",
                    cell + 1,
                    cells.len(),
                    images as f64 / start.elapsed().as_secs_f64().max(1e-9)
                ));
                self.report_ready(Some(&bar));
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok(images)
    }

    fn process<B: ConvBackend>(
        &mut self,
        position: usize,
        loaded: LoadedBatch,
        slots: &mut [ModelSlot<B>],
        device: &B::Device,
    ) -> Result<()> {
        let plan = self.plan;
        let cell = &self.cells[position];
        let condition = &plan.conditions[cell.condition];
        if let (Some(exporter), Some(images)) = (&mut self.exporter, &loaded.corrupted) {
            if let Condition::Corruption {
                corruption,
                severity,
                source: CorruptionSource::OnTheFly(preset),
            } = condition
            {
                let base = self
                    .base
                    .expect("on-the-fly corruptions read the base data");
                let set = CorruptedSet {
                    inner: base,
                    corruption: *corruption,
                    severity: *severity,
                    preset: *preset,
                    seed: plan.seed,
                };
                exporter.add(&set, &loaded.batch.indices, images, &|i| base.item_name(i))?;
            }
        }
        if let Some(m) = cell.model {
            let output = execute(&mut slots[m], condition, &loaded.batch, plan.seed, device)?;
            let state = &mut self.states[position];
            state
                .journal
                .as_mut()
                .expect("journal open")
                .append(&output.rows)?;
            if plan.exports.logits.is_some() && matches!(condition, Condition::Clean) {
                state.logits.extend(output.logits.unwrap_or_default());
            }
            if let (Some(path), Some(pixels)) =
                (adversarial_path(plan, cell.condition), output.adversarial)
            {
                if state.adversarial.is_none() {
                    let [c, h, w] = [
                        loaded.batch.shape[1],
                        loaded.batch.shape[2],
                        loaded.batch.shape[3],
                    ];
                    state.adversarial = Some(NpyWriter::create(&path, &[cell.n, c, h, w])?);
                }
                state
                    .adversarial
                    .as_mut()
                    .expect("created")
                    .write(&pixels)?;
            }
            for row in output.rows {
                state.rows.insert(row.index, row);
            }
        }
        let state = &mut self.states[position];
        state.pending_units -= 1;
        if state.pending_units == 0 {
            self.end_cell(position)?;
        }
        Ok(())
    }

    /// A cell's last batch of this run is done: finish exports, and the cell if it is complete.
    fn end_cell(&mut self, position: usize) -> Result<()> {
        let plan = self.plan;
        let cell = &self.cells[position];
        if let Some(exporter) = &mut self.exporter {
            if let Condition::Corruption {
                corruption,
                severity,
                ..
            } = &plan.conditions[cell.condition]
            {
                let last = plan.conditions.iter().rev().find_map(|c| match c {
                    Condition::Corruption {
                        corruption: other,
                        severity,
                        ..
                    } if other == corruption => Some(*severity),
                    _ => None,
                });
                if last == Some(*severity) {
                    exporter.finish_corruption(*corruption)?;
                }
            }
        }
        let state = &mut self.states[position];
        if let Some(writer) = state.adversarial.take() {
            writer.finish()?;
        }
        if let (Some(path), Condition::Clean) =
            (&plan.exports.logits, &plan.conditions[cell.condition])
        {
            if cell.model.is_some() {
                let classes = state.logits.len() / cell.n.max(1);
                NpyWriter::save(path, &state.logits, &[cell.n, classes])?;
            }
        }
        if cell.model.is_none() || state.rows.len() < cell.n {
            return Ok(()); // export only, or other shards hold the rest
        }
        state.journal = None;
        let rows: Vec<SampleRow> = state.rows.values().cloned().collect();
        let result = summarize(&cell.record, &rows);
        let mut record = cell.record.clone();
        record["status"] = json!("finished");
        record["result"] = json!(result);
        record["resumed_samples"] = json!(state.resumed);
        report::write_json(&cell_json(&plan.out_dir, &cell.digest), &record)?;
        state.finished = Some(result);
        Ok(())
    }

    /// Hands finished cells to the command in plan order (with `bar` suspended while it prints).
    /// Without a bar (the end of the run) cells left unfinished (other shards') are skipped.
    fn report_ready(&mut self, bar: Option<&ProgressBar>) {
        let final_pass = bar.is_none();
        while self.next_to_report < self.cells.len() {
            let position = self.next_to_report;
            let cell = &self.cells[position];
            let state = &self.states[position];
            let unfinished = state.finished.is_none();
            if cell.model.is_none() || (unfinished && final_pass) {
                self.next_to_report += 1;
                continue;
            }
            let Some(result) = &state.finished else {
                return;
            };
            let mut record = cell.record.clone();
            record["resumed_samples"] = json!(state.resumed);
            let outcome = CellOutcome {
                key: cell.key.clone(),
                model: cell.model.expect("finished cells have a model"),
                condition: cell.condition,
                result: result.clone(),
                rows: state.rows.values().cloned().collect(),
                record,
                resumed_samples: state.resumed,
            };
            match bar {
                Some(bar) => bar.suspend(|| (self.on_cell)(&outcome)),
                None => (self.on_cell)(&outcome),
            }
            self.reported.push(outcome);
            self.next_to_report += 1;
        }
    }
}

/// The loading thread: opens each cell's images when its first batch comes and sends batches in
/// work order.
fn load_batches(
    plan: &Plan,
    cells: &[Cell],
    base: Option<&dyn Dataset>,
    work: &[WorkItem],
    keep_corrupted: bool,
    sender: mpsc::SyncSender<Result<(usize, LoadedBatch)>>,
) {
    let mut current: Option<(usize, CellImages<'_>)> = None;
    for item in work {
        if current.as_ref().map(|c| c.0) != Some(item.cell) {
            let condition = &plan.conditions[cells[item.cell].condition];
            match CellImages::open(
                condition,
                base,
                plan.data.dataset,
                plan.data.limit,
                plan.seed,
            ) {
                Ok(images) => current = Some((item.cell, images)),
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            }
        }
        let images = &current.as_ref().expect("opened above").1;
        let loaded = images
            .load(&item.indices, keep_corrupted)
            .map(|b| (item.cell, b));
        let failed = loaded.is_err();
        if sender.send(loaded).is_err() || failed {
            return; // the consumer stopped, or the error is on its way
        }
    }
}

/// Written by a sharded run: which part of which plan this directory holds.
fn write_shard_record(
    plan: &Plan,
    shard: crate::evaluate::plan::Shard,
    cells: &[Cell],
) -> Result<PathBuf> {
    let path = plan.out_dir.join("shard.json");
    report::write_json(
        &path,
        &json!({
            "suite": plan.suite,
            "shard": shard,
            "plan_digest": plan_digest(cells),
            "batch_size": plan.batch_size,
            "cells": cells.iter().map(|c| json!({"digest": c.digest, "key": c.key, "n": c.n,
                                                 "record": c.record})).collect::<Vec<_>>(),
            "finished": true,
        }),
    )?;
    Ok(path)
}

/// SHA-256 over the cells' digests in plan order.
pub fn plan_digest(cells: &[Cell]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for cell in cells {
        hasher.update(cell.digest.as_bytes());
    }
    crate::models::load::hex(&hasher.finalize())[..16].to_string()
}
