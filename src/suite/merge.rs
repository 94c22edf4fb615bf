//! `suite merge`: the shards of one plan joined into exactly what an unsharded run writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::evaluate::journal::{read_rows, Journal};
use crate::evaluate::lock::DirLock;
use crate::evaluate::results::{cell_journal, cell_json, write_results, CELLS_DIR};
use crate::evaluate::summary::summarize;
use crate::report;

/// What a shard directory says about itself.
struct ShardRecord {
    dir: PathBuf,
    index: usize,
    count: usize,
    plan: String,
    suite: String,
    cells: Vec<Value>,
}

fn read_shard(dir: &Path) -> Result<ShardRecord> {
    let path = dir.join("shard.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        Error::io(
            &path,
            "cannot read (is this the --out-dir of a `suite run --shard`?)",
            e,
        )
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&path, format!("damaged shard record: {e}")))?;
    let field = |name: &str| {
        v["shard"][name]
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| Error::file(&path, format!("damaged shard record: no shard.{name}")))
    };
    if v["finished"] != true {
        return Err(Error::file(
            &path,
            "this shard did not finish: run it again",
        ));
    }
    Ok(ShardRecord {
        dir: dir.to_path_buf(),
        index: field("index")?,
        count: field("count")?,
        plan: v["plan_digest"].as_str().unwrap_or_default().to_string(),
        suite: v["suite"]["name"].as_str().unwrap_or("(none)").to_string(),
        cells: v["cells"].as_array().cloned().unwrap_or_default(),
    })
}

/// Merges shard directories into `out_dir`; returns the results files written.
pub fn merge(dirs: &[PathBuf], out_dir: &Path) -> Result<Vec<PathBuf>> {
    if dirs.is_empty() {
        return Err(Error::input(
            "suite merge needs at least one shard directory",
        ));
    }
    let shards = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<Vec<_>>>()?;
    check_complete(&shards)?;
    report::prepare_output_dir(out_dir)?;
    let cells_dir = out_dir.join(CELLS_DIR);
    fs::create_dir_all(&cells_dir).map_err(|e| Error::io(&cells_dir, "cannot create", e))?;
    let _lock = DirLock::acquire(out_dir)?;
    for cell in &shards[0].cells {
        merge_cell(&shards, cell, out_dir)?;
    }
    write_results(out_dir)
}

fn check_complete(shards: &[ShardRecord]) -> Result<()> {
    let first = &shards[0];
    for s in shards {
        if s.plan != first.plan || s.count != first.count {
            return Err(Error::input(format!(
                "{} holds shard {}/{} of suite '{}' but {} holds shard {}/{} of suite '{}' \
                 (a different plan): merge only shards of one run",
                first.dir.display(),
                first.index,
                first.count,
                first.suite,
                s.dir.display(),
                s.index,
                s.count,
                s.suite
            )));
        }
    }
    let mut seen: BTreeMap<usize, &Path> = BTreeMap::new();
    for s in shards {
        if let Some(other) = seen.insert(s.index, &s.dir) {
            return Err(Error::input(format!(
                "shard {}/{} given twice: {} and {}",
                s.index,
                s.count,
                other.display(),
                s.dir.display()
            )));
        }
    }
    let missing: Vec<String> = (1..=first.count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{}", first.count))
        .collect();
    if !missing.is_empty() {
        return Err(Error::input(format!(
            "shard {} of suite '{}' is missing (have {})",
            missing.join(", "),
            first.suite,
            seen.keys()
                .map(|i| format!("{i}/{}", first.count))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

fn merge_cell(shards: &[ShardRecord], cell: &Value, out_dir: &Path) -> Result<()> {
    let digest = cell["digest"].as_str().unwrap_or_default();
    let key = cell["key"].as_str().unwrap_or_default();
    let n = cell["n"].as_u64().unwrap_or(0) as usize;
    let mut rows = BTreeMap::new();
    for shard in shards {
        for (index, row) in read_rows(&cell_journal(&shard.dir, digest), n)? {
            if rows.insert(index, row).is_some() {
                return Err(Error::input(format!(
                    "cell {key}: image {index} was computed by two shards (one is {})",
                    shard.dir.display()
                )));
            }
        }
    }
    if rows.len() != n {
        return Err(Error::input(format!(
            "cell {key}: the shards hold {} of its {n} images; rerun the shards that did not finish",
            rows.len()
        )));
    }
    let list: Vec<_> = rows.into_values().collect();
    drop(Journal::open(&cell_journal(out_dir, digest), list.iter())?);
    let mut record = cell["record"].clone();
    record["status"] = json!("finished");
    record["result"] = json!(summarize(&record, &list));
    record["resumed_samples"] = json!(0);
    report::write_json(&cell_json(out_dir, digest), &record)
}
