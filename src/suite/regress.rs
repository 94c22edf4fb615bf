//! `regress`: did a robustness number really move? Results are joined with a baseline on
//! (cell, metric). Paired per-image outcomes (the same images on both sides) are compared with
//! the exact McNemar test on the discordant images, otherwise with a pooled two-proportion
//! z-test; p-values are Holm-corrected over every comparison; and a change must also reach a
//! minimum effect, so that large n does not flag trivia. Drops and rises are both reported (a
//! rise in robust accuracy can mean a weakened attack).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::stats::{holm, mcnemar_exact, two_proportion_z};
use crate::suite::baseline::{Baseline, Entry};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Fail only when a number fell.
    Drop,
    /// Fail when a number moved either way.
    Change,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Smallest change that counts, as a fraction (0.005 = half a point).
    pub min_effect: f64,
    /// Family-wise significance level (after Holm).
    pub alpha: f64,
    pub fail_on: FailOn,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            min_effect: 0.005,
            alpha: 0.05,
            fail_on: FailOn::Change,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// b: right in the baseline and wrong now; c: the other way round.
    McNemar {
        b: usize,
        c: usize,
    },
    TwoProportion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Rose,
    Dropped,
}

#[derive(Clone, Debug)]
pub struct Comparison {
    pub cell: String,
    pub metric: String,
    pub baseline: f64,
    pub now: f64,
    pub n: usize,
    pub test: Test,
    pub p: f64,
    pub p_holm: f64,
    pub verdict: Verdict,
}

impl Comparison {
    pub fn effect(&self) -> f64 {
        self.now - self.baseline
    }
}

/// What a gate found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Every comparison, most significant first.
    pub comparisons: Vec<Comparison>,
    /// Cells of the results that the baseline does not hold (not compared).
    pub new_cells: Vec<String>,
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn moved(&self) -> impl Iterator<Item = &Comparison> {
        self.comparisons
            .iter()
            .filter(|c| c.verdict != Verdict::Unchanged)
    }

    /// Whether the gate fails under `fail_on`.
    pub fn failed(&self, fail_on: FailOn) -> bool {
        self.moved().any(|c| match fail_on {
            FailOn::Change => true,
            FailOn::Drop => c.verdict == Verdict::Dropped,
        })
    }
}

/// Compares `current` with `baseline`. A baseline from another suite, a joined cell whose
/// settings differ, or a baseline cell missing from the results is an error, not a comparison.
pub fn compare(baseline: &Baseline, current: &Baseline, options: &Options) -> Result<Outcome> {
    if let (Some(b), Some(c)) = (&baseline.suite, &current.suite) {
        if b != c {
            return Err(Error::input(format!(
                "the baseline is for suite '{b}' but the results are from suite '{c}'"
            )));
        }
    }
    let now: BTreeMap<(&str, &str), &Entry> = current
        .entries
        .iter()
        .map(|e| ((e.cell.as_str(), e.metric.as_str()), e))
        .collect();
    let mut outcome = Outcome::default();
    let mut mismatched = Vec::new();
    let mut missing = Vec::new();
    let mut pairs = Vec::new();
    for base in &baseline.entries {
        let Some(&new) = now.get(&(base.cell.as_str(), base.metric.as_str())) else {
            missing.push(format!("{} {}", base.cell, base.metric));
            continue;
        };
        if new.settings != base.settings {
            mismatched.push(base.cell.clone());
            continue;
        }
        if new.seed != base.seed {
            outcome.notes.push(format!(
                "{} {}: seed {} in the baseline, {} now — its change includes sampling noise",
                base.cell,
                base.metric,
                seed_text(base.seed),
                seed_text(new.seed)
            ));
        }
        pairs.push((base, new));
    }
    mismatched.dedup();
    if !mismatched.is_empty() {
        return Err(Error::input(format!(
            "{} cell(s) of the baseline were run with other settings (ε, steps, images, preset, \
             architecture or defense), so they cannot be compared: {}",
            mismatched.len(),
            list(&mismatched)
        )));
    }
    if !missing.is_empty() {
        return Err(Error::input(format!(
            "the results lack {} (cell, metric) pair(s) of the baseline: {}",
            missing.len(),
            list(&missing)
        )));
    }
    let tested: Vec<(Test, f64)> = pairs.iter().map(|(b, n)| test(b, n)).collect();
    let adjusted = holm(&tested.iter().map(|t| t.1).collect::<Vec<_>>());
    for (((base, new), (test, p)), p_holm) in pairs.iter().zip(tested).zip(adjusted) {
        let effect = new.value - base.value;
        let significant = p_holm < options.alpha && effect.abs() >= options.min_effect - 1e-12;
        let verdict = match (significant, effect > 0.0) {
            (false, _) => Verdict::Unchanged,
            (true, true) => Verdict::Rose,
            (true, false) => Verdict::Dropped,
        };
        outcome.comparisons.push(Comparison {
            cell: base.cell.clone(),
            metric: base.metric.clone(),
            baseline: base.value,
            now: new.value,
            n: new.n,
            test,
            p,
            p_holm,
            verdict,
        });
    }
    outcome
        .comparisons
        .sort_by(|a, b| a.p.total_cmp(&b.p).then_with(|| a.cell.cmp(&b.cell)));
    let known: std::collections::BTreeSet<&str> =
        baseline.entries.iter().map(|e| e.cell.as_str()).collect();
    let mut new_cells: Vec<String> = current
        .entries
        .iter()
        .filter(|e| !known.contains(e.cell.as_str()))
        .map(|e| e.cell.clone())
        .collect();
    new_cells.dedup();
    outcome.new_cells = new_cells;
    Ok(outcome)
}

