//! Figures over several cells of one model: the corruption table with its means over severities,
//! over the 15 benchmark corruptions and all 19, and mCE against AlexNet (ImageNet).

use std::collections::BTreeMap;

use corruptions::metrics::{corruption_error, relative_corruption_error};
use corruptions::{Corruption, Preset};
use serde::Serialize;

use crate::data::DatasetKind;
use crate::evaluate::{CellOutcome, Condition, CorruptionSource, Plan};

/// Accuracy at one (corruption, severity).
#[derive(Clone, Debug, Serialize)]
pub struct CorruptionCell {
    pub corruption: String,
    pub severity: u8,
    pub n: usize,
    pub accuracy: f64,
}

/// One model's corruption figures.
#[derive(Clone, Debug, Serialize)]
pub struct CorruptionReport {
    pub clean_accuracy: Option<f64>,
    pub cells: Vec<CorruptionCell>,
    /// Mean accuracy over the evaluated severities, per corruption.
    pub per_corruption: BTreeMap<String, f64>,
    /// Mean over the 15 benchmark corruptions (when all were evaluated).
    pub mean_benchmark: Option<f64>,
    /// Mean over all 19 (when all were evaluated).
    pub mean_all: Option<f64>,
    /// ImageNet only: mean corruption error against AlexNet, ×100, and its relative version.
    pub mce: Option<f64>,
    pub relative_mce: Option<f64>,
    pub images_per_second: f64,
}

/// Builds the report from per-(corruption, severity) accuracies; `clean` is the clean accuracy.
pub fn corruption_report(
    clean: Option<f64>,
    cells: Vec<CorruptionCell>,
    severities: &[u8],
    kind: DatasetKind,
    preset: Preset,
    images_per_second: f64,
) -> CorruptionReport {
    let mut per_corruption = BTreeMap::new();
    let mut ce = Vec::new();
    let mut relative = Vec::new();
    for c in Corruption::ALL {
        let accs: Vec<(u8, f64)> = cells
            .iter()
            .filter(|cell| cell.corruption == c.name())
            .map(|cell| (cell.severity, cell.accuracy))
            .collect();
        if accs.is_empty() {
            continue;
        }
        per_corruption.insert(
            c.name().to_string(),
            accs.iter().map(|a| a.1).sum::<f64>() / accs.len() as f64,
        );
        if Corruption::benchmark().contains(&c) {
            let errors: Vec<(u8, f64)> = accs.iter().map(|(s, a)| (*s, 1.0 - a)).collect();
            ce.push(corruption_error(c, &errors));
            if let Some(clean) = clean {
                relative.push(relative_corruption_error(c, &errors, 1.0 - clean));
            }
        }
    }
    let mean_over = |set: &[Corruption]| -> Option<f64> {
        let values: Option<Vec<f64>> = set
            .iter()
            .map(|c| per_corruption.get(c.name()).copied())
            .collect();
        values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    let imagenet = kind == DatasetKind::Imagenet && preset == Preset::Imagenet;
    let all_benchmark = ce.len() == 15 && severities.len() == 5;
    CorruptionReport {
        clean_accuracy: clean,
        mean_benchmark: mean_over(Corruption::benchmark()),
        mean_all: mean_over(&Corruption::ALL),
        mce: (imagenet && all_benchmark).then(|| 100.0 * ce.iter().sum::<f64>() / 15.0),
        relative_mce: (imagenet && all_benchmark && relative.len() == 15)
            .then(|| 100.0 * relative.iter().sum::<f64>() / 15.0),
        cells,
        per_corruption,
        images_per_second,
    }
}

/// The corruption report of model `model` of a plan from its finished cells.
pub fn model_corruption_report(
    plan: &Plan,
    cells: &[CellOutcome],
    model: usize,
    images_per_second: f64,
) -> CorruptionReport {
    let mut clean = None;
    let mut corrupted = Vec::new();
    let mut severities = Vec::new();
    let mut preset = None;
    for cell in cells.iter().filter(|c| c.model == model) {
        let accuracy = cell.result.metric("accuracy").unwrap_or(f64::NAN);
        match &plan.conditions[cell.condition] {
            Condition::Clean => clean = Some(accuracy),
            Condition::Corruption {
                corruption,
                severity,
                source,
            } => {
                if let CorruptionSource::OnTheFly(p) = source {
                    preset = Some(*p);
                }
                if !severities.contains(severity) {
                    severities.push(*severity);
                }
                corrupted.push(CorruptionCell {
                    corruption: corruption.name().into(),
                    severity: *severity,
                    n: cell.result.n,
                    accuracy,
                });
            }
            Condition::Attack(_) => {}
        }
    }
    let kind = plan.data.dataset;
    let preset = preset.unwrap_or(match kind {
        DatasetKind::Imagenet => Preset::Imagenet,
        _ => Preset::Cifar,
    });
    corruption_report(
        clean,
        corrupted,
        &severities,
        kind,
        preset,
        images_per_second,
    )
}
