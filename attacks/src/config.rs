//! Any attack of the crate as one serialisable value, so that a run can record exactly the
//! settings of the struct that ran (defaults included) and an evaluator can hold attacks as data.

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::{
    Apgd, ApgdTargeted, Attack, AutoAttack, Classifier, Fab, Fgsm, Goal, Images, Loss, Norm,
    Perturbed, Pgd, Square,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "lowercase")]
pub enum AttackConfig {
    Fgsm(Fgsm),
    Pgd(Pgd),
    Apgd(Apgd),
    #[serde(rename = "apgd-t")]
    ApgdT(ApgdTargeted),
    Fab(Fab),
    Square(Square),
    #[serde(rename = "autoattack")]
    AutoAttack(AutoAttack),
}

impl AttackConfig {
    /// The attack's short name: fgsm, pgd, apgd, apgd-t, fab, square or autoattack.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fgsm(_) => "fgsm",
            Self::Pgd(_) => "pgd",
            Self::Apgd(_) => "apgd",
            Self::ApgdT(_) => "apgd-t",
            Self::Fab(_) => "fab",
            Self::Square(_) => "square",
            Self::AutoAttack(_) => "autoattack",
        }
    }

    /// The name AutoAttack users know, with the loss or targeting: apgd-ce, apgd-dlr, fab-t, …
    pub fn display_name(&self) -> String {
        match self {
            Self::Apgd(a) => match a.loss {
                Loss::Ce => "apgd-ce".into(),
                Loss::Dlr => "apgd-dlr".into(),
            },
            Self::Fab(f) if f.targeted => "fab-t".into(),
            other => other.name().into(),
        }
    }

    /// The budget on the [0,1] scale.
    pub fn eps(&self) -> f64 {
        match self {
            Self::Fgsm(a) => a.eps,
            Self::Pgd(a) => a.eps,
            Self::Apgd(a) => a.eps,
            Self::ApgdT(a) => a.eps,
            Self::Fab(a) => a.eps,
            Self::Square(a) => a.eps,
            Self::AutoAttack(a) => a.eps,
        }
    }

    pub fn norm(&self) -> Norm {
        match self {
            Self::Fgsm(a) => a.norm,
            Self::Pgd(a) => a.norm,
            Self::Apgd(a) => a.norm,
            Self::ApgdT(a) => a.norm,
            Self::Fab(a) => a.norm,
            Self::Square(a) => a.norm,
            Self::AutoAttack(a) => a.norm,
        }
    }

    /// Gradient steps (or queries, for Square) per attempt.
    pub fn steps(&self) -> usize {
        match self {
            Self::Fgsm(_) => 1,
            Self::Pgd(a) => a.steps,
            Self::Apgd(a) => a.steps,
            Self::ApgdT(a) => a.steps,
            Self::Fab(a) => a.steps,
            Self::Square(a) => a.queries,
            Self::AutoAttack(a) => a.members.iter().map(|m| m.attack.steps()).sum(),
        }
    }

    /// The step size, for attacks that have a fixed one (PGD).
    pub fn alpha(&self) -> Option<f64> {
        match self {
            Self::Pgd(a) => Some(a.alpha),
            _ => None,
        }
    }

    /// Forward + backward passes per image and attempt at most, for planning and progress
    /// (a Square query counts as a third of one).
    pub fn gradient_passes(&self) -> usize {
        match self {
            Self::Fgsm(a) => a.eot.max(1),
            Self::Pgd(a) => a.steps * a.eot.max(1),
            Self::Apgd(a) => a.steps * a.eot.max(1),
            Self::ApgdT(a) => a.steps * a.eot.max(1) * a.target_classes.max(1),
            Self::Fab(a) if a.targeted => a.steps * 2 * a.target_classes.max(1),
            Self::Fab(a) => a.steps * 11,
            Self::Square(a) => a.queries / 3,
            Self::AutoAttack(a) => a
                .members
                .iter()
                .map(|m| m.attack.gradient_passes() * m.restarts.max(1))
                .sum(),
        }
    }

    /// Whether the attack can run on a model with `classes` outputs; the reason when not.
    pub fn check_classes(&self, classes: usize) -> Result<(), String> {
        let name = self.display_name();
        let need = match self {
            Self::Apgd(a) => a.loss.min_classes(),
            Self::ApgdT(a) => (a.target_classes + 1).max(4),
            Self::Fab(a) if a.targeted => a.target_classes + 1,
            Self::AutoAttack(a) => {
                return a
                    .members
                    .iter()
                    .try_for_each(|m| m.attack.check_classes(classes));
            }
            _ => 2,
        };
        if classes >= need {
            return Ok(());
        }
        Err(match self {
            Self::ApgdT(a) if classes >= 4 => format!(
                "{name} tries {} target classes, but a model with {classes} classes has only {} \
                 other classes",
                a.target_classes,
                classes - 1
            ),
            Self::Fab(a) => format!(
                "{name} tries {} target classes, but a model with {classes} classes has only {} \
                 other classes",
                a.target_classes,
                classes.saturating_sub(1)
            ),
            Self::ApgdT(_) => format!(
                "{name} uses the targeted DLR loss, which needs at least 4 classes (the model has \
                 {classes})"
            ),
            _ => format!(
                "{name} uses the DLR loss, which needs at least 3 classes (the model has {classes})"
            ),
        })
    }

    /// The members of an ensemble, or the attack itself.
    pub fn members(&self) -> Vec<String> {
        match self {
            Self::AutoAttack(a) => a.member_names(),
            other => vec![other.display_name()],
        }
    }
}

impl<B: AutodiffBackend> Attack<B> for AttackConfig {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        images: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        match self {
            Self::Fgsm(a) => a.perturb(model, images, goal, restart),
            Self::Pgd(a) => a.perturb(model, images, goal, restart),
            Self::Apgd(a) => a.perturb(model, images, goal, restart),
            Self::ApgdT(a) => a.perturb(model, images, goal, restart),
            Self::Fab(a) => a.perturb(model, images, goal, restart),
            Self::Square(a) => a.perturb(model, images, goal, restart),
            Self::AutoAttack(a) => a.perturb(model, images, goal, restart),
        }
    }

    fn norm(&self) -> Norm {
        AttackConfig::norm(self)
    }

    fn eps(&self) -> f64 {
        AttackConfig::eps(self)
    }
}
