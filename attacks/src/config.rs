//! Any attack of the crate as one serialisable value, so that a run can record exactly the
//! settings of the struct that ran (defaults included) and an evaluator can hold attacks as data.

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::{Apgd, Attack, Classifier, Fgsm, Goal, Images, Norm, Perturbed, Pgd};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "lowercase")]
pub enum AttackConfig {
    Fgsm(Fgsm),
    Pgd(Pgd),
    Apgd(Apgd),
}

impl AttackConfig {
    /// The attack's short name: fgsm, pgd or apgd.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fgsm(_) => "fgsm",
            Self::Pgd(_) => "pgd",
            Self::Apgd(_) => "apgd",
        }
    }

    /// The budget on the [0,1] scale.
    pub fn eps(&self) -> f64 {
        match self {
            Self::Fgsm(a) => a.eps,
            Self::Pgd(a) => a.eps,
            Self::Apgd(a) => a.eps,
        }
    }

    pub fn norm(&self) -> Norm {
        match self {
            Self::Fgsm(a) => a.norm,
            Self::Pgd(a) => a.norm,
            Self::Apgd(a) => a.norm,
        }
    }

    /// Gradient steps per attempt.
    pub fn steps(&self) -> usize {
        match self {
            Self::Fgsm(_) => 1,
            Self::Pgd(a) => a.steps,
            Self::Apgd(a) => a.steps,
        }
    }

    /// The step size, for attacks that have a fixed one (PGD).
    pub fn alpha(&self) -> Option<f64> {
        match self {
            Self::Pgd(a) => Some(a.alpha),
            _ => None,
        }
    }

    /// Forward + backward passes per image and attempt, for planning and progress.
    pub fn gradient_passes(&self) -> usize {
        let eot = match self {
            Self::Fgsm(a) => a.eot,
            Self::Pgd(a) => a.eot,
            Self::Apgd(a) => a.eot,
        };
        self.steps() * eot.max(1)
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
        }
    }

    fn norm(&self) -> Norm {
        AttackConfig::norm(self)
    }

    fn eps(&self) -> f64 {
        AttackConfig::eps(self)
    }
}
