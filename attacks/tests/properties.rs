//! Properties every attack must have, on a small linear classifier where the answers are known.

use attacks::{
    check_budget, perturbation_norms, project, run, run_from_clean, Apgd, Attack, Classifier, Fgsm,
    Goal, Norm, Pgd,
};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};

mod common;
use common::{images, normal, seeded};

type B = Autodiff<Flex>;
type Inner = Flex;

/// logits = W · flatten(x) + b over 3×4×4 images and 5 classes.
struct Linear {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
}

impl Linear {
    fn new() -> Self {
        let mut rng = seeded(11);
        Self {
            weight: normal([48, 5], 1.0, &mut rng),
            bias: normal([5], 0.1, &mut rng),
        }
    }
}

impl Classifier<B> for Linear {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let n = images.dims()[0];
        images.reshape([n, 48]).matmul(self.weight.clone()) + self.bias.clone().unsqueeze_dim(0)
    }
}

fn batch(n: usize) -> Tensor<Inner, 4> {
    images([n, 3, 4, 4], 12 + n as u64)
}

fn labels_of(model: &Linear, x: &Tensor<Inner, 4>) -> Vec<usize> {
    attacks::argmax(model.logits(Tensor::from_inner(x.clone())).inner())
}

fn goal(labels: Vec<usize>, targets: Option<Vec<usize>>) -> Goal {
    let seeds = (0..labels.len() as u64).collect();
    Goal {
        labels,
        targets,
        seeds,
    }
}

