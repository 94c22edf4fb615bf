//! FAB (Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
//! attack", ICML 2020), untargeted and targeted (FAB-T), L∞ and L2.
//!
//! FAB looks for the smallest perturbation that changes the decision. At every step it
//! linearises the decision boundary between the label and one other class (FAB-T: the target;
//! FAB: the class whose linearised boundary is closest), projects both the current iterate and
//! the clean image onto that hyperplane inside the [0,1] box ([`crate::onto_hyperplane`]), and
//! moves to a convex combination of the two projections, extrapolated by η = 1.05 and weighted
//! towards the clean image by at most α_max = 0.1. When the iterate is adversarial it is kept if
//! it is the closest so far, and pulled back towards the clean image by β = 0.9.
//!
//! Contract: a sample counts as broken only if the closest adversarial point lies inside the
//! ε-ball; the other samples return their clean image. The first restart starts at the clean
//! image (deterministic); later restarts start at a random point at half the ε radius. FAB-T
//! runs once per target class (the 2nd … (target_classes+1)-th highest clean logits) on the
//! samples not yet broken. Untargeted FAB needs the gradient of every logit: one backward pass
//! per class and step. Defaults: 100 iterations, 9 target classes.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::budget::TOLERANCE;
use crate::loss::ranked;
use crate::noise::{normal_with_radius, uniform_per_sample};
use crate::projection::onto_hyperplane;
use crate::samples::{argmax_row, host_logits, values as to_vec};
use crate::{Attack, Classifier, Goal, Images, Norm, Perturbed, Rows};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fab {
    pub eps: f64,
    pub steps: usize,
    pub norm: Norm,
    /// FAB-T (one run per target class) rather than FAB.
    pub targeted: bool,
    pub target_classes: usize,
    /// Largest weight of the clean image's projection in a step.
    pub alpha_max: f64,
    /// Extrapolation of the projection step.
    pub eta: f64,
    /// Pull-back towards the clean image after an adversarial iterate.
    pub beta: f64,
}

impl Fab {
    /// FAB-T at `eps`, as in AutoAttack's standard version.
    pub fn targeted(eps: f64, norm: Norm) -> Self {
        Self {
            eps,
            steps: 100,
            norm,
            targeted: true,
            target_classes: 9,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
        }
    }

    /// Untargeted FAB at `eps`.
    pub fn untargeted(eps: f64, norm: Norm) -> Self {
        Self {
            targeted: false,
            ..Self::targeted(eps, norm)
        }
    }

    fn distance(&self, delta: &[f32]) -> f64 {
        match self.norm {
            Norm::Linf => delta.iter().fold(0f64, |m, v| m.max(v.abs() as f64)),
            Norm::L2 => delta
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
        }
    }

    /// ‖g‖ in the dual norm, the denominator of the distance to a linearised boundary.
    fn dual(&self, g: &[f32]) -> f64 {
        match self.norm {
            Norm::Linf => g.iter().map(|v| v.abs() as f64).sum(),
            Norm::L2 => g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt(),
        }
    }
}

/// Which decision boundary a step linearises.
#[derive(Clone, Copy)]
enum Against<'a> {
    /// The boundary with each sample's target class (FAB-T).
    Targets(&'a [usize]),
    /// The closest boundary over the model's `classes` outputs (FAB).
    Closest { classes: usize },
}

/// Per sample on the host: the boundary to project onto (w·z = b).
struct Boundary {
    w: Vec<f32>,
    b: f64,
}

