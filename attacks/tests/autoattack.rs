//! The AutoAttack members and the ensemble on a small linear classifier: budgets, the query
//! contract of Square, gradient-free operation, DLR against a saturated model, and the ensemble
//! never weaker than a member.

use attacks::{
    perturbation_norms, run, Apgd, ApgdTargeted, AttackConfig, AutoAttack, Classifier, Fab, Goal,
    Norm, Square, Version,
};
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;

mod common;
use common::{images, normal, seeded};

type B = Autodiff<Flex>;
type Inner = Flex;

/// logits = scale · (W · flatten(x) + b) over 3×6×6 images and 10 classes.
struct Linear {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    scale: f64,
}

const FEATURES: usize = 3 * 6 * 6;

impl Linear {
    fn new(scale: f64, seed: u64) -> Self {
        let mut rng = seeded(seed);
        Self {
            weight: normal([FEATURES, 10], 1.0, &mut rng),
            bias: normal([10], 0.1, &mut rng),
            scale,
        }
    }
}

impl Classifier<B> for Linear {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let n = images.dims()[0];
        (images.reshape([n, FEATURES]).matmul(self.weight.clone())
            + self.bias.clone().unsqueeze_dim(0))
        .mul_scalar(self.scale)
    }
}

/// The same model seen through its outputs only: the logits are copied off the graph, so no
/// gradient can reach the input.
struct ScoresOnly<'a>(&'a Linear);

impl Classifier<B> for ScoresOnly<'_> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let values = self.0.logits(images).inner().into_data();
        Tensor::from_inner(Tensor::from_data(values, &Default::default()))
    }
}

fn batch(n: usize, seed: u64) -> Tensor<Inner, 4> {
    images([n, 3, 6, 6], seed)
}

fn goal_of<M: Classifier<B>>(model: &M, x: &Tensor<Inner, 4>) -> Goal {
    let labels = attacks::argmax(model.logits(Tensor::from_inner(x.clone())).inner());
    let seeds = (0..labels.len() as u64).map(|s| s * 7 + 1).collect();
    Goal {
        labels,
        targets: None,
        seeds,
    }
}

fn robust(success: &[bool]) -> usize {
    success.iter().filter(|s| !**s).count()
}

fn members(eps: f64, norm: Norm) -> Vec<AttackConfig> {
    vec![
        AttackConfig::Apgd(Apgd {
            steps: 20,
            ..Apgd::new(eps, norm)
        }),
        AttackConfig::Apgd(Apgd {
            steps: 20,
            ..Apgd::dlr(eps, norm)
        }),
        AttackConfig::ApgdT(ApgdTargeted {
            steps: 20,
            target_classes: 3,
            ..ApgdTargeted::new(eps, norm)
        }),
        AttackConfig::Fab(Fab {
            steps: 20,
            target_classes: 3,
            ..Fab::targeted(eps, norm)
        }),
        AttackConfig::Fab(Fab {
            steps: 10,
            ..Fab::untargeted(eps, norm)
        }),
        AttackConfig::Square(Square {
            queries: 200,
            ..Square::new(eps, norm)
        }),
    ]
}

#[test]
fn every_member_respects_its_budget_and_the_pixel_range() {
    let model = Linear::new(1.0, 1);
    let x = batch(24, 2);
    let goal = goal_of(&model, &x);
    for (norm, eps) in [(Norm::Linf, 0.03), (Norm::L2, 0.3)] {
        for attack in members(eps, norm) {
            // `run` checks ‖δ‖ ≤ ε, [0, 1] and NaN on the batch; check again from outside.
            let out = run(&attack, &model, x.clone(), &goal, 2)
                .unwrap_or_else(|e| panic!("{}: {e}", attack.display_name()));
            let (linf, l2) = perturbation_norms(&out.adversarial, &x);
            let worst = match norm {
                Norm::Linf => linf,
                Norm::L2 => l2,
            }
            .into_iter()
            .fold(0f32, f32::max);
            assert!(
                worst as f64 <= eps + 1e-6,
                "{}: {worst} > {eps}",
                attack.display_name()
            );
            let pixels = out.adversarial.into_data().to_vec::<f32>().unwrap();
            assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
            assert!(
                robust(&out.success) < goal.len(),
                "{} ({norm}) broke nothing at ε = {eps}",
                attack.display_name()
            );
        }
    }
}

#[test]
fn square_needs_only_scores_and_counts_its_queries() {
    let model = Linear::new(1.0, 3);
    let x = batch(16, 4);
    let goal = goal_of(&model, &x);
    for norm in [Norm::Linf, Norm::L2] {
        let eps = if norm == Norm::Linf { 0.04 } else { 0.4 };
        let square = Square {
            queries: 150,
            ..Square::new(eps, norm)
        };
        let plain = run(&square, &model, x.clone(), &goal, 1).unwrap();
        let blind = run(&square, &ScoresOnly(&model), x.clone(), &goal, 1).unwrap();
        assert_eq!(
            plain.adversarial.into_data().to_vec::<f32>().unwrap(),
            blind.adversarial.into_data().to_vec::<f32>().unwrap(),
            "Square must see nothing but the logits"
        );
        let queries = blind.queries.expect("Square counts its queries");
        for (i, &q) in queries.iter().enumerate() {
            assert!(
                q <= square.queries,
                "sample {i}: {q} queries > {}",
                square.queries
            );
            if !blind.success[i] {
                assert_eq!(q, square.queries, "a robust sample spends the whole budget");
            }
        }
        assert!(
            queries.iter().any(|&q| q < square.queries),
            "some sample stops early"
        );
    }
}

