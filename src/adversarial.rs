//! Adversarial evaluation: the attacks crate applied batch by batch to a data set, with clean and
//! robust accuracy over the same samples and per-sample records.

use std::fmt;

use attacks::{AttackConfig, Classifier, Goal, Norm};
use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::models::Network;

/// A perturbation budget as the user wrote it ("8/255") and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub text: String,
    pub value: f64,
}

impl Budget {
    /// Parses `a/b` or a decimal; rejects negative, infinite and NaN values and division by zero.
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let bad = |why: &str| Error::input(format!("{what} '{text}': {why}"));
        let text = text.trim();
        let value = match text.split_once('/') {
            Some((num, den)) => {
                let num: f64 = num
                    .trim()
                    .parse()
                    .map_err(|_| bad("numerator is not a number"))?;
                let den: f64 = den
                    .trim()
                    .parse()
                    .map_err(|_| bad("denominator is not a number"))?;
                if den == 0.0 {
                    return Err(bad("division by zero"));
                }
                num / den
            }
            None => text
                .parse()
                .map_err(|_| bad("not a number or fraction like 8/255"))?,
        };
        if !value.is_finite() {
            return Err(bad("must be finite"));
        }
        if value < 0.0 {
            return Err(bad("must not be negative"));
        }
        Ok(Self {
            text: text.to_string(),
            value,
        })
    }

    /// A comma-separated list, e.g. `1/255,2/255,4/255,8/255`.
    pub fn parse_list(text: &str, what: &str) -> Result<Vec<Self>> {
        let list: Vec<Self> = text
            .split(',')
            .map(|t| Self::parse(t, what))
            .collect::<Result<_>>()?;
        if list.is_empty() {
            return Err(Error::input(format!("{what}: no value given")));
        }
        Ok(list)
    }

    /// The same value written for reports.
    pub fn exact(value: f64) -> Self {
        Self {
            text: format!("{value}"),
            value,
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How target classes are chosen for a targeted attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targeting {
    Untargeted,
    /// A class other than the label, uniformly at random (seeded per sample).
    Random,
    /// The class with the lowest clean logit.
    LeastLikely,
    /// The same class for every sample.
    Class(usize),
}

impl std::str::FromStr for Targeting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "untargeted" => Ok(Self::Untargeted),
            "random" => Ok(Self::Random),
            "least-likely" | "ll" => Ok(Self::LeastLikely),
            other => other
                .strip_prefix("class:")
                .and_then(|k| k.parse().ok())
                .map(Self::Class)
                .ok_or_else(|| {
                    Error::input(format!(
                        "unknown targeting '{other}' (expected none, random, least-likely or class:K)"
                    ))
                }),
        }
    }
}

impl fmt::Display for Targeting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Untargeted => write!(f, "none"),
            Self::Random => write!(f, "random"),
            Self::LeastLikely => write!(f, "least-likely"),
            Self::Class(k) => write!(f, "class:{k}"),
        }
    }
}

/// A network with frozen parameters, evaluated in inference mode: what attacks may see.
pub struct FrozenNetwork<B: ConvBackend + AutodiffBackend>(Network<B>);

impl<B: ConvBackend + AutodiffBackend> FrozenNetwork<B> {
    pub fn new(network: Network<B>) -> Self {
        Self(network.no_grad())
    }

    pub fn network(&self) -> &Network<B> {
        &self.0
    }
}

impl<B: ConvBackend + AutodiffBackend> Classifier<B> for FrozenNetwork<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.0.forward(images)
    }
}

/// The autodiff backend attacks run on.
pub type AttackBackend<B> = Autodiff<B>;

/// Seed of the random stream of data-set image `index`.
pub fn sample_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Target classes for a batch (`clean_logits` are needed for least-likely targets).
pub fn targets_for(
    targeting: Targeting,
    labels: &[usize],
    seeds: &[u64],
    num_classes: usize,
    clean_logits: Option<&[f32]>,
) -> Option<Vec<usize>> {
    use rand::Rng;
    match targeting {
        Targeting::Untargeted => None,
        Targeting::Class(k) => Some(vec![k; labels.len()]),
        Targeting::Random => Some(
            labels
                .iter()
                .zip(seeds)
                .map(|(&label, &seed)| {
                    let mut rng = attacks::sample_rng(seed, usize::MAX);
                    let pick = rng.random_range(0..num_classes - 1);
                    if pick >= label {
                        pick + 1
                    } else {
                        pick
                    }
                })
                .collect(),
        ),
        Targeting::LeastLikely => {
            let logits = clean_logits.expect("least-likely targets need clean logits");
            Some(
                logits
                    .chunks(num_classes)
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .min_by(|a, b| a.1.total_cmp(b.1))
                            .map(|(i, _)| i)
                            .unwrap_or(0)
                    })
                    .collect(),
            )
        }
    }
}

/// Everything recorded about one attacked sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRecord {
    pub index: usize,
    pub label: usize,
    pub target: Option<usize>,
    pub clean_prediction: usize,
    pub adversarial_prediction: usize,
    /// Whether the attack reached its goal.
    pub success: bool,
    pub linf: f32,
    pub l2: f32,
    /// Cross-entropy of the label at the adversarial image.
    pub loss: f32,
    pub restarts: usize,
    /// For ensembles: the member that broke the sample (none if it stayed robust).
    pub broken_by: Option<String>,
    /// Model evaluations of query-limited attacks (Square).
    pub queries: Option<usize>,
}

