//! A cell's figures, computed from its per-sample rows alone, so that a resumed or merged cell
//! gets exactly the numbers of an uninterrupted one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adversarial::{AttackSummary, SampleRecord};
use crate::eval::{Accuracy, Prediction};
use crate::evaluate::sample::SampleRow;

/// One figure with its standard error (binomial for proportions, s/√n for means).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub stderr: Option<f64>,
}

/// What a finished cell measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub n: usize,
    pub metrics: Vec<Metric>,
    /// Compute time summed over the batches (whichever run or shard computed them).
    pub seconds: f64,
    pub images_per_second: f64,
    pub warnings: Vec<String>,
}

impl CellResult {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// The figure tables compare models by: accuracy, or robust accuracy under attack.
    pub fn headline(&self) -> f64 {
        self.metric("accuracy")
            .or_else(|| self.metric("robust_accuracy"))
            .unwrap_or(f64::NAN)
    }
}

/// Fraction `p` of `n` with its binomial standard error.
fn proportion(name: &str, p: f64, n: usize) -> Metric {
    Metric {
        name: name.into(),
        value: p,
        stderr: (n > 0).then(|| (p * (1.0 - p) / n as f64).sqrt()),
    }
}

fn mean(name: &str, values: &[f64]) -> Metric {
    let n = values.len();
    let m = values.iter().sum::<f64>() / n.max(1) as f64;
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    Metric {
        name: name.into(),
        value: m,
        stderr: (n > 1).then(|| (var / n as f64).sqrt()),
    }
}

fn plain(name: &str, value: f64) -> Metric {
    Metric {
        name: name.into(),
        value,
        stderr: None,
    }
}