impl<B: AutodiffBackend> Attack<B> for Fab {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        let n = goal.len();
        let dims = x.dims();
        let per = dims[1] * dims[2] * dims[3];
        let clean_pixels = to_vec(x.clone());
        let clean = host_logits(model, &x);
        let classes = clean.len() / n.max(1);
        let mut result = clean_pixels.clone();
        let mut broken = vec![false; n];
        let mut zero_gradient = vec![false; n];
        let rounds: Vec<Option<usize>> = if self.targeted {
            (1..=self.target_classes.min(classes.saturating_sub(1)))
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for (round, rank) in rounds.into_iter().enumerate() {
            let active: Vec<usize> = (0..n)
                .filter(|&i| {
                    !broken[i]
                        && argmax_row(&clean[i * classes..(i + 1) * classes]) == goal.labels[i]
                })
                .collect();
            if active.is_empty() {
                break;
            }
            let targets: Option<Vec<usize>> = rank.map(|r| {
                active
                    .iter()
                    .map(|&i| ranked(&clean[i * classes..(i + 1) * classes])[r])
                    .collect()
            });
            let sub_goal = goal.subset(&active);
            let sub_model = Rows {
                model,
                rows: &active,
            };
            let origin: Vec<f32> = active
                .iter()
                .flat_map(|&i| clean_pixels[i * per..(i + 1) * per].iter().copied())
                .collect();
            let found = self.single_run(
                &sub_model,
                &origin,
                dims,
                &x.device(),
                &sub_goal,
                match &targets {
                    Some(t) => Against::Targets(t),
                    None => Against::Closest { classes },
                },
                restart * 64 + round,
                &mut |k, z| {
                    if round == 0 {
                        zero_gradient[active[k]] = z;
                    }
                },
            );
            for (k, &i) in active.iter().enumerate() {
                if let Some(adv) = &found[k] {
                    result[i * per..(i + 1) * per].copy_from_slice(adv);
                    broken[i] = true;
                }
            }
        }
        let device = x.device();
        Perturbed::new(
            Tensor::from_data(TensorData::new(result, dims), &device),
            zero_gradient,
        )
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}

impl Fab {
    /// One run from `origin` (the clean images of the batch, row-major): per sample the closest
    /// adversarial image inside the ε-ball, if one was found.
    #[allow(clippy::too_many_arguments)]
    fn single_run<B: AutodiffBackend, M: Classifier<B>>(
        &self,
        model: &M,
        origin: &[f32],
        dims: [usize; 4],
        device: &burn::tensor::Device<B::InnerBackend>,
        goal: &Goal,
        against: Against<'_>,
        stream: usize,
        on_zero_gradient: &mut dyn FnMut(usize, bool),
    ) -> Vec<Option<Vec<f32>>> {
        let n = goal.len();
        let per = origin.len() / n.max(1);
        let shape = [n, dims[1], dims[2], dims[3]];
        let mut iterate = if stream >= 64 {
            self.random_start(origin, goal, stream)
        } else {
            origin.to_vec()
        };
        let mut best: Vec<Option<Vec<f32>>> = vec![None; n];
        let mut best_distance = vec![f64::INFINITY; n];
        let all: Vec<usize> = (0..n).collect();
        let (mut boundaries, _) =
            self.boundaries(model, &iterate, &all, shape, device, goal, against);
        for (k, b) in boundaries.iter().enumerate() {
            on_zero_gradient(k, b.w.iter().all(|v| *v == 0.0));
        }
        for step in 0..self.steps {
            self.project_all(&mut iterate, origin, &boundaries);
            // The check of the new iterate reuses the forward pass of the next step's boundaries;
            // only the iterates it pulls back need their boundaries again.
            let predictions = if step + 1 == self.steps {
                let logits = host_logits(
                    model,
                    &Tensor::from_data(TensorData::new(iterate.clone(), shape), device),
                );
                logits.chunks(logits.len() / n).map(argmax_row).collect()
            } else {
                let (next, predictions) =
                    self.boundaries(model, &iterate, &all, shape, device, goal, against);
                boundaries = next;
                predictions
            };
            let fooled: Vec<usize> = (0..n)
                .filter(|&k| predictions[k] != goal.labels[k])
                .collect();
            for &k in &fooled {
                let row = k * per..(k + 1) * per;
                let delta: Vec<f32> = iterate[row.clone()]
                    .iter()
                    .zip(&origin[row.clone()])
                    .map(|(a, b)| a - b)
                    .collect();
                let distance = self.distance(&delta);
                if distance < best_distance[k] {
                    best_distance[k] = distance;
                    best[k] = Some(iterate[row.clone()].to_vec());
                }
                let beta = self.beta as f32;
                for (j, v) in iterate[row].iter_mut().enumerate() {
                    *v = origin[k * per + j] + delta[j] * beta;
                }
            }
            if step + 1 < self.steps && !fooled.is_empty() {
                let (pulled, _) =
                    self.boundaries(model, &iterate, &fooled, shape, device, goal, against);
                for (&k, boundary) in fooled.iter().zip(pulled) {
                    boundaries[k] = boundary;
                }
            }
        }
        let limit = self.eps + TOLERANCE.max(self.eps * 1e-6);
        best.into_iter()
            .zip(best_distance)
            .map(|(b, d)| b.filter(|_| d <= limit))
            .collect()
    }
}

impl Fab {
    /// One step for every sample at once, each on its own thread: both projections onto the
    /// sample's boundary and their extrapolated convex combination, in place.
    fn project_all(&self, iterate: &mut [f32], origin: &[f32], boundaries: &[Boundary]) {
        let per = origin.len() / boundaries.len().max(1);
        iterate
            .par_chunks_mut(per)
            .zip(origin.par_chunks(per))
            .zip(boundaries)
            .for_each(|((x1, x0), boundary)| {
                let d1 = onto_hyperplane(x1, &boundary.w, boundary.b, self.norm);
                let d2 = onto_hyperplane(x0, &boundary.w, boundary.b, self.norm);
                let a1 = self.distance(&d1).max(1e-8);
                let a2 = self.distance(&d2).max(1e-8);
                let alpha = (a1 / (a1 + a2)).clamp(0.0, self.alpha_max) as f32;
                let eta = self.eta as f32;
                for j in 0..per {
                    x1[j] = ((x1[j] + eta * d1[j]) * (1.0 - alpha) + (x0[j] + eta * d2[j]) * alpha)
                        .clamp(0.0, 1.0);
                }
            });
    }

