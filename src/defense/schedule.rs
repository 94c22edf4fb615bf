//! λ schedules: which λ each CSC layer of SDNet uses at test time, as data (`--defense SPEC` or a
//! JSON file that round-trips).
//!
//! - `fixed`: one λ for every CSC layer, the first only, or per layer by name;
//! - `per-condition`: a table from condition label (`gaussian_noise(5)`, `pgd(linf,2/255)`) to λ;
//!   it knows the condition, so it is an upper bound, and an oracle when fitted on test labels;
//! - per input, from the image alone: `residual` (the first layer's reconstruction error at a
//!   probe λ through a monotone map), `noise` (λ = a + b·σ̂ with σ̂ a wavelet noise estimate) and
//!   `discrepancy` (the λ whose residual exceeds the clean level by τ times the estimated noise
//!   energy, found by bisection).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::models::load::hex;

/// Which CSC layers a selected λ applies to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Layers {
    /// `"first"` or `"all"`.
    Named(LayerGroup),
    /// Layer names as [`crate::models::Network::csc_layer_names`] gives them.
    List(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerGroup {
    First,
    All,
}

impl Layers {
    pub const FIRST: Self = Self::Named(LayerGroup::First);
    pub const ALL: Self = Self::Named(LayerGroup::All);

    /// Positions (forward order) among `names`, or an error listing the real names.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<usize>> {
        match self {
            Self::Named(LayerGroup::First) => Ok(vec![0]),
            Self::Named(LayerGroup::All) => Ok((0..names.len()).collect()),
            Self::List(list) => list.iter().map(|l| layer_position(l, names)).collect(),
        }
    }
}

fn layer_position(name: &str, names: &[String]) -> Result<usize> {
    names.iter().position(|n| n == name).ok_or_else(|| {
        Error::input(format!(
            "the model has no CSC layer '{name}'; its CSC layers are: {}",
            names.join(", ")
        ))
    })
}

/// A monotone map from the residual at the probe λ to λ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResidualMap {
    /// `λ = a·residual + b` (the official code's form).
    Linear { a: f64, b: f64 },
    /// Piecewise linear through `points` (residual, λ), non-decreasing, constant outside.
    Monotone { points: Vec<[f64; 2]> },
}

impl ResidualMap {
    /// λ at `residual` and the slope there (for a differentiable selection).
    pub fn eval(&self, residual: f64) -> (f64, f64) {
        match self {
            Self::Linear { a, b } => (a * residual + b, *a),
            Self::Monotone { points } => piecewise(points, residual),
        }
    }
}

fn piecewise(points: &[[f64; 2]], x: f64) -> (f64, f64) {
    let first = points[0];
    let last = points[points.len() - 1];
    if x <= first[0] {
        return (first[1], 0.0);
    }
    if x >= last[0] {
        return (last[1], 0.0);
    }
    let k = points.partition_point(|p| p[0] <= x);
    let ([x0, y0], [x1, y1]) = (points[k - 1], points[k]);
    let slope = if x1 > x0 { (y1 - y0) / (x1 - x0) } else { 0.0 };
    (y0 + slope * (x - x0), slope)
}

/// How λ is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Rule {
    /// λ by layer name, or for `all` / `first`.
    Fixed { lambdas: BTreeMap<String, f64> },
    /// λ by condition label; conditions not in the table use `default`.
    PerCondition {
        layers: Layers,
        default: f64,
        table: BTreeMap<String, f64>,
        /// Fitted with the labels of the evaluation data itself.
        oracle: bool,
    },
    /// λ from the first layer's mean squared residual per input value at λ = `probe`.
    Residual {
        layers: Layers,
        probe: f64,
        map: ResidualMap,
        range: [f64; 2],
    },
    /// λ = a + b·σ̂, σ̂ the image's noise estimate in [0,1] pixel units.
    Noise {
        layers: Layers,
        a: f64,
        b: f64,
        range: [f64; 2],
    },
    /// The λ in `range` whose residual per input value exceeds the image's own residual at
    /// `probe` by `tau·max(σ̂² − clean_sigma², 0)·k`: the noise energy the code should leave out
    /// (`k` converts pixel variance to normalised-input variance; `clean_sigma` is σ̂ of clean
    /// images, the content that leaks into the estimate). Found by bisection.
    Discrepancy {
        layers: Layers,
        probe: f64,
        clean_sigma: f64,
        tau: f64,
        range: [f64; 2],
        iterations: usize,
    },
}