fn values(t: Tensor<Inner, 4>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn zero_budget_leaves_images_and_predictions_unchanged() {
    let model = Linear::new();
    let x = batch(16);
    let labels = labels_of(&model, &x);
    let g = goal(labels.clone(), None);
    for restarts in [1, 3] {
        let pgd = Pgd {
            eps: 0.0,
            ..Pgd::linf_default()
        };
        let out = run(&pgd, &model, x.clone(), &g, restarts).unwrap();
        assert_eq!(values(out.adversarial), values(x.clone()));
        assert_eq!(out.predictions, labels);
        let fgsm = Fgsm {
            eps: 0.0,
            norm: Norm::L2,
            eot: 1,
        };
        let out = run(&fgsm, &model, x.clone(), &g, restarts).unwrap();
        assert_eq!(out.predictions, labels);
    }
}

#[test]
fn l2_projection_lands_exactly_on_the_ball() {
    // x in the middle of [0,1] so that clipping to the box does not interfere.
    let device = Default::default();
    let x: Tensor<Inner, 4> = Tensor::full([4, 3, 4, 4], 0.5, &device);
    let far = x.clone() + normal([4, 3, 4, 4], 0.1, &mut seeded(13));
    let eps = 0.05;
    let projected = project(far, &x, eps, Norm::L2);
    let (_, l2) = perturbation_norms(&projected, &x);
    for norm in l2 {
        assert!((norm as f64 - eps).abs() < 1e-6, "‖δ‖₂ = {norm}, ε = {eps}");
    }
    // Points inside the ball stay where they are.
    let near = x.clone() + Tensor::full([4, 3, 4, 4], 0.001, &device);
    let kept = project(near.clone(), &x, eps, Norm::L2);
    assert_eq!(values(kept), values(near));
}

#[test]
fn perturbations_never_exceed_the_budget() {
    let model = Linear::new();
    let x = batch(32);
    let g = goal(labels_of(&model, &x), None);
    let eps_linf = 4.0 / 255.0;
    type AttackRun<'a> = Box<dyn Fn() -> Tensor<Inner, 4> + 'a>;
    let attacks: Vec<(AttackRun, f64, Norm)> = vec![
        (
            Box::new(|| {
                run(
                    &Fgsm {
                        eps: eps_linf,
                        norm: Norm::Linf,
                        eot: 1,
                    },
                    &model,
                    x.clone(),
                    &g,
                    1,
                )
                .unwrap()
                .adversarial
            }),
            eps_linf,
            Norm::Linf,
        ),
        (
            Box::new(|| {
                run(
                    &Pgd {
                        eps: eps_linf,
                        ..Pgd::linf_default()
                    },
                    &model,
                    x.clone(),
                    &g,
                    2,
                )
                .unwrap()
                .adversarial
            }),
            eps_linf,
            Norm::Linf,
        ),
        (
            Box::new(|| {
                run(
                    &Pgd {
                        eps: 0.3,
                        alpha: 0.1,
                        ..Pgd::l2_default()
                    },
                    &model,
                    x.clone(),
                    &g,
                    2,
                )
                .unwrap()
                .adversarial
            }),
            0.3,
            Norm::L2,
        ),
        (
            Box::new(|| {
                let mut a = Apgd::new(eps_linf, Norm::Linf);
                a.steps = 20;
                run(&a, &model, x.clone(), &g, 1).unwrap().adversarial
            }),
            eps_linf,
            Norm::Linf,
        ),
        (
            Box::new(|| {
                let mut a = Apgd::new(0.3, Norm::L2);
                a.steps = 20;
                run(&a, &model, x.clone(), &g, 1).unwrap().adversarial
            }),
            0.3,
            Norm::L2,
        ),
    ];
    for (attack, eps, norm) in attacks {
        let adv = attack();
        check_budget(&adv, &x, eps, norm).unwrap();
        let (linf, l2) = perturbation_norms(&adv, &x);
        let worst = match norm {
            Norm::Linf => linf,
            Norm::L2 => l2,
        }
        .into_iter()
        .fold(0.0f32, f32::max);
        assert!(worst as f64 <= eps + 1e-6, "{norm}: {worst} > {eps}");
        let pixels = values(adv);
        assert!(pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn the_budget_check_catches_violations() {
    let x = batch(2);
    let outside = x.clone() + Tensor::full([2, 3, 4, 4], 0.1, &Default::default());
    assert!(check_budget(&outside.clone().clamp(0.0, 1.0), &x, 0.05, Norm::Linf).is_err());
    let nan = Tensor::<Inner, 4>::from_data(
        TensorData::new(vec![f32::NAN; 96], [2, 3, 4, 4]),
        &Default::default(),
    );
    assert!(check_budget(&nan, &x, 1.0, Norm::Linf)
        .unwrap_err()
        .0
        .contains("NaN"));
}

#[test]
fn targeted_attacks_reach_their_target() {
    let model = Linear::new();
    let x = batch(20);
    let labels = labels_of(&model, &x);
    let targets: Vec<usize> = labels.iter().map(|l| (l + 1) % 5).collect();
    let g = goal(labels, Some(targets.clone()));
    let pgd = Pgd {
        eps: 0.5,
        alpha: 0.05,
        steps: 40,
        ..Pgd::linf_default()
    };
    let out = run(&pgd, &model, x, &g, 2).unwrap();
    let reached = out
        .predictions
        .iter()
        .zip(&targets)
        .filter(|(p, t)| p == t)
        .count();
    assert_eq!(reached, 20, "every target reached with a large budget");
    assert!(out.success.iter().all(|s| *s));
}

#[test]
fn pgd_is_at_least_as_strong_as_fgsm_and_more_budget_never_helps_the_model() {
    let model = Linear::new();
    let x = batch(64);
    let g = goal(labels_of(&model, &x), None);
    let correct = |preds: &[usize]| preds.iter().zip(&g.labels).filter(|(p, l)| p == l).count();
    let mut previous = usize::MAX;
    for eps in [0.0, 0.01, 0.02, 0.04, 0.08, 0.3] {
        let fgsm = run(
            &Fgsm {
                eps,
                norm: Norm::Linf,
                eot: 1,
            },
            &model,
            x.clone(),
            &g,
            1,
        )
        .unwrap();
        let pgd = Pgd {
            eps,
            alpha: eps / 4.0,
            steps: 20,
            ..Pgd::linf_default()
        };
        let pgd = run(&pgd, &model, x.clone(), &g, 3).unwrap();
        assert!(
            correct(&fgsm.predictions) >= correct(&pgd.predictions),
            "ε = {eps}"
        );
        assert!(
            correct(&pgd.predictions) <= previous,
            "robust accuracy rose at ε = {eps}"
        );
        previous = correct(&pgd.predictions);
    }
    assert_eq!(previous, 0, "a linear model falls at ε = 0.3");
}

#[test]
fn same_seeds_give_identical_adversarial_images() {
    let model = Linear::new();
    let x = batch(8);
    let g = goal(labels_of(&model, &x), None);
    let pgd = Pgd {
        eps: 0.02,
        ..Pgd::linf_default()
    };
    let a = values(run(&pgd, &model, x.clone(), &g, 2).unwrap().adversarial);
    let b = values(run(&pgd, &model, x.clone(), &g, 2).unwrap().adversarial);
    assert_eq!(a, b);
    // Random starts differ with the seed (one step, before PGD reaches the same corner).
    let one_step = Pgd { steps: 1, ..pgd };
    let start = |seeds: Vec<u64>| {
        let g = Goal { seeds, ..g.clone() };
        values(<Pgd as Attack<B>>::perturb(&one_step, &model, x.clone(), &g, 0).images)
    };
    assert!(start((0..8).collect()) == start((0..8).collect()));
    assert!(
        start((0..8).collect()) != start((100..108).collect()),
        "another seed, another start"
    );
}

#[test]
fn outcomes_score_the_images_they_return() {
    let model = Linear::new();
    let x = batch(12);
    let predicted = labels_of(&model, &x);
    // Labels that the model already gets wrong for a third of the images, so that the driver
    // attacks a sub-batch; and the model's own predictions, so that it attacks every image.
    let shifted: Vec<usize> = (0..12)
        .map(|i| {
            if i % 3 == 0 {
                (predicted[i] + 1) % 5
            } else {
                predicted[i]
            }
        })
        .collect();
    for (labels, restarts) in [(predicted.clone(), 1), (predicted, 3), (shifted, 2)] {
        let g = goal(labels, None);
        let pgd = Pgd {
            eps: 0.03,
            steps: 3,
            ..Pgd::linf_default()
        };
        let out = run(&pgd, &model, x.clone(), &g, restarts).unwrap();
        let logits = model
            .logits(Tensor::from_inner(out.adversarial.clone()))
            .inner();
        assert_eq!(out.predictions, attacks::argmax(logits.clone()));
        let loss = attacks::cross_entropy(logits, &g.labels)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(out.loss, loss);
        let success: Vec<bool> = (0..12).map(|i| out.predictions[i] != g.labels[i]).collect();
        assert_eq!(out.success, success);
        assert!(out.success.iter().any(|&s| s) && out.success.iter().any(|&s| !s));

        // Given the clean predictions, the driver returns exactly the same outcome.
        let clean = labels_of(&model, &x);
        let given = run_from_clean(&pgd, &model, x.clone(), clean, &g, restarts).unwrap();
        assert_eq!(values(given.adversarial), values(out.adversarial));
        assert_eq!(given.clean_predictions, out.clean_predictions);
        assert_eq!(given.predictions, out.predictions);
        assert_eq!(given.loss, out.loss);
        assert_eq!(given.restarts_used, out.restarts_used);
    }
}