    /// The linearised boundary at the iterate of the samples `rows` of the batch (FAB-T: against
    /// the target; FAB: the closest one over all other classes), and the class the model
    /// predicts there.
    #[allow(clippy::too_many_arguments)]
    fn boundaries<B: AutodiffBackend, M: Classifier<B>>(
        &self,
        model: &M,
        iterate: &[f32],
        rows: &[usize],
        [n, c, h, w]: [usize; 4],
        device: &burn::tensor::Device<B::InnerBackend>,
        goal: &Goal,
        against: Against<'_>,
    ) -> (Vec<Boundary>, Vec<usize>) {
        let per = iterate.len() / n.max(1);
        let whole = rows.len() == n;
        let points: Vec<f32> = if whole {
            iterate.to_vec()
        } else {
            rows.iter()
                .flat_map(|&k| iterate[k * per..(k + 1) * per].iter().copied())
                .collect()
        };
        let shape = [rows.len(), c, h, w];
        let sub_model = Rows { model, rows };
        let gradient = |signs: &[(usize, f32)]| {
            if whole {
                self.difference_gradient::<B, M>(model, &points, shape, device, signs)
            } else {
                self.difference_gradient::<B, _>(&sub_model, &points, shape, device, signs)
            }
        };
        let boundary = |k: usize, df: f64, w: Vec<f32>| {
            let x1 = &points[k * per..(k + 1) * per];
            let wx: f64 = w.iter().zip(x1).map(|(a, b)| *a as f64 * *b as f64).sum();
            Boundary { w, b: wx - df }
        };
        match against {
            Against::Targets(t) => {
                let signs: Vec<(usize, f32)> = rows
                    .iter()
                    .flat_map(|&k| [(t[k], 1.0), (goal.labels[k], -1.0)])
                    .collect();
                let (values, grads, predictions) = gradient(&signs);
                let found = (0..rows.len())
                    .map(|k| boundary(k, values[k], grads[k * per..(k + 1) * per].to_vec()))
                    .collect();
                (found, predictions)
            }
            Against::Closest { classes } => {
                let mut per_class = Vec::with_capacity(classes);
                for class in 0..classes {
                    let signs: Vec<(usize, f32)> = rows
                        .iter()
                        .flat_map(|&k| [(class, 1.0), (goal.labels[k], -1.0)])
                        .collect();
                    per_class.push(gradient(&signs));
                }
                let found = rows
                    .iter()
                    .enumerate()
                    .map(|(k, &row)| {
                        let closest = (0..classes)
                            .filter(|&c| c != goal.labels[row])
                            .min_by(|&a, &b| {
                                let d = |c: usize| {
                                    let (v, g, _) = &per_class[c];
                                    v[k].abs() / (self.dual(&g[k * per..(k + 1) * per]) + 1e-12)
                                };
                                d(a).total_cmp(&d(b))
                            })
                            .expect("at least two classes");
                        let (v, g, _) = &per_class[closest];
                        boundary(k, v[k], g[k * per..(k + 1) * per].to_vec())
                    })
                    .collect();
                let predictions = per_class.swap_remove(0).2;
                (found, predictions)
            }
        }
    }

