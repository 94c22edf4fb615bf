//! One evaluated image: the per-sample row every condition writes, in the journal (with its
//! compute time) and in `samples.csv` (keyed by cell).

use crate::adversarial::SampleRecord;
use crate::eval::Prediction;

/// The columns of a per-sample row, after the cell key.
pub const SAMPLE_COLUMNS: [&str; 17] = [
    "index",
    "label",
    "prediction",
    "correct",
    "top5",
    "clean_prediction",
    "target",
    "success",
    "linf",
    "l2",
    "loss",
    "restarts",
    "zero_gradient",
    "lambda",
    "broken_by",
    "queries",
    "checks",
];

/// How many of [`SAMPLE_COLUMNS`] files of earlier layouts hold: before the λ column (13), and
/// before the AutoAttack columns (14).
pub const EARLIER_LAYOUTS: [usize; 2] = [13, 14];

/// The number of leading [`SAMPLE_COLUMNS`] that `header` (without cell or seconds) holds, when
/// it is this layout or an earlier one.
pub fn layout_of(header: &[&str]) -> Option<usize> {
    let n = header.len();
    (n == SAMPLE_COLUMNS.len() || EARLIER_LAYOUTS.contains(&n))
        .then_some(n)
        .filter(|&n| header == &SAMPLE_COLUMNS[..n])
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampleRow {
    pub index: usize,
    pub label: usize,
    /// The predicted class (under attack, for attack cells).
    pub prediction: usize,
    /// Whether the label is among the five highest logits (clean and corrupted images).
    pub in_top5: Option<bool>,
    pub attack: Option<AttackFields>,
    /// The λ a λ schedule chose for the image (first CSC layer it sets).
    pub lambda: Option<f64>,
    /// Runtime checks on the model that flagged the image's batch (`randomised`, `softmax`),
    /// joined by `;`.
    pub checks: Option<String>,
    /// Compute time of the sample's batch divided by its size (journal only; not a result).
    pub seconds: f64,
}

/// What an attack adds to a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackFields {
    pub clean_prediction: usize,
    pub target: Option<usize>,
    pub success: bool,
    pub linf: f32,
    pub l2: f32,
    pub loss: f32,
    pub restarts: usize,
    pub zero_gradient: bool,
    /// For ensembles: the member that broke the sample, or `none`.
    pub broken_by: Option<String>,
    /// Model evaluations of query-limited attacks.
    pub queries: Option<usize>,
}

impl SampleRow {
    pub fn correct(&self) -> bool {
        self.prediction == self.label
    }

    pub fn from_prediction(p: &Prediction, seconds: f64) -> Self {
        Self {
            index: p.index,
            label: p.label,
            prediction: p.predicted,
            in_top5: Some(p.in_top5),
            attack: None,
            lambda: None,
            checks: None,
            seconds,
        }
    }

    pub fn from_record(r: &SampleRecord, zero_gradient: bool, seconds: f64) -> Self {
        Self {
            index: r.index,
            label: r.label,
            prediction: r.adversarial_prediction,
            in_top5: None,
            attack: Some(AttackFields {
                clean_prediction: r.clean_prediction,
                target: r.target,
                success: r.success,
                linf: r.linf,
                l2: r.l2,
                loss: r.loss,
                restarts: r.restarts,
                zero_gradient,
                broken_by: r.broken_by.clone(),
                queries: r.queries,
            }),
            lambda: None,
            checks: None,
            seconds,
        }
    }

    pub fn with_lambda(mut self, lambda: Option<f64>) -> Self {
        self.lambda = lambda;
        self
    }

    pub fn prediction(&self) -> Prediction {
        Prediction {
            index: self.index,
            label: self.label,
            predicted: self.prediction,
            in_top5: self.in_top5.unwrap_or(false),
        }
    }

    /// The attack record of an attack cell's row.
    pub fn record(&self) -> Option<SampleRecord> {
        let a = self.attack.as_ref()?;
        Some(SampleRecord {
            index: self.index,
            label: self.label,
            target: a.target,
            clean_prediction: a.clean_prediction,
            adversarial_prediction: self.prediction,
            success: a.success,
            linf: a.linf,
            l2: a.l2,
            loss: a.loss,
            restarts: a.restarts,
            broken_by: a.broken_by.clone(),
            queries: a.queries,
        })
    }

