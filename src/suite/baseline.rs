//! Regression baselines: a small tab-separated text file (tabs between the fields) meant to be committed, one line per
//! (cell, metric) with the settings digest, n, the value and the per-image outcomes (index
//! ranges and a bit string in hex), so that a later run can be compared image by image.
//!
//! ```text
//! # robust-eval regression baseline, format 1
//! # suite: ci
//! cell  metric  settings  seed  n  value  samples
//! sdnet18/none/clean  accuracy  5d0c…  -  200  0.765000  0-199:f7ff…
//! ```
//!
//! Cells are named by model label, defense and condition — not by the weights, because a gate
//! exists to compare other weights of the same model. The settings digest covers everything
//! else that decides a number (architecture, defense, condition, data set, n and images).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::evaluate::results::StoredCell;
use crate::evaluate::sample::SampleRow;
use crate::models::load::hex;
use crate::report::write_atomic;

const FORMAT_LINE: &str = "# robust-eval regression baseline, format 1";
const COLUMNS: [&str; 7] = [
    "cell", "metric", "settings", "seed", "n", "value", "samples",
];

/// The per-image outcomes behind a proportion.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcomes {
    pub indices: Vec<usize>,
    pub hits: Vec<bool>,
}

impl Outcomes {
    pub fn rate(&self) -> f64 {
        self.hits.iter().filter(|h| **h).count() as f64 / self.hits.len().max(1) as f64
    }

    /// `0-99,200-299:` then the hits as bits, most significant first, in hex.
    pub fn encode(&self) -> String {
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < self.indices.len() {
            let start = self.indices[i];
            let mut end = start;
            while i + 1 < self.indices.len() && self.indices[i + 1] == end + 1 {
                i += 1;
                end += 1;
            }
            ranges.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
            i += 1;
        }
        let mut bits = String::new();
        for chunk in self.hits.chunks(4) {
            let nibble = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (k, &h)| acc | (u32::from(h) << (3 - k)));
            let _ = write!(bits, "{nibble:x}");
        }
        format!("{}:{bits}", ranges.join(","))
    }

    pub fn decode(text: &str, n: usize) -> std::result::Result<Self, String> {
        let (ranges, bits) = text.split_once(':').ok_or("samples: expected RANGES:HEX")?;
        let mut indices = Vec::new();
        for range in ranges.split(',').filter(|r| !r.is_empty()) {
            let parse = |s: &str| {
                s.parse::<usize>()
                    .map_err(|_| format!("bad index range '{range}'"))
            };
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (parse(a)?, parse(b)?),
                None => (parse(range)?, parse(range)?),
            };
            if b < a || indices.last().is_some_and(|&last| a <= last) {
                return Err(format!("index ranges out of order at '{range}'"));
            }
            if b - a >= n {
                return Err(format!("range '{range}' is longer than n = {n}"));
            }
            indices.extend(a..=b);
        }
        if indices.len() != n || bits.len() != n.div_ceil(4) {
            return Err(format!(
                "{} indices and {} hex digits for n = {n}",
                indices.len(),
                bits.len()
            ));
        }
        let mut hits = Vec::with_capacity(n);
        for c in bits.chars() {
            let nibble = c
                .to_digit(16)
                .ok_or_else(|| format!("bad hex digit '{c}'"))?;
            for k in 0..4 {
                if hits.len() < n {
                    hits.push(nibble & (1 << (3 - k)) != 0);
                }
            }
        }
        Ok(Self { indices, hits })
    }
}

/// One (cell, metric) of a baseline or of a results directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `label/defense/condition`, e.g. `SDNet-18/none/pgd(linf,2/255)`.
    pub cell: String,
    pub metric: String,
    pub settings: String,
    pub seed: Option<u64>,
    pub n: usize,
    pub value: f64,
    pub samples: Option<Outcomes>,
}

/// A baseline: the entries and the suite they came from (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    pub suite: Option<String>,
    pub entries: Vec<Entry>,
}