/// The figures of a cell from its rows (in image order); `record` is the cell's settings record
/// (see [`super::cell`]), which says whether it is an attack and which warnings it carries.
pub fn summarize(record: &Value, rows: &[SampleRow]) -> CellResult {
    let n = rows.len();
    let seconds: f64 = rows.iter().map(|r| r.seconds).sum();
    let mut warnings: Vec<String> = record["static_warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let columns = &record["columns"];
    let metrics = match columns["kind"].as_str() {
        Some("attack") => {
            let records: Vec<SampleRecord> = rows.iter().filter_map(|r| r.record()).collect();
            let s = AttackSummary::of(&records);
            let eligible = records.iter().filter(|r| r.target != Some(r.label)).count();
            let attacked: Vec<bool> = rows
                .iter()
                .filter_map(|r| r.attack.as_ref())
                .filter(|a| a.restarts > 0)
                .map(|a| a.zero_gradient)
                .collect();
            let zero =
                attacked.iter().filter(|z| **z).count() as f64 / attacked.len().max(1) as f64;
            if zero > 0.1 {
                warnings.push(format!(
                    "ε = {}: the input gradient was exactly zero for {:.0} % of the attacked samples — \
                     possible gradient masking; robust accuracy may be overestimated",
                    columns["eps"].as_str().unwrap_or_default(),
                    100.0 * zero
                ));
            }
            let column = |f: &dyn Fn(&SampleRecord) -> f32| -> Vec<f64> {
                records.iter().map(|r| f(r) as f64).collect()
            };
            let ensemble = ensemble_metrics(record, rows, &mut warnings);
            model_checks(rows, &mut warnings);
            let mut metrics = vec![
                proportion("clean_accuracy", s.clean_accuracy, n),
                proportion("robust_accuracy", s.robust_accuracy, n),
                proportion("success_rate", s.success_rate, eligible),
                mean("mean_linf", &column(&|r| r.linf)),
                plain("max_linf", s.max_linf),
                mean("mean_l2", &column(&|r| r.l2)),
                plain("max_l2", s.max_l2),
                mean("mean_loss", &column(&|r| r.loss)),
                proportion("zero_gradient_fraction", zero, attacked.len()),
            ];
            metrics.extend(ensemble);
            metrics
        }
        _ => {
            let predictions: Vec<Prediction> = rows.iter().map(|r| r.prediction()).collect();
            let a = Accuracy::of(&predictions);
            vec![
                proportion("accuracy", a.top1, n),
                proportion("top5_accuracy", a.top5, n),
            ]
        }
    };
    CellResult {
        n,
        metrics,
        seconds,
        images_per_second: n as f64 / seconds.max(1e-9),
        warnings,
    }
}

/// The attack summary of an attack cell's rows.
pub fn attack_summary(rows: &[SampleRow]) -> AttackSummary {
    let records: Vec<SampleRecord> = rows.iter().filter_map(|r| r.record()).collect();
    AttackSummary::of(&records)
}

/// An ensemble cell's figures: robust accuracy after each member in order, and Square's queries;
/// warns when Square breaks points the gradient-based members left robust (a sign of gradient
/// masking) and when any attacked sample had a zero input gradient.
fn ensemble_metrics(record: &Value, rows: &[SampleRow], warnings: &mut Vec<String>) -> Vec<Metric> {
    let members: Vec<String> = record["condition"]["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if members.is_empty() {
        return Vec::new();
    }
    let n = rows.len();
    let eps = record["columns"]["eps"].as_str().unwrap_or_default();
    let broken_by = |r: &SampleRow| r.attack.as_ref().and_then(|a| a.broken_by.clone());
    let clean_correct = |r: &SampleRow| {
        r.attack
            .as_ref()
            .is_some_and(|a| a.clean_prediction == r.label)
    };
    let mut metrics = Vec::new();
    let mut robust = rows.iter().filter(|r| clean_correct(r)).count();
    for member in &members {
        let broken = rows
            .iter()
            .filter(|r| clean_correct(r) && broken_by(r).as_deref() == Some(member.as_str()))
            .count();
        if member == "square" && !metrics.is_empty() && broken as f64 > 0.002 * n as f64 {
            warnings.push(format!(
                "ε = {eps}: Square, which uses no gradients, broke {broken} of the {robust} \
                     samples the gradient-based attacks left robust ({:.1} points): the model may \
                     mask its gradients; run Square with more queries and an adaptive attack",
                100.0 * broken as f64 / n.max(1) as f64
            ));
        }
        robust -= broken;
        metrics.push(proportion(
            &format!("robust_accuracy_after_{member}"),
            robust as f64 / n.max(1) as f64,
            n,
        ));
    }
    let zero = rows
        .iter()
        .filter_map(|r| r.attack.as_ref())
        .filter(|a| a.restarts > 0 && a.zero_gradient)
        .count();
    if zero > 0 {
        warnings.push(format!(
            "ε = {eps}: {zero} attacked samples had an input gradient of exactly zero at the \
             start: gradient-based attacks are unreliable on them"
        ));
    }
    let queries: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.attack.as_ref().and_then(|a| a.queries))
        .filter(|&q| q > 0)
        .map(|q| q as f64)
        .collect();
    if !queries.is_empty() {
        metrics.push(mean("mean_queries", &queries));
        metrics.push(plain(
            "max_queries",
            queries.iter().cloned().fold(0.0, f64::max),
        ));
    }
    metrics
}

/// Warnings from the runtime checks on the model (see the executor), counted over the rows.
fn model_checks(rows: &[SampleRow], warnings: &mut Vec<String>) {
    let flagged = |check: &str| {
        rows.iter()
            .filter(|r| {
                r.checks
                    .as_deref()
                    .is_some_and(|c| c.split(';').any(|x| x == check))
            })
            .count()
    };
    let randomised = flagged("randomised");
    if randomised > 0 {
        warnings.push(format!(
            "the logits differ between two passes over the same images ({randomised} images \
             affected): the model looks randomised; use --version rand (EOT) for it"
        ));
    }
    let softmax = flagged("softmax");
    if softmax > 0 {
        warnings.push(format!(
            "the outputs of {softmax} images lie in [0, 1] and sum to 1: the model seems to \
             return probabilities; attacks need the logits"
        ));
    }
}