#[test]
fn dlr_breaks_a_saturated_model_that_cross_entropy_cannot() {
    // Logits × 10⁴: the softmax saturates in f32, the cross-entropy gradient of confidently
    // classified points vanishes, while DLR is invariant to the scale.
    let model = Linear::new(1e4, 5);
    let x = batch(32, 6);
    let goal = goal_of(&model, &x);
    let eps = 0.03;
    let ce = run(
        &Apgd {
            steps: 30,
            ..Apgd::new(eps, Norm::Linf)
        },
        &model,
        x.clone(),
        &goal,
        1,
    )
    .unwrap();
    let targeted = ApgdTargeted {
        steps: 30,
        ..ApgdTargeted::new(eps, Norm::Linf)
    };
    let t = run(&targeted, &model, x.clone(), &goal, 1).unwrap();
    assert!(
        robust(&t.success) < robust(&ce.success),
        "APGD-T robust {} vs APGD-CE {}",
        robust(&t.success),
        robust(&ce.success)
    );
}

#[test]
#[allow(clippy::needless_range_loop)]
fn the_ensemble_breaks_every_sample_any_member_breaks() {
    let model = Linear::new(1.0, 7);
    let x = batch(24, 8);
    let goal = goal_of(&model, &x);
    let eps = 0.012;
    let names = ["apgd-ce", "apgd-t", "fab-t", "square"];
    let mut ensemble = AutoAttack::custom(&names, eps, Norm::Linf).unwrap();
    shorten(&mut ensemble);
    let together = run(
        &AttackConfig::AutoAttack(ensemble.clone()),
        &model,
        x.clone(),
        &goal,
        1,
    )
    .unwrap();
    let broken_by = together
        .broken_by
        .clone()
        .expect("the ensemble says who broke what");
    for (position, name) in names.iter().enumerate() {
        let mut alone = AutoAttack::custom(&[name], eps, Norm::Linf).unwrap();
        shorten(&mut alone);
        let single = run(
            &AttackConfig::AutoAttack(alone),
            &model,
            x.clone(),
            &goal,
            1,
        )
        .unwrap();
        for i in 0..goal.len() {
            if single.success[i] {
                assert!(
                    together.success[i],
                    "{name} alone breaks sample {i}, the ensemble does not"
                );
                assert!(broken_by[i].is_some_and(|m| m <= position));
            }
        }
    }
    for (member, &success) in broken_by.iter().zip(&together.success) {
        assert_eq!(member.is_some(), success);
    }
}

/// Fewer iterations and queries, for test time.
fn shorten(ensemble: &mut AutoAttack) {
    for member in &mut ensemble.members {
        match &mut member.attack {
            AttackConfig::Apgd(a) => a.steps = 20,
            AttackConfig::ApgdT(a) => {
                a.steps = 20;
                a.target_classes = 3
            }
            AttackConfig::Fab(a) => {
                a.steps = 20;
                a.target_classes = 3
            }
            AttackConfig::Square(a) => a.queries = 300,
            _ => {}
        }
    }
}

#[test]
fn versions_hold_the_original_members() {
    let names = |v| {
        AutoAttack::new(v, 8.0 / 255.0, Norm::Linf)
            .unwrap()
            .member_names()
    };
    assert_eq!(
        names(Version::Standard),
        ["apgd-ce", "apgd-t", "fab-t", "square"]
    );
    assert_eq!(
        names(Version::Plus),
        ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    );
    assert_eq!(names(Version::Rand), ["apgd-ce", "apgd-dlr"]);
    let standard = AutoAttack::new(Version::Standard, 8.0 / 255.0, Norm::Linf).unwrap();
    match &standard.members[3].attack {
        AttackConfig::Square(s) => assert_eq!((s.queries, s.p_init), (5000, 0.8)),
        other => panic!("{other:?}"),
    }
    assert!(AutoAttack::new(Version::Custom, 0.1, Norm::L2).is_err());
    assert!(AutoAttack::custom(&["apgd-ce", "deepfool"], 0.1, Norm::L2)
        .unwrap_err()
        .contains("unknown AutoAttack member 'deepfool'"));
}

#[test]
fn too_few_classes_are_refused_by_name() {
    let dlr = AttackConfig::Apgd(Apgd::dlr(0.1, Norm::Linf));
    assert!(dlr.check_classes(3).is_ok());
    assert!(dlr
        .check_classes(2)
        .unwrap_err()
        .contains("at least 3 classes"));
    let t = AttackConfig::ApgdT(ApgdTargeted::new(0.1, Norm::Linf));
    assert!(t.check_classes(10).is_ok());
    assert!(t
        .check_classes(3)
        .unwrap_err()
        .contains("at least 4 classes"));
    assert!(t.check_classes(5).unwrap_err().contains("9 target classes"));
    let fab = AttackConfig::Fab(Fab::targeted(0.1, Norm::Linf));
    assert!(fab
        .check_classes(5)
        .unwrap_err()
        .contains("fab-t tries 9 target classes"));
    let standard =
        AttackConfig::AutoAttack(AutoAttack::new(Version::Standard, 0.1, Norm::L2).unwrap());
    assert!(standard.check_classes(2).is_err());
    assert!(standard.check_classes(10).is_ok());
}