    /// Per sample the logit difference Σ sign·z_class over the (class, sign) pairs of the
    /// sample (two per sample, in order), its input gradient and the predicted class, on the
    /// host.
    fn difference_gradient<B: AutodiffBackend, M: Classifier<B>>(
        &self,
        model: &M,
        iterate: &[f32],
        shape: [usize; 4],
        device: &burn::tensor::Device<B::InnerBackend>,
        signs: &[(usize, f32)],
    ) -> (Vec<f64>, Vec<f32>, Vec<usize>) {
        let n = shape[0];
        let inner = Tensor::<B::InnerBackend, 4>::from_data(
            TensorData::new(iterate.to_vec(), shape),
            device,
        );
        let input = Tensor::<B, 4>::from_inner(inner).require_grad();
        let logits = model.logits(input.clone());
        let classes = logits.dims()[1];
        let predictions = to_vec(logits.clone().inner())
            .chunks(classes)
            .map(argmax_row)
            .collect();
        let mut mask = vec![0f32; n * classes];
        for (k, pair) in signs.chunks(2).enumerate() {
            for &(c, sign) in pair {
                mask[k * classes + c] += sign;
            }
        }
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [n, classes]), &logits.device());
        let difference = (logits * mask).sum_dim(1).reshape([n]);
        let values: Vec<f64> = difference
            .clone()
            .inner()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32")
            .into_iter()
            .map(f64::from)
            .collect();
        let grads = difference.sum().backward();
        let grad = input.grad(&grads).expect("input is tracked");
        (values, to_vec(grad), predictions)
    }

    /// A random start at half the ε radius around the clean images.
    fn random_start(&self, origin: &[f32], goal: &Goal, stream: usize) -> Vec<f32> {
        let n = goal.len();
        let per = origin.len() / n.max(1);
        let values = match self.norm {
            Norm::Linf => uniform_per_sample(&goal.seeds, stream, per),
            Norm::L2 => normal_with_radius(&goal.seeds, stream, per).0,
        };
        let mut out = origin.to_vec();
        for k in 0..n {
            let row = &values[k * per..(k + 1) * per];
            let size = match self.norm {
                Norm::Linf => row.iter().fold(0f32, |m, v| m.max(v.abs())),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            let scale = 0.5 * self.eps as f32 / (size + 1e-12);
            for j in 0..per {
                out[k * per + j] = (origin[k * per + j] + scale * row[j]).clamp(0.0, 1.0);
            }
        }
        out
    }
}