fn seed_text(seed: Option<u64>) -> String {
    seed.map_or("none".into(), |s| s.to_string())
}

fn list(items: &[String]) -> String {
    let mut text = items.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 8 {
        text.push_str(&format!(", … ({} more)", items.len() - 8));
    }
    text
}

/// McNemar when both sides hold outcomes for the same images, else the two-proportion test.
fn test(base: &Entry, new: &Entry) -> (Test, f64) {
    if let (Some(a), Some(b)) = (&base.samples, &new.samples) {
        if a.indices == b.indices {
            let (mut lost, mut gained) = (0, 0);
            for (x, y) in a.hits.iter().zip(&b.hits) {
                match (x, y) {
                    (true, false) => lost += 1,
                    (false, true) => gained += 1,
                    _ => {}
                }
            }
            return (
                Test::McNemar { b: lost, c: gained },
                mcnemar_exact(lost, gained),
            );
        }
    }
    let hits = |e: &Entry| (e.value * e.n as f64).round() as usize;
    (
        Test::TwoProportion,
        two_proportion_z(hits(base), base.n, hits(new), new.n),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::baseline::Outcomes;

    fn entry(cell: &str, hits: Vec<bool>) -> Entry {
        let samples = Outcomes {
            indices: (0..hits.len()).collect(),
            hits,
        };
        Entry {
            cell: cell.into(),
            metric: "accuracy".into(),
            settings: "0123456789abcdef".into(),
            seed: None,
            n: samples.hits.len(),
            value: samples.rate(),
            samples: Some(samples),
        }
    }

    fn baseline(entries: Vec<Entry>) -> Baseline {
        Baseline {
            suite: Some("ci".into()),
            entries,
        }
    }

    #[test]
    fn identical_results_pass_and_a_real_drop_fails() {
        let base = baseline(vec![entry("m/none/clean", vec![true; 200])]);
        let same = compare(&base, &base, &Options::default()).unwrap();
        assert!(!same.failed(FailOn::Change));
        assert_eq!(same.comparisons[0].test, Test::McNemar { b: 0, c: 0 });
        let mut worse = vec![true; 200];
        worse[..20].iter_mut().for_each(|h| *h = false);
        let now = baseline(vec![entry("m/none/clean", worse)]);
        let out = compare(&base, &now, &Options::default()).unwrap();
        assert_eq!(out.comparisons[0].verdict, Verdict::Dropped);
        assert!(out.failed(FailOn::Drop) && out.failed(FailOn::Change));
    }

    #[test]
    fn a_rise_fails_only_on_change_and_trivia_never_fail() {
        let base = baseline(vec![entry("m/none/pgd", vec![false; 1000])]);
        let mut better = vec![false; 1000];
        better[..40].iter_mut().for_each(|h| *h = true);
        let out = compare(
            &base,
            &baseline(vec![entry("m/none/pgd", better)]),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(out.comparisons[0].verdict, Verdict::Rose);
        assert!(out.failed(FailOn::Change) && !out.failed(FailOn::Drop));
        // The same 4-point rise is significant, but below a 5-point minimum effect.
        let strict = Options {
            min_effect: 0.05,
            ..Options::default()
        };
        let mut better = vec![false; 1000];
        better[..40].iter_mut().for_each(|h| *h = true);
        let out = compare(&base, &baseline(vec![entry("m/none/pgd", better)]), &strict).unwrap();
        assert!(!out.failed(FailOn::Change));
    }

    #[test]
    fn other_settings_other_suites_and_missing_cells_are_errors() {
        let base = baseline(vec![entry("m/none/clean", vec![true; 10])]);
        let mut other = base.clone();
        other.entries[0].settings = "fedcba9876543210".into();
        let e = compare(&base, &other, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("other settings") && e.contains("m/none/clean"),
            "{e}"
        );
        let mut suite = base.clone();
        suite.suite = Some("cifar10".into());
        assert!(compare(&base, &suite, &Options::default())
            .unwrap_err()
            .to_string()
            .contains("suite 'ci'"));
        let empty = baseline(Vec::new());
        assert!(compare(&base, &empty, &Options::default())
            .unwrap_err()
            .to_string()
            .contains("lack"));
    }
}