    /// The fields of [`SAMPLE_COLUMNS`]. Floats use their shortest exact representation, so
    /// that rows read back give the same sums.
    pub fn fields(&self) -> Vec<String> {
        let flag = |b: bool| u8::from(b).to_string();
        let mut out = vec![
            self.index.to_string(),
            self.label.to_string(),
            self.prediction.to_string(),
            flag(self.correct()),
            self.in_top5.map(flag).unwrap_or_default(),
        ];
        match &self.attack {
            Some(a) => out.extend([
                a.clean_prediction.to_string(),
                a.target.map(|t| t.to_string()).unwrap_or_default(),
                flag(a.success),
                a.linf.to_string(),
                a.l2.to_string(),
                a.loss.to_string(),
                a.restarts.to_string(),
                flag(a.zero_gradient),
            ]),
            None => out.extend(std::iter::repeat_n(String::new(), 8)),
        }
        out.push(self.lambda.map(|l| l.to_string()).unwrap_or_default());
        let attack = self.attack.as_ref();
        out.push(attack.and_then(|a| a.broken_by.clone()).unwrap_or_default());
        out.push(
            attack
                .and_then(|a| a.queries)
                .map(|q| q.to_string())
                .unwrap_or_default(),
        );
        out.push(self.checks.clone().unwrap_or_default());
        out
    }

    /// Parses the fields of [`SAMPLE_COLUMNS`] followed by `seconds`.
    pub fn parse(fields: &[&str]) -> Result<Self, String> {
        if fields.len() != SAMPLE_COLUMNS.len() + 1 {
            return Err(format!(
                "{} fields instead of {}",
                fields.len(),
                SAMPLE_COLUMNS.len() + 1
            ));
        }
        let column = |i: usize| {
            (
                SAMPLE_COLUMNS.get(i).copied().unwrap_or("seconds"),
                fields[i],
            )
        };
        let int = |i: usize| {
            let (name, text) = column(i);
            text.parse::<usize>()
                .map_err(|_| format!("bad {name} '{text}'"))
        };
        let float = |i: usize| {
            let (name, text) = column(i);
            text.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("bad {name} '{text}'"))
        };
        let flag = |i: usize| match column(i) {
            (_, "0") => Ok(false),
            (_, "1") => Ok(true),
            (name, text) => Err(format!("bad {name} '{text}'")),
        };
        // A name field: lowercase letters, digits, '-', '+' and ';' only (it sits in CSV rows).
        let name = |i: usize| -> Result<Option<String>, String> {
            let (column, text) = column(i);
            if text.is_empty() {
                Ok(None)
            } else if text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-+;".contains(c))
            {
                Ok(Some(text.to_string()))
            } else {
                Err(format!("bad {column} '{text}'"))
            }
        };
        let optional = |i: usize| -> Result<Option<bool>, String> {
            if fields[i].is_empty() {
                Ok(None)
            } else {
                flag(i).map(Some)
            }
        };
        let row = Self {
            index: int(0)?,
            label: int(1)?,
            prediction: int(2)?,
            in_top5: optional(4)?,
            attack: if fields[5].is_empty() {
                None
            } else {
                Some(AttackFields {
                    clean_prediction: int(5)?,
                    target: if fields[6].is_empty() {
                        None
                    } else {
                        Some(int(6)?)
                    },
                    success: flag(7)?,
                    linf: float(8)?,
                    l2: float(9)?,
                    loss: float(10)?,
                    restarts: int(11)?,
                    zero_gradient: flag(12)?,
                    broken_by: name(14)?,
                    queries: if fields[15].is_empty() {
                        None
                    } else {
                        Some(int(15)?)
                    },
                })
            },
            lambda: if fields[13].is_empty() {
                None
            } else {
                Some(
                    fields[13]
                        .parse::<f64>()
                        .ok()
                        .filter(|l| l.is_finite() && *l > 0.0)
                        .ok_or_else(|| format!("bad lambda '{}'", fields[13]))?,
                )
            },
            checks: name(16)?,
            seconds: fields[17]
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("bad seconds '{}'", fields[17]))?,
        };
        if flag(3)? != row.correct() {
            return Err("the correct column contradicts label and prediction".into());
        }
        Ok(row)
    }
}
