//! The results of a directory, in one schema whatever command produced them:
//! - `results.csv`: long format, one row per cell × metric;
//! - `results.jsonl`: one line per cell with its full settings, versions and figures;
//! - `samples.csv`: one row per cell × image (the journal rows without timings).
//!
//! All three are rebuilt from `cells/` after every run, so they always cover every finished
//! cell of the directory, in a fixed order.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::evaluate::journal::read_rows;
use crate::evaluate::sample::{SampleRow, SAMPLE_COLUMNS};
use crate::evaluate::summary::CellResult;
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