impl SampleRecord {
    pub fn clean_correct(&self) -> bool {
        self.clean_prediction == self.label
    }
    pub fn robust_correct(&self) -> bool {
        self.adversarial_prediction == self.label
    }
}

/// What attacking one batch produced.
pub struct AttackedBatch {
    pub records: Vec<SampleRecord>,
    /// Per sample: attacked, with an input gradient exactly zero at the first step.
    pub zero_gradient: Vec<bool>,
    /// Adversarial pixels of the batch, NCHW.
    pub adversarial: Vec<f32>,
}

/// How the samples of a batch are attacked.
#[derive(Clone, Copy, Debug)]
pub struct AttackDriver {
    pub restarts: usize,
    pub targeting: Targeting,
    /// Random starts and targets are drawn from (seed, image index).
    pub seed: u64,
}

/// Attacks one batch: targets, restarts keeping the per-sample worst case, and the budget check.
pub fn attack_batch<B, M>(
    attack: &AttackConfig,
    model: &M,
    num_classes: usize,
    batch: &Batch,
    driver: AttackDriver,
    device: &B::Device,
) -> Result<AttackedBatch>
where
    B: ConvBackend + AutodiffBackend,
    M: Classifier<B>,
{
    attack.check_classes(num_classes).map_err(Error::input)?;
    if let Targeting::Class(k) = driver.targeting {
        if k >= num_classes {
            return Err(Error::input(format!(
                "target class {k} is outside 0..{num_classes}"
            )));
        }
    }
    let images = batch.images::<B::InnerBackend>(device);
    let seeds: Vec<u64> = batch
        .indices
        .iter()
        .map(|&i| sample_seed(driver.seed, i))
        .collect();
    let clean_logits = model.logits(Tensor::from_inner(images.clone())).inner();
    let clean_predictions = attacks::argmax(clean_logits.clone());
    // On the host only where least-likely targets are chosen from them.
    let host_logits = (driver.targeting == Targeting::LeastLikely).then(|| {
        clean_logits
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32")
    });
    let targets = targets_for(
        driver.targeting,
        &batch.labels,
        &seeds,
        num_classes,
        host_logits.as_deref(),
    );
    let goal = Goal {
        labels: batch.labels.clone(),
        targets,
        seeds,
    };
    let outcome = attacks::run_from_clean(
        attack,
        model,
        images.clone(),
        clean_predictions,
        &goal,
        driver.restarts,
    )
    .map_err(|v| Error::input(format!("attack produced an invalid perturbation: {v}")))?;
    let (linf, l2) = attacks::perturbation_norms(&outcome.adversarial, &images);
    let members = attack.members();
    let records = (0..batch.len())
        .map(|i| SampleRecord {
            index: batch.indices[i],
            label: batch.labels[i],
            target: goal.targets.as_ref().map(|t| t[i]),
            clean_prediction: outcome.clean_predictions[i],
            adversarial_prediction: outcome.predictions[i],
            success: outcome.success[i],
            linf: linf[i],
            l2: l2[i],
            loss: outcome.loss[i],
            restarts: outcome.restarts_used[i],
            broken_by: outcome
                .broken_by
                .as_ref()
                .map(|b| b[i].map_or_else(|| "none".to_string(), |m| members[m].clone())),
            queries: outcome.queries.as_ref().map(|q| q[i]),
        })
        .collect();
    let adversarial = outcome
        .adversarial
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32");
    Ok(AttackedBatch {
        records,
        zero_gradient: outcome.zero_gradient,
        adversarial,
    })
}

/// Aggregates over the records of one ε.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AttackSummary {
    pub n: usize,
    pub clean_accuracy: f64,
    /// Correct under attack / all evaluated samples (the RobustBench definition).
    pub robust_accuracy: f64,
    /// Goal reached / samples the goal applies to (targeted: target ≠ label).
    pub success_rate: f64,
    pub mean_linf: f64,
    pub max_linf: f64,
    pub mean_l2: f64,
    pub max_l2: f64,
    pub mean_loss: f64,
}

impl AttackSummary {
    pub fn of(records: &[SampleRecord]) -> Self {
        let n = records.len();
        let frac = |k: usize, d: usize| if d == 0 { 0.0 } else { k as f64 / d as f64 };
        let eligible: Vec<&SampleRecord> = records
            .iter()
            .filter(|r| r.target != Some(r.label))
            .collect();
        let mean = |f: &dyn Fn(&SampleRecord) -> f32| {
            if n == 0 {
                0.0
            } else {
                records.iter().map(|r| f(r) as f64).sum::<f64>() / n as f64
            }
        };
        let max = |f: &dyn Fn(&SampleRecord) -> f32| {
            records.iter().map(|r| f(r) as f64).fold(0.0, f64::max)
        };
        Self {
            n,
            clean_accuracy: frac(records.iter().filter(|r| r.clean_correct()).count(), n),
            robust_accuracy: frac(records.iter().filter(|r| r.robust_correct()).count(), n),
            success_rate: frac(
                eligible.iter().filter(|r| r.success).count(),
                eligible.len(),
            ),
            mean_linf: mean(&|r| r.linf),
            max_linf: max(&|r| r.linf),
            mean_l2: mean(&|r| r.l2),
            max_l2: max(&|r| r.l2),
            mean_loss: mean(&|r| r.loss),
        }
    }
}

/// The norm a command-line name stands for.
pub fn parse_norm(text: &str) -> Result<Norm> {
    text.parse().map_err(Error::input)
}
