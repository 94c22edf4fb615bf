//! APGD-T (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks", ICML 2020): APGD on the targeted DLR loss, run once per
//! target class on the samples still correctly classified.
//!
//! The targets are the classes with the 2nd, 3rd, … highest clean logit, re-read from the clean
//! images of the samples still to break, `target_classes` of them (9 on 10 classes). Success
//! is misclassification, as for every untargeted attack: the target only steers the loss.
//! Defaults: 100 iterations per target, the APGD step-size schedule of [`crate::Apgd`].

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::loss::{ranked, Objective};
use crate::samples::{host_logits, select, values as to_vec};
use crate::{Apgd, Attack, Classifier, Goal, Images, Norm, Perturbed, Rows};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApgdTargeted {
    pub eps: f64,
    pub steps: usize,
    pub norm: Norm,
    pub momentum: f64,
    pub rho: f64,
    pub eot: usize,
    /// How many of the highest-scoring other classes are tried as targets.
    pub target_classes: usize,
}

impl ApgdTargeted {
    pub fn new(eps: f64, norm: Norm) -> Self {
        let base = Apgd::new(eps, norm);
        Self {
            eps,
            steps: base.steps,
            norm,
            momentum: base.momentum,
            rho: base.rho,
            eot: base.eot,
            target_classes: 9,
        }
    }

    fn apgd(&self) -> Apgd {
        Apgd {
            eps: self.eps,
            steps: self.steps,
            norm: self.norm,
            momentum: self.momentum,
            rho: self.rho,
            eot: self.eot,
            loss: crate::Loss::Dlr,
        }
    }
}

impl<B: AutodiffBackend> Attack<B> for ApgdTargeted {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        let n = goal.len();
        let device = x.device();
        let apgd = self.apgd();
        let clean = host_logits(model, &x);
        let classes = clean.len() / n.max(1);
        let mut images = x.clone();
        let mut fooled = vec![false; n];
        let mut zero_gradient = vec![false; n];
        for rank in 1..=self.target_classes.min(classes.saturating_sub(1)) {
            let active: Vec<usize> = (0..n).filter(|&i| !fooled[i]).collect();
            if active.is_empty() {
                break;
            }
            let targets: Vec<usize> = active
                .iter()
                .map(|&i| ranked(&clean[i * classes..(i + 1) * classes])[rank])
                .collect();
            let sub_goal = Goal {
                targets: None,
                ..goal.subset(&active)
            };
            let sub_model = Rows {
                model,
                rows: &active,
            };
            // Each target class draws its own random start.
            let stream = restart * 64 + rank;
            let (run, hit) = apgd.single_run(
                &sub_model,
                select(&x, &active),
                &sub_goal,
                stream,
                Objective::TargetedDlr(&targets),
            );
            if rank == 1 {
                for (&i, &z) in active.iter().zip(&run.zero_gradient) {
                    zero_gradient[i] = z;
                }
            }
            let adv = to_vec(run.images);
            let per = adv.len() / active.len();
            let mut pixels = to_vec(images);
            for (k, &i) in active.iter().enumerate() {
                if hit[k] {
                    pixels[i * per..(i + 1) * per].copy_from_slice(&adv[k * per..(k + 1) * per]);
                    fooled[i] = true;
                }
            }
            images = Tensor::from_data(TensorData::new(pixels, x.dims()), &device);
        }
        Perturbed::new(images, zero_gradient)
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}
