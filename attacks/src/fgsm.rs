//! FGSM (Goodfellow et al. 2015) and its ℓ2 version FGM (Miyato et al. 2016).
//!
//! One step of size ε from the clean image along sign(∇) (L∞) or ∇/‖∇‖₂ (L2), then clip to [0,1].
//! No random start. Deterministic.

use burn::tensor::backend::AutodiffBackend;

use crate::budget::{per_sample, project, row_norms};
use crate::{Attack, Classifier, Goal, Gradient, Images, Norm, Perturbed};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fgsm {
    pub eps: f64,
    pub norm: Norm,
    /// Forward passes averaged per gradient (EOT); 1 for deterministic models.
    pub eot: usize,
}

impl Fgsm {
    pub fn new(eps: f64, norm: Norm) -> Self {
        Self { eps, norm, eot: 1 }
    }
}

impl<B: AutodiffBackend> Attack<B> for Fgsm {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        _restart: usize,
    ) -> Perturbed<B> {
        let gradient = Gradient::<B>::at(model, &x, goal, self.eot);
        let step = ascent_direction(gradient.grad, self.norm).mul_scalar(self.eps);
        Perturbed::new(
            project(x.clone() + step, &x, self.eps, self.norm),
            gradient.zero_gradient,
        )
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}

/// sign(g) for L∞, g/‖g‖₂ per sample for L2.
pub(crate) fn ascent_direction<B: burn::tensor::backend::Backend>(
    grad: burn::tensor::Tensor<B, 4>,
    norm: Norm,
) -> burn::tensor::Tensor<B, 4> {
    match norm {
        Norm::Linf => grad.sign(),
        Norm::L2 => {
            let inverse: Vec<f32> = row_norms(&grad).iter().map(|n| 1.0 / (n + 1e-12)).collect();
            let device = grad.device();
            grad * per_sample(inverse, &device)
        }
    }
}
