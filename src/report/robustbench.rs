//! `report --format robustbench`: each model's entry in the fields of RobustBench's leaderboard
//! files (`model_info/<dataset>/<Linf|L2|corruptions>/<name>.json`), so that a result can be set
//! beside the published table. Percentages are written as RobustBench writes them ("94.78").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::evaluate::results::StoredCell;
use crate::models::Arch;
use crate::report::{prepare_output_dir, write_atomic};

/// The cells of one model (label and weights).
struct ModelCells<'a> {
    label: String,
    name: String,
    weights: String,
    cells: Vec<&'a StoredCell>,
}

/// Writes `<out_dir>/<dataset>/<threat>/<label>.json` for every model and threat model with
/// results; returns the files written.
pub fn write_robustbench(cells: &[StoredCell], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut table = Vec::new();
    for model in group_by_model(cells) {
        for (threat, entry) in entries(&model)? {
            let dataset = entry["dataset"].as_str().unwrap_or("unknown").to_string();
            let dir = out_dir.join(&dataset).join(&threat);
            prepare_output_dir(&dir)?;
            let file = dir.join(format!("{}.json", file_stem(&model.label)));
            let text = serde_json::to_string_pretty(&entry).expect("JSON serialises");
            write_atomic(&file, format!("{text}\n").as_bytes())?;
            let value = entry
                .get("autoattack_acc")
                .or_else(|| entry.get("corruptions_acc"))
                .and_then(Value::as_str)
                .unwrap_or("");
            table.push(format!(
                "{:<24} {:<12} {:>8} {:>10} {:>10}",
                model.label,
                threat,
                entry["eps"].as_str().unwrap_or("-"),
                entry["clean_acc"].as_str().unwrap_or("-"),
                value
            ));
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(Error::input(
            "no AutoAttack (standard version) or corruption cells to report in RobustBench's \
             fields: run the robustbench-cifar10 suite, or autoattack / corrupt --from",
        ));
    }
    println!(
        "{:<24} {:<12} {:>8} {:>10} {:>10}",
        "model", "threat", "eps", "clean %", "robust %"
    );
    for row in table {
        println!("{row}");
    }
    Ok(files)
}

fn group_by_model(cells: &[StoredCell]) -> Vec<ModelCells<'_>> {
    let mut groups: BTreeMap<(String, String), ModelCells<'_>> = BTreeMap::new();
    for cell in cells {
        let model = &cell.record["model"];
        let label = model["label"].as_str().unwrap_or_default().to_string();
        let weights = model["weights_sha256"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        groups
            .entry((label.clone(), weights.clone()))
            .or_insert_with(|| ModelCells {
                label,
                name: model["name"].as_str().unwrap_or_default().to_string(),
                weights,
                cells: Vec::new(),
            })
            .cells
            .push(cell);
    }
    groups.into_values().collect()
}

/// The model's entries by threat model (`Linf`, `L2`, `corruptions`; an ε other than the
/// first of a norm gets its own entry, `Linf-4_255`).
fn entries(model: &ModelCells<'_>) -> Result<Vec<(String, Value)>> {
    let column = |cell: &StoredCell, name: &str| {
        cell.record["columns"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let undefended = |cell: &&&StoredCell| cell.record["defense"].as_str() == Some("none");
    let clean = model
        .cells
        .iter()
        .filter(undefended)
        .find(|c| column(c, "kind") == "clean")
        .and_then(|c| c.result.metric("accuracy").map(|a| (a, c.result.n)));
    let base = |cell: &StoredCell| {
        json!({
            "name": model.label,
            "dataset": cell.record["data"]["dataset"],
            "architecture": architecture(&model.name),
            "number_forward_passes": 1,
            "robust_eval": {
                "model": model.name,
                "weights_sha256": model.weights,
                "normalization": cell.record["model"].get("normalization").cloned().unwrap_or(Value::Null),
            },
        })
    };
    let mut out: Vec<(String, Value)> = Vec::new();
    for cell in model.cells.iter().filter(undefended) {
        if column(cell, "kind") != "attack" || column(cell, "attack") != "autoattack" {
            continue;
        }
        let norm = match column(cell, "norm").as_str() {
            "linf" => "Linf",
            "l2" => "L2",
            other => other,
        }
        .to_string();
        let eps = column(cell, "eps");
        let threat = if out
            .iter()
            .any(|(t, e)| t == &norm && e["eps"] != eps.as_str())
        {
            format!("{norm}-{}", eps.replace('/', "_"))
        } else {
            norm
        };
        let robust = cell.result.metric("robust_accuracy").unwrap_or(f64::NAN);
        let attacked_clean = cell.result.metric("clean_accuracy").unwrap_or(f64::NAN);
        let mut entry = base(cell);
        entry["eps"] = json!(eps);
        entry["clean_acc"] = json!(percent(clean.map_or(attacked_clean, |c| c.0)));
        entry["autoattack_acc"] = json!(percent(robust));
        entry["robust_eval"]["n_examples"] = json!(cell.result.n);
        entry["robust_eval"]["clean_acc_of_attacked_examples"] = json!(percent(attacked_clean));
        entry["robust_eval"]["n_clean_examples"] = json!(clean.map(|c| c.1));
        entry["robust_eval"]["cell"] = json!(cell.key());
        out.push((threat, entry));
    }
    let corrupted: Vec<&&StoredCell> = model
        .cells
        .iter()
        .filter(undefended)
        .filter(|c| column(c, "kind") == "corruption")
        .collect();
    if let Some(first) = corrupted.first() {
        let accuracies: Vec<f64> = corrupted
            .iter()
            .filter_map(|c| c.result.metric("accuracy"))
            .collect();
        let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        let names: std::collections::BTreeSet<String> =
            corrupted.iter().map(|c| column(c, "corruption")).collect();
        let premade = corrupted
            .iter()
            .all(|c| c.record["condition"]["source"].get("premade").is_some());
        let mut entry = base(first);
        entry["eps"] = Value::Null;
        if let Some((accuracy, _)) = clean {
            entry["clean_acc"] = json!(percent(accuracy));
        }
        entry["corruptions_acc"] = json!(percent(mean));
        entry["robust_eval"]["corruptions"] = json!(names.len());
        entry["robust_eval"]["conditions"] = json!(corrupted.len());
        entry["robust_eval"]["premade"] = json!(premade);
        out.push(("corruptions".into(), entry));
    }
    Ok(out)
}

fn percent(fraction: f64) -> String {
    format!("{:.2}", 100.0 * fraction)
}

/// RobustBench's way of naming an architecture ("WideResNet-28-10").
fn architecture(name: &str) -> String {
    Arch::from_name(name).map_or_else(|_| name.to_string(), |arch| arch.published_name())
}

/// A label as a file name: path separators and control characters replaced.
fn file_stem(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}
