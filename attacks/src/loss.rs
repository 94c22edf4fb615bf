//! The objectives attacks maximise: cross-entropy and the difference-of-logits ratio (DLR) of
//! Croce & Hein (ICML 2020), untargeted and targeted.
//!
//! DLR is shift- and scale-invariant in the logits, so a model cannot hide behind large or
//! saturated logits:
//!
//! - untargeted: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12), at least 3 classes;
//! - targeted:   −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12), at least 4 classes,
//!
//! where π sorts the logits in decreasing order. The sorted positions are read from the current
//! logits and held fixed for the gradient, which is the gradient of the sort almost everywhere.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::gradient::cross_entropy;
use crate::Goal;

/// The loss of an attack's configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    #[default]
    Ce,
    Dlr,
}

impl Loss {
    pub fn is_ce(&self) -> bool {
        *self == Loss::Ce
    }

    /// The fewest classes the loss is defined for.
    pub fn min_classes(&self) -> usize {
        match self {
            Loss::Ce => 2,
            Loss::Dlr => 3,
        }
    }
}

/// What one gradient evaluation maximises, per sample.
#[derive(Clone, Copy, Debug)]
pub enum Objective<'a> {
    /// CE of the label (untargeted goal), or −CE of the target (targeted goal).
    CrossEntropy,
    /// Untargeted DLR of the label.
    Dlr,
    /// Targeted DLR towards these classes (one per sample); success is still misclassification.
    TargetedDlr(&'a [usize]),
}

impl<'a> Objective<'a> {
    pub fn of(loss: Loss) -> Self {
        match loss {
            Loss::Ce => Objective::CrossEntropy,
            Loss::Dlr => Objective::Dlr,
        }
    }

    /// Per-sample objective of `logits` ([N, K]); `values` are the same logits on the host.
    pub fn evaluate<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        values: &[f32],
        goal: &Goal,
    ) -> Tensor<B, 1> {
        match self {
            Objective::CrossEntropy => match &goal.targets {
                Some(targets) => cross_entropy(logits, targets).neg(),
                None => cross_entropy(logits, &goal.labels),
            },
            Objective::Dlr => dlr(logits, values, &goal.labels, None),
            Objective::TargetedDlr(targets) => dlr(logits, values, &goal.labels, Some(targets)),
        }
    }
}

/// Classes of one row of logits in decreasing order of logit.
pub(crate) fn ranked(row: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order
}

fn dlr<B: Backend>(
    logits: Tensor<B, 2>,
    values: &[f32],
    labels: &[usize],
    targets: Option<&[usize]>,
) -> Tensor<B, 1> {
    let [n, k] = logits.dims();
    let needed = if targets.is_some() { 4 } else { 3 };
    assert!(
        k >= needed,
        "the DLR loss needs at least {needed} classes, the model has {k}"
    );
    let mut numerator = vec![0f32; n * k];
    let mut denominator = vec![0f32; n * k];
    for row in 0..n {
        let order = ranked(&values[row * k..(row + 1) * k]);
        let y = labels[row];
        let other = match targets {
            Some(t) => t[row],
            None => *order.iter().find(|&&c| c != y).expect("k >= 3"),
        };
        numerator[row * k + y] += 1.0;
        numerator[row * k + other] -= 1.0;
        denominator[row * k + order[0]] += 1.0;
        match targets {
            Some(_) => {
                denominator[row * k + order[2]] -= 0.5;
                denominator[row * k + order[3]] -= 0.5;
            }
            None => denominator[row * k + order[2]] -= 1.0,
        }
    }
    let device = logits.device();
    let mask = |m: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(m, [n, k]), &device);
    let num = (logits.clone() * mask(numerator)).sum_dim(1).reshape([n]);
    let den = (logits * mask(denominator)).sum_dim(1).reshape([n]);
    num.neg() / den.add_scalar(1e-12)
}

/// DLR of one row of logits on the host (untargeted), for checks and tests.
pub fn dlr_value(row: &[f32], label: usize) -> f32 {
    let order = ranked(row);
    let other = *order.iter().find(|&&c| c != label).expect("two classes");
    -(row[label] - row[other]) / (row[order[0]] - row[order[2]] + 1e-12)
}
