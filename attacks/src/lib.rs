//! Adversarial attacks for image classifiers on any burn autodiff backend.
//!
//! Contract: images are NCHW in [0,1]; the classifier returns logits (not probabilities) and is
//! evaluated in inference mode with frozen parameters (see [`Classifier`]). ε is on the [0,1]
//! scale. Every attack returns adversarial images that are checked to lie inside the ε-ball and
//! inside [0,1] ([`check_budget`]).
//!
//! | attack | paper | norms |
//! |---|---|---|
//! | [`Fgsm`] | Goodfellow et al. 2015 (FGSM), Miyato et al. 2016 (FGM) | L∞, L2 |
//! | [`Pgd`] | Madry et al. 2018 | L∞, L2 |
//! | [`Apgd`] | Croce & Hein 2020 (APGD-CE, APGD-DLR) | L∞, L2 |
//! | [`ApgdTargeted`] | Croce & Hein 2020 (APGD-T, targeted DLR over the top classes) | L∞, L2 |
//! | [`Fab`] | Croce & Hein 2020 (FAB, FAB-T: minimal-norm, fast adaptive boundary) | L∞, L2 |
//! | [`Square`] | Andriushchenko et al. 2020 (score-based random search, no gradients) | L∞, L2 |
//! | [`AutoAttack`] | Croce & Hein 2020 (the ensemble: standard, plus, rand, custom) | L∞, L2 |
//!
//! ```ignore
//! let pgd = Pgd { eps: 8.0 / 255.0, ..Pgd::linf_default() };
//! let outcome = run(&pgd, &model, images, &goal, 2)?; // 2 restarts
//! ```

mod apgd;
mod apgd_t;
mod autoattack;
mod budget;
mod config;
mod driver;
mod fab;
mod fgsm;
mod gradient;
mod loss;
mod noise;
mod pgd;
mod projection;
mod samples;
mod square;

pub use apgd::Apgd;
pub use apgd_t::ApgdTargeted;
pub use autoattack::{member_named, AutoAttack, Member, Version};
pub use budget::{check_budget, perturbation_norms, project, BudgetViolation};
pub use config::AttackConfig;
pub use driver::{run, run_from_clean, Outcome};
pub use fab::Fab;
pub use fgsm::Fgsm;
pub use gradient::argmax;
pub use gradient::{cross_entropy, Gradient};
pub use loss::{dlr_value, Loss, Objective};
pub use noise::sample_rng;
pub use pgd::Pgd;
pub use projection::onto_hyperplane;
pub use square::Square;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// A differentiable classifier: images in [0,1] → logits.
///
/// Implementations must run in inference mode (BatchNorm running statistics, no dropout) and keep
/// their parameters out of the autodiff graph, so that attacks only compute input gradients. The
/// logits must be a deterministic function of the batch: the driver does not score a batch twice.
pub trait Classifier<B: AutodiffBackend> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2>;

    /// Logits of `images`, which are the rows `rows` of the batch given to [`run`] (the driver
    /// attacks the samples not yet broken as sub-batches). Classifiers that keep per-sample state
    /// (a defense holding each sample's λ) use `rows`; the others need not implement it.
    fn logits_rows(&self, images: Tensor<B, 4>, rows: &[usize]) -> Tensor<B, 2> {
        let _ = rows;
        self.logits(images)
    }
}

/// The rows `rows` of a batch, as a classifier of their own.
pub(crate) struct Rows<'a, M: ?Sized> {
    pub model: &'a M,
    pub rows: &'a [usize],
}

impl<B: AutodiffBackend, M: Classifier<B> + ?Sized> Classifier<B> for Rows<'_, M> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.model.logits_rows(images, self.rows)
    }

    fn logits_rows(&self, images: Tensor<B, 4>, rows: &[usize]) -> Tensor<B, 2> {
        let outer: Vec<usize> = rows.iter().map(|&r| self.rows[r]).collect();
        self.model.logits_rows(images, &outer)
    }
}

/// The distance that bounds a perturbation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "l-inf" | "inf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            other => Err(format!("unknown norm '{other}' (expected linf or l2)")),
        }
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        })
    }
}

/// What one batch is attacked for.
#[derive(Clone, Debug)]
pub struct Goal {
    /// True classes.
    pub labels: Vec<usize>,
    /// Target classes for a targeted attack (`None`: untargeted).
    pub targets: Option<Vec<usize>>,
    /// Per-sample seeds for every random draw (derive them from the data-set index so results do
    /// not depend on batching).
    pub seeds: Vec<u64>,
}

impl Goal {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether the attack succeeded on sample `i` given its predicted class.
    pub fn achieved(&self, i: usize, predicted: usize) -> bool {
        match &self.targets {
            Some(t) => predicted == t[i],
            None => predicted != self.labels[i],
        }
    }

    /// The samples `keep` of this goal, in that order.
    pub fn subset(&self, keep: &[usize]) -> Goal {
        Goal {
            labels: keep.iter().map(|&i| self.labels[i]).collect(),
            targets: self
                .targets
                .as_ref()
                .map(|t| keep.iter().map(|&i| t[i]).collect()),
            seeds: keep.iter().map(|&i| self.seeds[i]).collect(),
        }
    }
}

/// Images outside the autodiff graph.
pub type Images<B> = Tensor<<B as AutodiffBackend>::InnerBackend, 4>;

/// Adversarial images from one run of an attack.
pub struct Perturbed<B: AutodiffBackend> {
    pub images: Images<B>,
    /// Per sample: whether its input gradient was exactly zero at the first step.
    pub zero_gradient: Vec<bool>,
    /// Per sample: model evaluations used, for query-limited (score-based) attacks.
    pub queries: Option<Vec<usize>>,
    /// Per sample, for ensembles: the position of the member that broke it.
    pub broken_by: Option<Vec<Option<usize>>>,
}

impl<B: AutodiffBackend> Perturbed<B> {
    pub fn new(images: Images<B>, zero_gradient: Vec<bool>) -> Self {
        Self {
            images,
            zero_gradient,
            queries: None,
            broken_by: None,
        }
    }
}

/// One run of an attack from the clean images (restarts are handled by [`run`]).
pub trait Attack<B: AutodiffBackend> {
    /// Adversarial images for `images`; `restart` numbers the run (it changes the random start).
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        images: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B>;

    fn norm(&self) -> Norm;
    fn eps(&self) -> f64;
}
