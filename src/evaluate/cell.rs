//! Cells: one model × one condition on the plan's data, with a stable key that names its files,
//! journal rows, results rows and regression baselines, and a digest of every setting that
//! decides its outcome (a changed setting is a different cell).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::device::backend_name;
use crate::evaluate::condition::Condition;
use crate::evaluate::plan::Plan;
use crate::models::load::hex;
use crate::models::Network;

/// A resolved cell of a plan.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Position of the model in the plan (`None`: an export-only cell).
    pub model: Option<usize>,
    /// Position of the condition in the plan.
    pub condition: usize,
    /// e.g. `sdnet18@3f2a9c1b/none/gaussian_noise(3)#7d3e01aa`.
    pub key: String,
    /// 16 hex digits naming the cell's files.
    pub digest: String,
    pub n: usize,
    /// The cell's settings as `cells/<digest>.json` and `results.jsonl` carry them.
    pub record: Value,
}

/// What the plan knows about a loaded model.
pub struct ModelFacts<'a, B: crate::kernels::ConvBackend> {
    pub label: &'a str,
    pub network: &'a Network<B>,
    pub weights: &'a str,
    pub identity: &'a str,
    pub defense: String,
    /// Every setting of the defense (`null` when its name says everything).
    pub defense_settings: Value,
}

/// Builds the cell of model `model` × condition `condition`.
pub fn resolve<B: crate::kernels::ConvBackend>(
    plan: &Plan,
    model: Option<(usize, ModelFacts<'_, B>)>,
    condition: usize,
    data: &Value,
    n: usize,
) -> Cell {
    let cond: &Condition = &plan.conditions[condition];
    let (index, model_json, label, identity, defense, defense_settings) = match &model {
        Some((index, facts)) => {
            let spec = facts.network.spec();
            (
                Some(*index),
                json!({
                    "label": facts.label,
                    "name": spec.name(),
                    "weights": facts.weights,
                    "weights_sha256": facts.identity,
                    "width": spec.width,
                    "num_classes": spec.num_classes,
                    "domain": spec.domain,
                    "csc": if spec.arch.has_csc() { json!(spec.csc) } else { Value::Null },
                }),
                facts.label.to_string(),
                facts.identity.to_string(),
                facts.defense.clone(),
                facts.defense_settings.clone(),
            )
        }
        None => (
            None,
            Value::Null,
            "export".into(),
            String::new(),
            "none".into(),
            Value::Null,
        ),
    };
    let seed = cond.uses_seed().then_some(plan.seed);
    let mut model_json = model_json;
    if let Some(spec) = model.as_ref().map(|(_, facts)| facts.network.spec()) {
        // Only a normalisation other than the architecture's: older cells keep their digests.
        if let Some(normalization) = spec.normalization_override {
            model_json["normalization"] = json!(normalization);
        }
    }
    let mut decisive_model = model_json.clone();
    if let Some(m) = decisive_model.as_object_mut() {
        m.remove("weights"); // a path: the digest identifies the weights
    }
    let mut decisive_data = data.clone();
    if let Some(d) = decisive_data.as_object_mut() {
        // Where the images live and how they were selected is not what they are: n and the
        // fingerprint are.
        d.remove("path");
        d.remove("source");
        d.remove("limit");
    }
    let mut decisive = json!({
        "model": decisive_model, "defense": defense, "condition": cond.settings(),
        "data": decisive_data, "seed": seed,
    });
    if !defense_settings.is_null() {
        // Only defenses with settings beyond their name: older cells keep their digests.
        decisive["defense_settings"] = defense_settings.clone();
    }
    let digest = hex(&Sha256::digest(decisive.to_string().as_bytes()))[..16].to_string();
    let short_weights = identity.get(..8).unwrap_or("none");
    let key = format!(
        "{label}@{short_weights}/{defense}/{}#{}",
        cond.label(),
        &digest[..8]
    );
    let [corruption, severity, attack, norm, eps] = cond.columns();
    let record = json!({
        "key": key,
        "digest": digest,
        "sort": format!("{label}\u{1f}{}", cond.sort_key()),
        "model": model_json,
        "defense": defense,
        "defense_settings": defense_settings,
        "condition": cond.settings(),
        "condition_label": cond.label(),
        "columns": {"kind": cond.kind(), "corruption": corruption, "severity": severity,
                    "attack": attack, "norm": norm, "eps": eps},
        "data": data,
        "seed": seed,
        "static_warnings": cond.warnings(),
        "run": {
            "command": plan.command,
            "command_line": command_line(),
            "batch_size": plan.batch_size,
            "device": plan.device.to_string(),
            "backend": backend_name(plan.device),
            "versions": crate::report::versions(),
            "suite": plan.suite,
        },
    });
    Cell {
        model: index,
        condition,
        key,
        digest,
        n,
        record,
    }
}

/// The process's command line, shell-quoted where needed (for provenance).
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