/// The model a schedule was calibrated for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleModel {
    pub name: String,
    pub weights_sha256: String,
}

/// A rule with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(flatten)]
    pub rule: Rule,
    /// When set, the schedule applies only to these weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ScheduleModel>,
    /// The calibration that produced it (data, conditions, fitted points), for provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Value>,
}

impl Schedule {
    pub fn new(rule: Rule) -> Self {
        Self {
            rule,
            model: None,
            fit: None,
        }
    }

    /// Parses `--defense`: a JSON file, or `fixed:0.5`, `fixed:all=0.5`, `first=0.5`,
    /// `fixed:layer0=0.5,layer1.0.conv1=0.2`, `noise:a=0.1,b=8`, `residual:a=4,b=0.1[,probe=0.1]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.ends_with(".json") || Path::new(spec).is_file() {
            return Self::read(Path::new(spec));
        }
        let (kind, args) = spec.split_once(':').unwrap_or(("fixed", spec));
        let bad = |why: String| Error::input(format!("--defense '{spec}': {why}"));
        let pairs = parse_pairs(args).map_err(bad)?;
        let get = |key: &str, default: Option<f64>| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| *v)
                .or(default)
                .ok_or_else(|| bad(format!("missing {key}=…")))
        };
        let rule = match kind {
            "fixed" => Rule::Fixed {
                lambdas: pairs.iter().cloned().collect(),
            },
            "noise" => Rule::Noise {
                layers: Layers::FIRST,
                a: get("a", None)?,
                b: get("b", None)?,
                range: [get("min", Some(0.1))?, get("max", Some(1.4))?],
            },
            "residual" => Rule::Residual {
                layers: Layers::FIRST,
                probe: get("probe", Some(0.1))?,
                map: ResidualMap::Linear {
                    a: get("a", None)?,
                    b: get("b", None)?,
                },
                range: [get("min", Some(0.1))?, get("max", Some(1.4))?],
            },
            other => {
                return Err(bad(format!(
                    "unknown schedule '{other}' (expected fixed, noise, residual, or a .json file \
                     written by `lambda calibrate`)"
                )))
            }
        };
        let schedule = Self::new(rule);
        schedule.check()?;
        Ok(schedule)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
        let schedule: Self = serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("not a λ schedule: {e}")))?;
        // A misspelt optional field ("modle") would otherwise be dropped silently, and with it
        // the check that the schedule belongs to the model.
        let written: Value = serde_json::from_str(&text).expect("parsed above");
        let known = serde_json::to_value(&schedule).expect("serialises");
        if let (Some(written), Some(known)) = (written.as_object(), known.as_object()) {
            if let Some(unknown) = written.keys().find(|k| !known.contains_key(*k)) {
                return Err(Error::file(
                    path,
                    format!(
                        "not a λ schedule: unknown field '{unknown}' for kind '{}'",
                        schedule.kind()
                    ),
                ));
            }
        }
        schedule
            .check()
            .map_err(|e| Error::file(path, e.to_string()))?;
        Ok(schedule)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("schedules serialise")
    }

    /// Refuses λ ≤ 0, NaN, empty tables and ranges that are not increasing.
    pub fn check(&self) -> Result<()> {
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::input(format!(
                    "{what} must be a positive number, got {v}"
                )))
            }
        };
        let finite = |what: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::input(format!("{what} must be finite, got {v}")))
            }
        };
        let range = |r: &[f64; 2]| {
            positive("λ range start", r[0])?;
            positive("λ range end", r[1])?;
            if r[0] > r[1] {
                return Err(Error::input(format!("λ range {r:?} is not increasing")));
            }
            Ok(())
        };
        match &self.rule {
            Rule::Fixed { lambdas } => {
                if lambdas.is_empty() {
                    return Err(Error::input("a fixed schedule needs at least one λ"));
                }
                for (layer, l) in lambdas {
                    positive(&format!("λ of {layer}"), *l)?;
                }
            }
            Rule::PerCondition { default, table, .. } => {
                positive("default λ", *default)?;
                for (condition, l) in table {
                    positive(&format!("λ for {condition}"), *l)?;
                }
            }
            Rule::Residual {
                probe,
                map,
                range: r,
                ..
            } => {
                positive("probe λ", *probe)?;
                range(r)?;
                match map {
                    ResidualMap::Linear { a, b } => {
                        finite("a", *a)?;
                        finite("b", *b)?;
                    }
                    ResidualMap::Monotone { points } => {
                        if points.is_empty() {
                            return Err(Error::input("a monotone map needs points"));
                        }
                        for w in points.windows(2) {
                            if w[1][0] < w[0][0] || w[1][1] < w[0][1] {
                                return Err(Error::input(format!(
                                    "monotone map points are not non-decreasing: {w:?}"
                                )));
                            }
                        }
                        for p in points {
                            finite("map point", p[0])?;
                            positive("map λ", p[1])?;
                        }
                    }
                }
            }
            Rule::Noise { a, b, range: r, .. } => {
                finite("a", *a)?;
                finite("b", *b)?;
                range(r)?;
            }
            Rule::Discrepancy {
                probe,
                clean_sigma,
                tau,
                range: r,
                iterations,
                ..
            } => {
                positive("probe λ", *probe)?;
                finite("clean σ̂", *clean_sigma)?;
                finite("τ", *tau)?;
                range(r)?;
                if *iterations == 0 || *iterations > 64 {
                    return Err(Error::input("bisection iterations must be 1…64"));
                }
            }
        }
        Ok(())
    }

    pub fn kind(&self) -> &'static str {
        match self.rule {
            Rule::Fixed { .. } => "fixed",
            Rule::PerCondition { .. } => "per-condition",
            Rule::Residual { .. } => "residual",
            Rule::Noise { .. } => "noise",
            Rule::Discrepancy { .. } => "discrepancy",
        }
    }

    /// Whether λ is chosen per input (and so recorded per sample).
    pub fn per_input(&self) -> bool {
        matches!(
            self.rule,
            Rule::Residual { .. } | Rule::Noise { .. } | Rule::Discrepancy { .. }
        )
    }

    /// The schedule's name in cell keys: explicit for fixed λ, else the kind and a digest of
    /// every setting (the full settings go into each cell record).
    pub fn name(&self) -> String {
        match &self.rule {
            Rule::Fixed { lambdas } => {
                let parts: Vec<String> = lambdas.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("fixed({})", parts.join(","))
            }
            _ => {
                let decisive = serde_json::to_string(&self.rule).expect("serialises");
                let digest = hex(&Sha256::digest(decisive.as_bytes()));
                let oracle = matches!(self.rule, Rule::PerCondition { oracle: true, .. });
                let tag = if oracle { "-oracle" } else { "" };
                format!("{}{tag}#{}", self.kind(), &digest[..8])
            }
        }
    }

    /// Extra first-layer CSC solves per image that selecting λ costs.
    pub fn extra_solves(&self) -> usize {
        match &self.rule {
            Rule::Residual { .. } => 1,
            Rule::Discrepancy {
                iterations,
                range,
                probe,
                ..
            } => iterations + if probe == &range[0] { 2 } else { 3 },
            _ => 0,
        }
    }
}

