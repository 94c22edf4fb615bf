//! The results of a directory, in one schema whatever command produced them:
//! - `results.csv`: long format, one row per cell × metric;
//! - `results.jsonl`: one line per cell with its full settings, versions and figures;
//! - `samples.csv`: one row per cell × image (the journal rows without timings).
//!
//! All three are rebuilt from `cells/` after every run, so they always cover every finished
//! cell of the directory, in a fixed order.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::evaluate::journal::read_rows;
use crate::evaluate::sample::{layout_of, SampleRow, SAMPLE_COLUMNS};
use crate::evaluate::summary::{summarize, CellResult};
use crate::report;

pub const CELLS_DIR: &str = "cells";

pub const RESULTS_COLUMNS: [&str; 17] = [
    "cell",
    "model",
    "weights",
    "defense",
    "dataset",
    "condition",
    "corruption",
    "severity",
    "attack",
    "norm",
    "eps",
    "metric",
    "value",
    "n",
    "stderr",
    "images_per_second",
    "seed",
];

pub fn cell_json(dir: &Path, digest: &str) -> PathBuf {
    dir.join(CELLS_DIR).join(format!("{digest}.json"))
}

pub fn cell_journal(dir: &Path, digest: &str) -> PathBuf {
    dir.join(CELLS_DIR).join(format!("{digest}.csv"))
}

/// Reads a cell's record, if there is one.
pub fn read_record(path: &Path) -> Result<Option<Value>> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::file(
                path,
                format!("damaged cell record ({e}); delete it and its .csv to recompute the cell"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "cannot read cell record", e)),
    }
}

/// A finished cell: its record and rows.
pub struct FinishedCell {
    pub record: Value,
    pub result: CellResult,
    pub rows: Vec<SampleRow>,
}

/// The result stored in a finished record.
pub fn stored_result(record: &Value, path: &Path) -> Result<CellResult> {
    serde_json::from_value(record["result"].clone())
        .map_err(|e| Error::file(path, format!("damaged cell result: {e}")))
}

