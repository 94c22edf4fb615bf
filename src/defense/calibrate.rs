//! Fitting λ schedules on labelled calibration data (never the evaluation data).
//!
//! Input: for each calibration condition (clean, each noise corruption × severity), the accuracy
//! at every λ of a grid and the label-free statistics of its images: the mean noise estimate σ̂,
//! the mean first-layer residual at the probe λ, and the mean residual at every λ of the grid.
//! Each condition's best λ (by calibration accuracy) is the target the label-free rules are fitted
//! to, as the official code fits its line — but with the residual measured at the probe λ, which
//! is known at test time, instead of at the best λ, which is not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::defense::schedule::{Layers, ResidualMap, Rule, Schedule, ScheduleModel};

/// What calibration measured for one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionStats {
    /// The condition's label (`clean`, `gaussian_noise(3)`).
    pub condition: String,
    pub n: usize,
    /// Accuracy at each λ of the grid.
    pub accuracy: Vec<f64>,
    /// Mean σ̂ of the images.
    pub sigma: f64,
    /// Mean residual per input value of the first layer at each λ of the grid.
    pub residual: Vec<f64>,
}

impl ConditionStats {
    /// The grid λ with the highest accuracy (the smallest such λ on ties).
    pub fn best(&self, grid: &[f64]) -> f64 {
        let mut best = 0;
        for (i, a) in self.accuracy.iter().enumerate() {
            if *a > self.accuracy[best] {
                best = i;
            }
        }
        grid[best]
    }
}

/// Everything a calibration fits, from its measurements.
pub struct Calibration<'a> {
    pub grid: &'a [f64],
    /// Position of the probe λ in the grid.
    pub probe: usize,
    pub layers: Layers,
    pub stats: &'a [ConditionStats],
    /// Pixel variance → normalised-input variance (see `BoundDefense`).
    pub noise_gain: f64,
    pub model: ScheduleModel,
    /// Provenance: the calibration data, seed, conditions.
    pub provenance: serde_json::Value,
}