/// The per-image outcome behind a metric (`None`: the row has no such outcome).
type RowOutcome = fn(&SampleRow) -> Option<bool>;

/// The metrics a gate holds, with the per-image outcome behind each.
const GATED: [(&str, RowOutcome); 3] = [
    ("accuracy", |r| r.attack.is_none().then(|| r.correct())),
    ("top5_accuracy", |r| r.in_top5),
    ("robust_accuracy", |r| {
        r.attack.as_ref().map(|_| r.correct())
    }),
];

/// A cell's name in a gate: model label, defense and condition.
pub fn gate_name(record: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let condition = match record["condition_label"].as_str() {
        Some(c) => c.to_string(),
        // Records written before the label was stored: `label@weights/defense/condition#digest`.
        None => {
            let key = text(&record["key"]);
            let body = key.rsplit_once('#').map_or(key.as_str(), |k| k.0);
            let prefix_end = body.find('/').map_or(0, |i| i + 1);
            let rest = &body[prefix_end..];
            rest.split_once('/').map_or(rest, |r| r.1).to_string()
        }
    };
    format!(
        "{}/{}/{condition}",
        text(&record["model"]["label"]),
        text(&record["defense"])
    )
}

/// The digest of every setting that decides a cell's numbers, apart from the weights, the
/// seed and where files live.
pub fn gate_settings(record: &Value) -> String {
    let mut model = record["model"].clone();
    if let Some(m) = model.as_object_mut() {
        for field in ["label", "weights", "weights_sha256"] {
            m.remove(field);
        }
    }
    let mut condition = record["condition"].clone();
    if condition["source"]["premade"].is_string() {
        condition["source"]["premade"] = json!(true);
    }
    let mut data = record["data"].clone();
    if let Some(d) = data.as_object_mut() {
        for field in ["path", "source", "limit"] {
            d.remove(field);
        }
    }
    let decisive = json!({"model": model, "defense": record["defense"],
                          "condition": condition, "data": data});
    hex(&Sha256::digest(decisive.to_string().as_bytes()))[..16].to_string()
}

impl Baseline {
    /// The gate's entries of finished cells.
    pub fn from_cells(cells: &[StoredCell]) -> Self {
        let mut entries = Vec::new();
        for cell in cells {
            for (metric, outcome) in GATED {
                let hits: Option<Vec<bool>> = cell.rows.iter().map(outcome).collect();
                let Some(hits) = hits.filter(|h| !h.is_empty()) else {
                    continue;
                };
                let samples = Outcomes {
                    indices: cell.rows.iter().map(|r| r.index).collect(),
                    hits,
                };
                entries.push(Entry {
                    cell: gate_name(&cell.record),
                    metric: metric.to_string(),
                    settings: gate_settings(&cell.record),
                    seed: cell.record["seed"].as_u64(),
                    n: cell.result.n,
                    value: cell.result.metric(metric).unwrap_or_else(|| samples.rate()),
                    samples: Some(samples),
                });
            }
        }
        let mut suites: Vec<String> = cells
            .iter()
            .filter_map(|c| c.record["run"]["suite"]["name"].as_str().map(String::from))
            .collect();
        suites.sort();
        suites.dedup();
        Self {
            suite: (suites.len() == 1).then(|| suites.remove(0)),
            entries,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("{FORMAT_LINE}\n");
        if let Some(suite) = &self.suite {
            let _ = writeln!(out, "# suite: {suite}");
        }
        out.push_str(
            "# rewrite with: robust-eval regress --baseline THIS_FILE RESULTS_DIR --update\n",
        );
        out.push_str(&COLUMNS.join("\t"));
        out.push('\n');
        for e in &self.entries {
            let seed = e.seed.map_or("-".to_string(), |s| s.to_string());
            let samples = e.samples.as_ref().map_or("-".to_string(), Outcomes::encode);
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{seed}\t{}\t{:.6}\t{samples}",
                e.cell, e.metric, e.settings, e.n, e.value
            );
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_text().as_bytes())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(path, "cannot read baseline", e))?;
        Self::parse(&text).map_err(|why| Error::file(path, why))
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut lines = text.lines().enumerate();
        if lines.next().map(|l| l.1) != Some(FORMAT_LINE) {
            return Err(format!(
                "not a robust-eval baseline (the first line must be '{FORMAT_LINE}')"
            ));
        }
        let mut suite = None;
        let mut header_seen = false;
        let mut entries = Vec::new();
        for (i, line) in lines {
            let at = |why: String| format!("line {}: {why}", i + 1);
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(name) = comment.trim().strip_prefix("suite:") {
                    suite = Some(name.trim().to_string());
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if !header_seen {
                if fields != COLUMNS {
                    return Err(at(format!("expected the header {}", COLUMNS.join(" "))));
                }
                header_seen = true;
                continue;
            }
            entries.push(parse_entry(&fields).map_err(at)?);
        }
        if !header_seen {
            return Err("no header line".into());
        }
        let mut names: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.cell.as_str(), e.metric.as_str()))
            .collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("{} {} appears twice", w[0].0, w[0].1));
        }
        Ok(Self { suite, entries })
    }
}

