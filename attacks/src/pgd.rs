//! Projected gradient descent (Madry et al. 2018), L∞ and L2.
//!
//! From a uniform random start in the ε-ball (optional), `steps` ascent steps of size α along
//! sign(∇) (L∞) or ∇/‖∇‖₂ (L2), each followed by projection onto the ε-ball and [0,1].
//! Defaults as users know them: L∞ ε = 8/255, α = 2/255, 10 steps, random start.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::budget::{per_sample, project, row_norms};
use crate::fgsm::ascent_direction;
use crate::noise::{normal_with_radius, uniform_per_sample};
use crate::{Attack, Classifier, Goal, Gradient, Images, Norm, Perturbed};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pgd {
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    pub norm: Norm,
    pub random_start: bool,
    /// Forward passes averaged per gradient (EOT); 1 for deterministic models.
    pub eot: usize,
}

impl Pgd {
    /// The usual PGD at `eps`: 10 steps from a random start, α = [`Pgd::default_alpha`].
    pub fn new(eps: f64, norm: Norm) -> Self {
        Self {
            eps,
            alpha: Self::default_alpha(eps, norm),
            steps: 10,
            norm,
            random_start: true,
            eot: 1,
        }
    }

    /// The step size users expect when they give none: 2/255 for L∞ (Madry et al.'s CIFAR
    /// setting, whatever ε), ε/4 for L2.
    pub fn default_alpha(eps: f64, norm: Norm) -> f64 {
        match norm {
            Norm::Linf => 2.0 / 255.0,
            Norm::L2 => eps / 4.0,
        }
    }

    /// ε = 8/255, α = 2/255, 10 steps, random start.
    pub fn linf_default() -> Self {
        Self {
            eps: 8.0 / 255.0,
            alpha: 2.0 / 255.0,
            steps: 10,
            norm: Norm::Linf,
            random_start: true,
            eot: 1,
        }
    }

    /// ε = 0.5, α = ε/4, 10 steps, random start.
    pub fn l2_default() -> Self {
        Self {
            eps: 0.5,
            alpha: 0.125,
            steps: 10,
            norm: Norm::L2,
            random_start: true,
            eot: 1,
        }
    }
}

impl<B: AutodiffBackend> Attack<B> for Pgd {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        let mut adv = if self.random_start {
            random_start::<B>(&x, goal, restart, self.eps, self.norm)
        } else {
            x.clone()
        };
        let mut zero_gradient = vec![false; goal.len()];
        for step_index in 0..self.steps {
            let gradient = Gradient::<B>::at(model, &adv, goal, self.eot);
            if step_index == 0 {
                zero_gradient = gradient.zero_gradient;
            }
            let step = ascent_direction(gradient.grad, self.norm).mul_scalar(self.alpha);
            adv = project(adv + step, &x, self.eps, self.norm);
        }
        Perturbed::new(adv, zero_gradient)
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}

/// A uniformly random point of the ε-ball around `x` (clipped to [0,1]): uniform per pixel for
/// L∞; a Gaussian direction with a radius uniform in [0, ε) for L2.
pub(crate) fn random_start<B: AutodiffBackend>(
    x: &Images<B>,
    goal: &Goal,
    restart: usize,
    eps: f64,
    norm: Norm,
) -> Images<B> {
    let dims = x.dims();
    let per_image = dims[1] * dims[2] * dims[3];
    let device = x.device();
    let delta = match norm {
        Norm::Linf => {
            let values = uniform_per_sample(&goal.seeds, restart, per_image);
            Tensor::from_data(TensorData::new(values, dims), &device).mul_scalar(eps)
        }
        Norm::L2 => {
            let (values, radii) = normal_with_radius(&goal.seeds, restart, per_image);
            let direction: Tensor<_, 4> = Tensor::from_data(TensorData::new(values, dims), &device);
            let norms = row_norms(&direction);
            let scale: Vec<f32> = norms
                .iter()
                .zip(&radii)
                .map(|(n, r)| r * eps as f32 / (n + 1e-12))
                .collect();
            direction * per_sample(scale, &device)
        }
    };
    (x.clone() + delta).clamp(0.0, 1.0)
}
