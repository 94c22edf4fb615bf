//! Keeping perturbations inside the threat model, and proving it on every batch.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::Norm;

/// Slack allowed on top of ε when checking a perturbation (float rounding).
pub const TOLERANCE: f64 = 1e-6;

/// Projects `adv` onto the ε-ball around `x` in the given norm, then onto [0,1].
pub fn project<B: Backend>(
    adv: Tensor<B, 4>,
    x: &Tensor<B, 4>,
    eps: f64,
    norm: Norm,
) -> Tensor<B, 4> {
    let delta = adv - x.clone();
    let delta = match norm {
        Norm::Linf => delta.clamp(-eps, eps),
        Norm::L2 => {
            let norms = row_norms(&delta);
            let scale: Vec<f32> = norms
                .iter()
                .map(|&n| {
                    if n as f64 > eps {
                        (eps / n as f64) as f32
                    } else {
                        1.0
                    }
                })
                .collect();
            delta * per_sample(scale, &x.device())
        }
    };
    (x.clone() + delta).clamp(0.0, 1.0)
}

/// Per-sample ℓ2 norms of the rows of a batch.
pub(crate) fn row_norms<B: Backend>(t: &Tensor<B, 4>) -> Vec<f32> {
    let [n, c, h, w] = t.dims();
    let sq = t.clone().square().reshape([n, c * h * w]).sum_dim(1);
    sq.sqrt()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32")
}

/// A per-sample factor as [n, 1, 1, 1], for broadcasting over images.
pub(crate) fn per_sample<B: Backend>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 4> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n, 1, 1, 1]), device)
}

/// Per-sample (‖δ‖∞, ‖δ‖₂) of `adv − x`.
pub fn perturbation_norms<B: Backend>(
    adv: &Tensor<B, 4>,
    x: &Tensor<B, 4>,
) -> (Vec<f32>, Vec<f32>) {
    let delta = adv.clone() - x.clone();
    let [n, c, h, w] = delta.dims();
    let linf = delta.clone().abs().reshape([n, c * h * w]).max_dim(1);
    let linf = linf
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32");
    (linf, row_norms(&delta))
}

/// A perturbation outside the threat model: always a bug in the attack, never a result.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetViolation(pub String);

impl std::fmt::Display for BudgetViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BudgetViolation {}

/// Checks max‖δ‖ ≤ ε + 1e-6, adv ∈ [0,1] and the absence of NaN.
pub fn check_budget<B: Backend>(
    adv: &Tensor<B, 4>,
    x: &Tensor<B, 4>,
    eps: f64,
    norm: Norm,
) -> Result<(), BudgetViolation> {
    let values = adv
        .clone()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32");
    let nan = values.iter().filter(|v| v.is_nan()).count();
    if nan > 0 {
        return Err(BudgetViolation(format!(
            "{nan} NaN values in the adversarial images"
        )));
    }
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo < 0.0 || hi > 1.0 {
        return Err(BudgetViolation(format!(
            "adversarial images leave [0,1]: range [{lo}, {hi}]"
        )));
    }
    let (linf, l2) = perturbation_norms(adv, x);
    let norms = match norm {
        Norm::Linf => linf,
        Norm::L2 => l2,
    };
    let worst = norms.iter().cloned().fold(0.0f32, f32::max) as f64;
    if worst > eps + TOLERANCE.max(eps * 1e-6) {
        return Err(BudgetViolation(format!(
            "perturbation of {norm} norm {worst} exceeds ε = {eps}"
        )));
    }
    Ok(())
}