fn parse_entry(fields: &[&str]) -> std::result::Result<Entry, String> {
    if fields.len() != COLUMNS.len() {
        return Err(format!(
            "{} fields instead of {}",
            fields.len(),
            COLUMNS.len()
        ));
    }
    let n: usize = fields[4]
        .parse()
        .map_err(|_| format!("bad n '{}'", fields[4]))?;
    let value: f64 = fields[5]
        .parse()
        .ok()
        .filter(|v: &f64| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("bad value '{}'", fields[5]))?;
    let seed = match fields[3] {
        "-" => None,
        s => Some(s.parse().map_err(|_| format!("bad seed '{s}'"))?),
    };
    let samples = match fields[6] {
        "-" => None,
        s => Some(Outcomes::decode(s, n)?),
    };
    if let Some(s) = &samples {
        if (s.rate() - value).abs() > 1e-6 {
            return Err(format!(
                "{} {}: the samples give {:.6}, not {value:.6}",
                fields[0],
                fields[1],
                s.rate()
            ));
        }
    }
    if fields[2].len() != 16 || !fields[2].chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("bad settings digest '{}'", fields[2]));
    }
    Ok(Entry {
        cell: fields[0].to_string(),
        metric: fields[1].to_string(),
        settings: fields[2].to_string(),
        seed,
        n,
        value,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        let o = Outcomes {
            indices: (0..5).chain(10..13).chain(std::iter::once(20)).collect(),
            hits: vec![true, false, true, true, false, false, true, true, true],
        };
        let text = o.encode();
        assert_eq!(text, "0-4,10-12,20:b38");
        assert_eq!(Outcomes::decode(&text, 9).unwrap(), o);
        assert!(Outcomes::decode(&text, 10).is_err());
        assert!(Outcomes::decode("3-1:0", 3).is_err());
    }

    #[test]
    fn baseline_text_round_trips_and_rejects_damage() {
        let b = Baseline {
            suite: Some("ci".into()),
            entries: vec![Entry {
                cell: "SDNet-18/none/pgd(linf,2/255)".into(),
                metric: "robust_accuracy".into(),
                settings: "0123456789abcdef".into(),
                seed: Some(0),
                n: 4,
                value: 0.75,
                samples: Some(Outcomes {
                    indices: vec![0, 1, 2, 3],
                    hits: vec![true, true, false, true],
                }),
            }],
        };
        let text = b.to_text();
        assert_eq!(Baseline::parse(&text).unwrap(), b);
        assert!(Baseline::parse(&text.replace("0.750000", "0.500000"))
            .unwrap_err()
            .contains("samples give"));
        assert!(Baseline::parse("cell\tmetric\n")
            .unwrap_err()
            .contains("not a robust-eval baseline"));
    }
}