impl Calibration<'_> {
    /// The fitted schedules by file stem: `per-condition`, `residual-linear`,
    /// `residual-monotone`, `noise`, `discrepancy`.
    pub fn fit(&self) -> BTreeMap<&'static str, Schedule> {
        let range = [self.grid[0], self.grid[self.grid.len() - 1]];
        let best: Vec<f64> = self.stats.iter().map(|s| s.best(self.grid)).collect();
        let probe_residual: Vec<f64> = self.stats.iter().map(|s| s.residual[self.probe]).collect();
        let sigma: Vec<f64> = self.stats.iter().map(|s| s.sigma).collect();
        let points: Vec<serde_json::Value> = self
            .stats
            .iter()
            .zip(&best)
            .map(|(s, b)| {
                json!({"condition": s.condition, "n": s.n, "best_lambda": b,
                       "best_accuracy": s.accuracy.iter().cloned().fold(0.0, f64::max),
                       "sigma": s.sigma, "probe_residual": s.residual[self.probe]})
            })
            .collect();
        let fit = |extra: serde_json::Value| {
            json!({"calibration": self.provenance, "grid": self.grid, "points": points,
                   "fitted": extra})
        };
        let schedule = |rule: Rule, extra: serde_json::Value| Schedule {
            rule,
            model: Some(self.model.clone()),
            fit: Some(fit(extra)),
        };
        let mut out = BTreeMap::new();

        let table = self
            .stats
            .iter()
            .zip(&best)
            .map(|(s, b)| (s.condition.clone(), *b))
            .collect();
        out.insert(
            "per-condition",
            schedule(
                Rule::PerCondition {
                    layers: self.layers.clone(),
                    default: self.grid[self.probe],
                    table,
                    oracle: false,
                },
                json!({}),
            ),
        );

        let (slope, intercept) = least_squares(&probe_residual, &best);
        out.insert(
            "residual-linear",
            schedule(
                Rule::Residual {
                    layers: self.layers.clone(),
                    probe: self.grid[self.probe],
                    map: ResidualMap::Linear {
                        a: slope,
                        b: intercept,
                    },
                    range,
                },
                json!({"a": slope, "b": intercept}),
            ),
        );
        let monotone = isotonic(&probe_residual, &best);
        out.insert(
            "residual-monotone",
            schedule(
                Rule::Residual {
                    layers: self.layers.clone(),
                    probe: self.grid[self.probe],
                    map: ResidualMap::Monotone { points: monotone },
                    range,
                },
                json!({}),
            ),
        );

        let (b, a) = least_squares(&sigma, &best);
        out.insert(
            "noise",
            schedule(
                Rule::Noise {
                    layers: self.layers.clone(),
                    a,
                    b,
                    range,
                },
                json!({"a": a, "b": b}),
            ),
        );

        let (clean_sigma, tau) = self.discrepancy_fit(&best);
        out.insert(
            "discrepancy",
            schedule(
                Rule::Discrepancy {
                    layers: self.layers.clone(),
                    probe: self.grid[self.probe],
                    clean_sigma,
                    tau,
                    range,
                    iterations: 10,
                },
                json!({"clean_sigma": clean_sigma, "tau": tau}),
            ),
        );
        out
    }

    /// The clean σ̂ is the clean images' mean σ̂; τ is the least-squares factor (through the
    /// origin) between each noisy condition's residual increase from the probe λ to its best λ
    /// and its estimated excess noise energy (σ̂² − σ̂²_clean)·gain.
    fn discrepancy_fit(&self, best: &[f64]) -> (f64, f64) {
        let clean_sigma = self
            .stats
            .iter()
            .find(|s| s.condition == "clean")
            .unwrap_or(&self.stats[0])
            .sigma;
        let (mut num, mut den) = (0.0, 0.0);
        for (s, b) in self.stats.iter().zip(best) {
            if s.condition == "clean" {
                continue;
            }
            let at_best = self
                .grid
                .iter()
                .position(|g| g == b)
                .map_or(s.residual[self.probe], |i| s.residual[i]);
            let energy = (s.sigma.powi(2) - clean_sigma.powi(2)).max(0.0) * self.noise_gain;
            num += (at_best - s.residual[self.probe]) * energy;
            den += energy * energy;
        }
        let tau = if den > 0.0 { (num / den).max(0.0) } else { 0.0 };
        (clean_sigma, tau)
    }
}

/// Ordinary least squares `y ≈ slope·x + intercept`; a constant fit when x does not vary.
pub fn least_squares(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    if sxx <= f64::EPSILON * n {
        return (0.0, my);
    }
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

/// Isotonic (non-decreasing) regression of y on x by pool-adjacent-violators; returns one
/// point (mean x, mean y) per pooled block, sorted by x.
pub fn isotonic(x: &[f64], y: &[f64]) -> Vec<[f64; 2]> {
    let mut pairs: Vec<(f64, f64)> = x.iter().copied().zip(y.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks of (sum x, sum y, count).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for (px, py) in pairs {
        blocks.push((px, py, 1.0));
        while blocks.len() > 1 {
            let last = blocks[blocks.len() - 1];
            let prev = blocks[blocks.len() - 2];
            if prev.1 / prev.2 <= last.1 / last.2 {
                break;
            }
            blocks.pop();
            let merged = blocks.last_mut().expect("two blocks");
            *merged = (prev.0 + last.0, prev.1 + last.1, prev.2 + last.2);
        }
    }
    blocks.iter().map(|(sx, sy, c)| [sx / c, sy / c]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_a_line() {
        let (s, i) = least_squares(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]);
        assert!((s - 2.0).abs() < 1e-12 && (i - 1.0).abs() < 1e-12);
        assert_eq!(least_squares(&[1.0, 1.0], &[2.0, 4.0]), (0.0, 3.0));
    }

    #[test]
    fn isotonic_pools_violators() {
        // y decreases between the 2nd and 3rd point: they are pooled to their mean.
        let fit = isotonic(&[3.0, 1.0, 2.0, 4.0], &[0.2, 0.1, 0.4, 0.9]);
        assert_eq!(
            fit,
            vec![[1.0, 0.1], [2.5, 0.30000000000000004], [4.0, 0.9]]
        );
    }
}
