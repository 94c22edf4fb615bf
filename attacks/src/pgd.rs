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

#[derive(Clone, Debug, PartialEq)]
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
        let mut zero_gradients = 0;
        for step_index in 0..self.steps {
            let gradient = Gradient::<B>::at(model, &adv, goal, self.eot);
            if step_index == 0 {
                zero_gradients = gradient.zero_gradients;
            }
            let step = ascent_direction(gradient.grad, self.norm).mul_scalar(self.alpha);
            adv = project(adv + step, &x, self.eps, self.norm);
        }
        Perturbed {
            images: adv,
            zero_gradients,
        }
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
