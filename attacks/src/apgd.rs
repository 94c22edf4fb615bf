//! APGD-CE (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks", ICML 2020).
//!
//! PGD with momentum 0.75 and a per-sample step size that starts at 2ε and is halved at
//! checkpoints where progress stalled (fewer than 75 % of the steps since the last checkpoint
//! increased the loss, or the best loss did not improve since the last checkpoint without a
//! reduction), restarting from the best point found. Checkpoint spacing starts at 0.22·N_iter and
//! shrinks by 0.03·N_iter down to 0.06·N_iter. A sample counts as broken if any iterate fools the
//! model. Defaults: 100 iterations, random start on the sphere of the ε-ball (as the reference
//! implementation: a uniform draw scaled to ‖δ‖∞ = ε, or a Gaussian direction scaled to
//! ‖δ‖₂ = ε), cross-entropy loss; `loss: dlr` gives APGD-DLR.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::budget::{per_sample, project};
use crate::fgsm::ascent_direction;
use crate::gradient::argmax;
use crate::loss::{Loss, Objective};
use crate::noise::{normal_with_radius, uniform_per_sample};
use crate::{Attack, Classifier, Goal, Gradient, Images, Norm, Perturbed};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Apgd {
    pub eps: f64,
    pub steps: usize,
    pub norm: Norm,
    /// Momentum weight of the new point (0.75 in the paper).
    pub momentum: f64,
    /// Fraction of increasing steps below which the step size is halved (0.75).
    pub rho: f64,
    /// Forward passes averaged per gradient (EOT); 1 for deterministic models.
    pub eot: usize,
    /// Cross-entropy (APGD-CE, the default) or DLR (APGD-DLR).
    #[serde(default, skip_serializing_if = "Loss::is_ce")]
    pub loss: Loss,
}

impl Apgd {
    pub fn new(eps: f64, norm: Norm) -> Self {
        Self {
            eps,
            steps: 100,
            norm,
            momentum: 0.75,
            rho: 0.75,
            eot: 1,
            loss: Loss::Ce,
        }
    }

    /// APGD-DLR at `eps`.
    pub fn dlr(eps: f64, norm: Norm) -> Self {
        Self {
            loss: Loss::Dlr,
            ..Self::new(eps, norm)
        }
    }
}

/// Blend `a` and `b` per sample: rows where `take_b` holds come from `b`.
pub(crate) fn select_rows<B: burn::tensor::backend::Backend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    take_b: &[bool],
) -> Tensor<B, 4> {
    if !take_b.iter().any(|t| *t) {
        return a;
    }
    let device = a.device();
    let mask: Vec<f32> = take_b.iter().map(|&t| if t { 1.0 } else { 0.0 }).collect();
    let keep: Vec<f32> = mask.iter().map(|m| 1.0 - m).collect();
    a * per_sample(keep, &device) + b * per_sample(mask, &device)
}

impl<B: AutodiffBackend> Attack<B> for Apgd {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        self.single_run(model, x, goal, restart, Objective::of(self.loss))
            .0
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}

