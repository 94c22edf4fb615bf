//! Running an attack on a batch: skipping samples that need no attack, restarts that keep the
//! per-sample worst case, and the budget check.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::budget::{check_budget, BudgetViolation};
use crate::gradient::{argmax, cross_entropy};
use crate::{Attack, Classifier, Goal, Images, Rows};

/// The result of attacking one batch.
pub struct Outcome<B: AutodiffBackend> {
    pub adversarial: Images<B>,
    /// Class predicted on the clean images.
    pub clean_predictions: Vec<usize>,
    /// Class predicted on the adversarial images.
    pub predictions: Vec<usize>,
    /// Whether the goal was reached (misclassified, or the target hit).
    pub success: Vec<bool>,
    /// Cross-entropy of the true label at the adversarial images.
    pub loss: Vec<f32>,
    /// Restarts actually run per sample (0 for samples that needed no attack).
    pub restarts_used: Vec<usize>,
    /// Per sample: whether it was attacked and its input gradient was exactly zero at the first
    /// step of the first restart.
    pub zero_gradient: Vec<bool>,
    /// Per sample: model evaluations over all restarts (query-limited attacks only).
    pub queries: Option<Vec<usize>>,
    /// Per sample, for ensembles: the member whose image was kept, if it broke the sample.
    pub broken_by: Option<Vec<Option<usize>>>,
}

/// Attacks `images`, restarting up to `restarts` times on the samples not yet broken and keeping
/// for each sample a successful adversarial image, or else the one with the highest loss.
/// Untargeted attacks skip samples that are already misclassified.
pub fn run<B: AutodiffBackend, A: Attack<B>, M: Classifier<B>>(
    attack: &A,
    model: &M,
    images: Images<B>,
    goal: &Goal,
    restarts: usize,
) -> Result<Outcome<B>, BudgetViolation> {
    let clean_predictions = argmax(logits_of(model, &images));
    run_from_clean(attack, model, images, clean_predictions, goal, restarts)
}

/// [`run`] for a caller that already holds the model's predictions on the clean `images`, which
/// saves one forward pass.
pub fn run_from_clean<B: AutodiffBackend, A: Attack<B>, M: Classifier<B>>(
    attack: &A,
    model: &M,
    images: Images<B>,
    clean_predictions: Vec<usize>,
    goal: &Goal,
    restarts: usize,
) -> Result<Outcome<B>, BudgetViolation> {
    assert_eq!(
        clean_predictions.len(),
        images.dims()[0],
        "one clean prediction per image"
    );
    let outcome = attack_rows(
        attack,
        model,
        images.clone(),
        clean_predictions,
        goal,
        restarts,
    );
    check_budget(&outcome.adversarial, &images, attack.eps(), attack.norm())?;
    Ok(outcome)
}

/// [`run`] without the final budget check (for ensembles, whose result is checked as a whole).
pub(crate) fn run_unchecked<B: AutodiffBackend, A: Attack<B>, M: Classifier<B>>(
    attack: &A,
    model: &M,
    images: Images<B>,
    goal: &Goal,
    restarts: usize,
) -> Outcome<B> {
    let clean_predictions = argmax(logits_of(model, &images));
    attack_rows(attack, model, images, clean_predictions, goal, restarts)
}

fn attack_rows<B: AutodiffBackend, A: Attack<B>, M: Classifier<B>>(
    attack: &A,
    model: &M,
    images: Images<B>,
    clean_predictions: Vec<usize>,
    goal: &Goal,
    restarts: usize,
) -> Outcome<B> {
    let [n, c, h, w] = images.dims();
    let row = c * h * w;
    let device = images.device();
    let mut success: Vec<bool> = (0..n)
        .map(|i| goal.achieved(i, clean_predictions[i]))
        .collect();
    let mut pixels = to_vec(images.clone());
    let mut best_loss = vec![f32::NEG_INFINITY; n];
    let mut restarts_used = vec![0; n];
    let mut zero_gradient = vec![false; n];
    let mut queries: Option<Vec<usize>> = None;
    let mut broken_by: Option<Vec<Option<usize>>> = None;
    // The logits of the last restart when it scored the whole batch and every image was kept:
    // then the returned batch is exactly the one scored, and scoring it again would repeat them
    // (classifiers are deterministic functions of their batch, see `Classifier`).
    let mut whole_batch_logits = None;

    for restart in 0..restarts.max(1) {
        let active: Vec<usize> = (0..n).filter(|&i| !success[i]).collect();
        if active.is_empty() || attack.eps() == 0.0 && restart > 0 {
            break;
        }
        let sub_images = select(&images, &active);
        let sub_goal = goal.subset(&active);
        let sub_model = Rows {
            model,
            rows: &active,
        };
        let perturbed = attack.perturb(&sub_model, sub_images, &sub_goal, restart);
        if restart == 0 {
            for (&i, &zero) in active.iter().zip(&perturbed.zero_gradient) {
                zero_gradient[i] = zero;
            }
        }
        if let Some(q) = &perturbed.queries {
            let total = queries.get_or_insert_with(|| vec![0; n]);
            for (&i, &used) in active.iter().zip(q) {
                total[i] += used;
            }
        }
        let members = perturbed.broken_by.clone();
        let logits = logits_of(&sub_model, &perturbed.images);
        let predictions = argmax(logits.clone());
        let losses = objective(logits.clone(), &sub_goal);
        let adv_pixels = to_vec(perturbed.images);
        let mut kept_all = active.len() == n;
        for (k, &i) in active.iter().enumerate() {
            restarts_used[i] += 1;
            let achieved = sub_goal.achieved(k, predictions[k]);
            let keep = achieved || losses[k] > best_loss[i];
            kept_all &= keep;
            if keep {
                pixels[i * row..(i + 1) * row].copy_from_slice(&adv_pixels[k * row..(k + 1) * row]);
                best_loss[i] = losses[k];
                if let Some(m) = &members {
                    broken_by.get_or_insert_with(|| vec![None; n])[i] = m[k];
                }
            }
            success[i] = achieved;
        }
        whole_batch_logits = kept_all.then_some(logits);
    }

    let adversarial = Tensor::from_data(TensorData::new(pixels, [n, c, h, w]), &device);
    let logits = whole_batch_logits.unwrap_or_else(|| logits_of(model, &adversarial));
    let predictions = argmax(logits.clone());
    let loss = to_vec1(cross_entropy(logits, &goal.labels));
    let success = (0..n).map(|i| goal.achieved(i, predictions[i])).collect();
    if let Some(b) = broken_by.as_mut() {
        // A member's image that the final re-scoring finds correct did not break the sample.
        for (i, member) in b.iter_mut().enumerate() {
            if !goal.achieved(i, predictions[i]) {
                *member = None;
            }
        }
    }
    Outcome {
        adversarial,
        clean_predictions,
        predictions,
        success,
        loss,
        restarts_used,
        zero_gradient,
        queries,
        broken_by,
    }
}

fn logits_of<B: AutodiffBackend, M: Classifier<B>>(
    model: &M,
    images: &Images<B>,
) -> Tensor<B::InnerBackend, 2> {
    model.logits(Tensor::from_inner(images.clone())).inner()
}

/// The attack objective (higher is better for the attacker).
fn objective<B: burn::tensor::backend::Backend>(logits: Tensor<B, 2>, goal: &Goal) -> Vec<f32> {
    match &goal.targets {
        Some(t) => to_vec1(cross_entropy(logits, t).neg()),
        None => to_vec1(cross_entropy(logits, &goal.labels)),
    }
}

use crate::samples::{select, values as to_vec, values as to_vec1};