/// Every finished cell of a results directory, in table order.
pub fn finished_cells(dir: &Path) -> Result<Vec<FinishedCell>> {
    let cells_dir = dir.join(CELLS_DIR);
    let entries = match fs::read_dir(&cells_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&cells_dir, "cannot list", e)),
    };
    let mut cells = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io(&cells_dir, "cannot list", e))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(record) = read_record(&path)? else {
            continue;
        };
        if record["status"] != "finished" {
            continue;
        }
        let result = stored_result(&record, &path)?;
        let rows = read_rows(&path.with_extension("csv"), result.n)?;
        if rows.len() != result.n {
            return Err(Error::file(
                path.with_extension("csv"),
                format!(
                    "holds {} rows but the finished cell has {}; delete both files to recompute it",
                    rows.len(),
                    result.n
                ),
            ));
        }
        cells.push(FinishedCell {
            record,
            result,
            rows: rows.into_values().collect(),
        });
    }
    cells.sort_by(|a, b| {
        let key = |c: &FinishedCell| {
            (
                c.record["sort"].as_str().unwrap_or_default().to_string(),
                c.record["key"].as_str().unwrap_or_default().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(cells)
}

/// Rewrites `results.csv`, `results.jsonl` and `samples.csv` from the finished cells of `dir`.
pub fn write_results(dir: &Path) -> Result<Vec<PathBuf>> {
    let cells = finished_cells(dir)?;
    let mut long = Vec::new();
    let mut jsonl = String::new();
    let mut samples = Vec::new();
    for cell in &cells {
        long.extend(long_rows(cell));
        jsonl.push_str(&cell.record.to_string());
        jsonl.push('\n');
        let key = cell.record["key"].as_str().unwrap_or_default();
        for row in &cell.rows {
            let mut fields = vec![key.to_string()];
            fields.extend(row.fields());
            samples.push(fields);
        }
    }
    let csv_path = dir.join("results.csv");
    report::write_csv(&csv_path, &RESULTS_COLUMNS, &long)?;
    let jsonl_path = dir.join("results.jsonl");
    report::write_atomic(&jsonl_path, jsonl.as_bytes())?;
    let samples_path = dir.join("samples.csv");
    let mut header = vec!["cell"];
    header.extend(SAMPLE_COLUMNS);
    report::write_csv(&samples_path, &header, &samples)?;
    Ok(vec![csv_path, jsonl_path, samples_path])
}

fn long_rows(cell: &FinishedCell) -> Vec<Vec<String>> {
    let r = &cell.record;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let columns = &r["columns"];
    cell.result
        .metrics
        .iter()
        .map(|m| {
            vec![
                text(&r["key"]),
                text(&r["model"]["label"]),
                text(&r["model"]["weights_sha256"]),
                text(&r["defense"]),
                text(&r["data"]["dataset"]),
                text(&columns["kind"]),
                text(&columns["corruption"]),
                text(&columns["severity"]),
                text(&columns["attack"]),
                text(&columns["norm"]),
                text(&columns["eps"]),
                m.name.clone(),
                format!("{:.6}", m.value),
                cell.result.n.to_string(),
                m.stderr.map(|s| format!("{s:.6}")).unwrap_or_default(),
                format!("{:.1}", cell.result.images_per_second),
                text(&r["seed"]),
            ]
        })
        .collect()
}

/// A finished cell as a results directory publishes it (`results.jsonl` + `samples.csv`).
pub struct StoredCell {
    pub record: Value,
    pub result: CellResult,
    /// The per-image rows, in index order.
    pub rows: Vec<SampleRow>,
    /// The directory it was read from.
    pub source: PathBuf,
}

impl StoredCell {
    pub fn key(&self) -> &str {
        self.record["key"].as_str().unwrap_or_default()
    }
}

/// Reads the published results of a directory, checking them against each other: every cell of
/// `results.jsonl` has exactly its n rows in `samples.csv`, and its figures are what those rows
/// give. Anything else is an error naming the file and line.
pub fn read_results(dir: &Path) -> Result<Vec<StoredCell>> {
    if !dir.is_dir() {
        return Err(Error::file(dir, "no such results directory"));
    }
    let jsonl = dir.join("results.jsonl");
    let text = fs::read_to_string(&jsonl).map_err(|e| {
        let hint = if dir.join("shard.json").exists() {
            " (a shard: join the shards with `suite merge` first)"
        } else {
            " (is this the output directory of a robust-eval run?)"
        };
        Error::file(&jsonl, format!("cannot read ({e}){hint}"))
    })?;
    let mut cells: Vec<StoredCell> = Vec::new();
    let mut by_key = BTreeMap::new();
    for (line, text) in text
        .lines()
        .enumerate()
        .filter(|(_, t)| !t.trim().is_empty())
    {
        let at = |why: String| Error::file(&jsonl, format!("line {}: {why}", line + 1));
        let record: Value =
            serde_json::from_str(text).map_err(|e| at(format!("not JSON ({e})")))?;
        let key = record["key"]
            .as_str()
            .ok_or_else(|| at("no cell key".into()))?
            .to_string();
        if record["status"] != "finished" {
            return Err(at(format!("cell {key} is not finished")));
        }
        let result: CellResult = serde_json::from_value(record["result"].clone())
            .map_err(|e| at(format!("cell {key}: damaged result ({e})")))?;
        if by_key.insert(key.clone(), cells.len()).is_some() {
            return Err(at(format!("cell {key} appears twice")));
        }
        cells.push(StoredCell {
            record,
            result,
            rows: Vec::new(),
            source: dir.to_path_buf(),
        });
    }
    read_samples(&dir.join("samples.csv"), &mut cells, &by_key)?;
    for cell in &cells {
        check_figures(cell, &dir.join("samples.csv"))?;
    }
    Ok(cells)
}

fn read_samples(
    path: &Path,
    cells: &mut [StoredCell],
    by_key: &BTreeMap<String, usize>,
) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| Error::file(path, format!("damaged header: {e}")))?
        .clone();
    let expected: Vec<&str> = std::iter::once("cell").chain(SAMPLE_COLUMNS).collect();
    let found: Vec<&str> = header.iter().collect();
    // Files of earlier layouts hold the same rows without the last columns.
    let present = match found.split_first() {
        Some((&"cell", columns)) => layout_of(columns),
        _ => None,
    }
    .ok_or_else(|| {
        Error::file(
            path,
            format!("unexpected header (expected {})", expected.join(",")),
        )
    })?;
    let mut seen = std::collections::HashSet::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let at = |why: String| Error::file(path, format!("line {line}: {why}"));
        let record = record.map_err(|e| at(format!("damaged row ({e})")))?;
        let fields: Vec<&str> = record.iter().collect();
        let key = fields[0];
        let &cell = by_key
            .get(key)
            .ok_or_else(|| at(format!("cell {key} is not in results.jsonl")))?;
        let mut row_fields = fields[1..].to_vec();
        row_fields.extend(std::iter::repeat_n("", SAMPLE_COLUMNS.len() - present));
        row_fields.push("0");
        let row = SampleRow::parse(&row_fields).map_err(at)?;
        if !seen.insert((cell, row.index)) {
            return Err(at(format!(
                "image {} of cell {key} appears twice",
                row.index
            )));
        }
        cells[cell].rows.push(row);
    }
    for cell in cells.iter_mut() {
        cell.rows.sort_by_key(|r| r.index);
        if cell.rows.len() != cell.result.n {
            return Err(Error::file(
                path,
                format!(
                    "cell {} has {} rows but results.jsonl says n = {}",
                    cell.key(),
                    cell.rows.len(),
                    cell.result.n
                ),
            ));
        }
    }
    Ok(())
}

/// The stored figures must be what the rows give (a hand-edited or mixed-up file is an error).
fn check_figures(cell: &StoredCell, samples: &Path) -> Result<()> {
    let recomputed = summarize(&cell.record, &cell.rows);
    for stored in &cell.result.metrics {
        let Some(fresh) = recomputed.metric(&stored.name) else {
            continue;
        };
        if (fresh - stored.value).abs() > 1e-9 {
            return Err(Error::file(
                samples,
                format!(
                    "cell {}: its rows give {} = {fresh:.6} but results.jsonl says {:.6}",
                    cell.key(),
                    stored.name,
                    stored.value
                ),
            ));
        }
    }
    Ok(())
}