impl Apgd {
    /// One run of APGD on `objective`: the adversarial images (the point that fooled the model,
    /// or else the highest-objective point) and which samples were fooled.
    pub(crate) fn single_run<B: AutodiffBackend, M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
        objective: Objective<'_>,
    ) -> (Perturbed<B>, Vec<bool>) {
        let n = goal.len();
        let n_iter = self.steps.max(1);
        // Truncation as in the reference implementation (22, 3 and 6 for 100 iterations).
        let first_interval = ((0.22 * n_iter as f64) as usize).max(1);
        let interval_decrease = ((0.03 * n_iter as f64) as usize).max(1);
        let min_interval = ((0.06 * n_iter as f64) as usize).max(1);

        let mut adv = sphere_start::<B>(&x, goal, restart, self.eps, self.norm);
        let mut gradient = Gradient::<B>::of(model, &adv, goal, self.eot, objective);
        let zero_gradient = gradient.zero_gradient.clone();
        let mut grad = gradient.grad.clone();
        let mut best_adv = adv.clone(); // the highest-loss point (restart point)
        let mut best_grad = grad.clone();
        let mut best_loss = gradient.loss.clone();
        let mut fooling = adv.clone(); // the first point that fooled the model, if any
        let mut fooled: Vec<bool> = gradient
            .predictions()
            .iter()
            .enumerate()
            .map(|(i, &p)| goal.achieved(i, p))
            .collect();

        let mut step: Vec<f32> = vec![(2.0 * self.eps) as f32; n];
        let mut previous = adv.clone();
        let mut losses: Vec<Vec<f32>> = Vec::with_capacity(n_iter);
        let mut interval = first_interval;
        let mut since_check = 0;
        let mut checkpoint_best = best_loss.clone();
        // As in the reference: the first checkpoint halves only on oscillation.
        let mut reduced_last_check = vec![true; n];

        for i in 0..n_iter {
            let a = if i == 0 { 1.0 } else { self.momentum };
            let momentum_term = adv.clone() - previous.clone();
            previous = adv.clone();
            let direction =
                ascent_direction(grad.clone(), self.norm) * per_sample(step.clone(), &x.device());
            let z = project(adv.clone() + direction, &x, self.eps, self.norm);
            let blended =
                adv.clone() + (z - adv.clone()).mul_scalar(a) + momentum_term.mul_scalar(1.0 - a);
            adv = project(blended, &x, self.eps, self.norm);

            gradient = Gradient::<B>::of(model, &adv, goal, self.eot, objective);
            grad = gradient.grad.clone();
            let newly_fooled: Vec<bool> = argmax(gradient.logits.clone())
                .iter()
                .enumerate()
                .map(|(k, &p)| !fooled[k] && goal.achieved(k, p))
                .collect();
            fooling = select_rows(fooling, adv.clone(), &newly_fooled);
            for (f, new) in fooled.iter_mut().zip(&newly_fooled) {
                *f |= *new;
            }
            let improved: Vec<bool> = gradient
                .loss
                .iter()
                .zip(&best_loss)
                .map(|(l, b)| l > b)
                .collect();
            best_adv = select_rows(best_adv, adv.clone(), &improved);
            best_grad = select_rows(best_grad, grad.clone(), &improved);
            for k in 0..n {
                if improved[k] {
                    best_loss[k] = gradient.loss[k];
                }
            }
            losses.push(gradient.loss.clone());

            since_check += 1;
            if since_check == interval {
                let oscillating = oscillation(&losses, interval, self.rho);
                let reduce: Vec<bool> = (0..n)
                    .map(|k| {
                        oscillating[k]
                            || (!reduced_last_check[k] && checkpoint_best[k] >= best_loss[k])
                    })
                    .collect();
                for k in 0..n {
                    if reduce[k] {
                        step[k] /= 2.0;
                    }
                }
                adv = select_rows(adv, best_adv.clone(), &reduce);
                grad = select_rows(grad, best_grad.clone(), &reduce);
                reduced_last_check = reduce;
                checkpoint_best = best_loss.clone();
                interval = interval.saturating_sub(interval_decrease).max(min_interval);
                since_check = 0;
            }
        }
        // Fooled samples return the point that fooled the model; the others their best point.
        let images = select_rows(best_adv, fooling, &fooled);
        (Perturbed::new(images, zero_gradient), fooled)
    }
}

/// A random point on the sphere of the ε-ball around `x` (then clipped to [0,1]): a uniform
/// draw in [−1, 1] scaled to ‖δ‖∞ = ε, or a Gaussian direction scaled to ‖δ‖₂ = ε.
pub(crate) fn sphere_start<B: AutodiffBackend>(
    x: &Images<B>,
    goal: &Goal,
    restart: usize,
    eps: f64,
    norm: Norm,
) -> Images<B> {
    let dims = x.dims();
    let per_image = dims[1] * dims[2] * dims[3];
    let values = match norm {
        Norm::Linf => uniform_per_sample(&goal.seeds, restart, per_image),
        Norm::L2 => normal_with_radius(&goal.seeds, restart, per_image).0,
    };
    let scale: Vec<f32> = values
        .chunks(per_image.max(1))
        .map(|row| {
            let size = match norm {
                Norm::Linf => row.iter().fold(0f32, |m, v| m.max(v.abs())),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            eps as f32 / (size + 1e-12)
        })
        .collect();
    let device = x.device();
    let delta = Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(values, dims), &device)
        * per_sample(scale, &device);
    (x.clone() + delta).clamp(0.0, 1.0)
}

/// Per sample: whether the loss increased in at most `rho·k` of the last `k` steps. The step
/// before the first counts as loss 0, as in the reference implementation.
fn oscillation(losses: &[Vec<f32>], k: usize, rho: f64) -> Vec<bool> {
    let j = losses.len() - 1;
    let n = losses[j].len();
    (0..n)
        .map(|s| {
            let increases = (0..k)
                .filter(|&c| {
                    let now = losses[j - c][s];
                    let before = if j > c { losses[j - c - 1][s] } else { 0.0 };
                    now > before
                })
                .count();
            increases as f64 <= k as f64 * rho
        })
        .collect()
}