fn parse_pairs(args: &str) -> std::result::Result<Vec<(String, f64)>, String> {
    let mut pairs = Vec::new();
    for part in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim()),
            None => ("all".to_string(), part),
        };
        let number: f64 = value
            .parse()
            .map_err(|_| format!("'{value}' is not a number"))?;
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(format!("{key} given twice"));
        }
        pairs.push((key, number));
    }
    if pairs.is_empty() {
        return Err("nothing given".into());
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_files_round_trip() {
        let s = Schedule::parse("fixed:layer0=0.5,layer1.0.conv1=0.2").unwrap();
        assert_eq!(s.name(), "fixed(layer0=0.5,layer1.0.conv1=0.2)");
        assert_eq!(Schedule::parse("0.3").unwrap().name(), "fixed(all=0.3)");
        let noise = Schedule::parse("noise:a=0.1,b=8").unwrap();
        let back: Schedule = serde_json::from_str(&noise.to_json()).unwrap();
        assert_eq!(back, noise);
        assert_eq!(back.name(), noise.name());
    }

    #[test]
    fn bad_values_are_refused() {
        for spec in [
            "fixed:0",
            "fixed:-1",
            "fixed:NaN",
            "first=0",
            "noise:a=1",
            "bogus:1",
        ] {
            assert!(Schedule::parse(spec).is_err(), "{spec}");
        }
    }

    #[test]
    fn monotone_map_interpolates_and_clamps() {
        let map = ResidualMap::Monotone {
            points: vec![[1.0, 0.1], [3.0, 0.5]],
        };
        assert_eq!(map.eval(0.0), (0.1, 0.0));
        assert_eq!(map.eval(2.0), (0.30000000000000004, 0.2));
        assert_eq!(map.eval(9.0), (0.5, 0.0));
    }
}
