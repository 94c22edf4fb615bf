//! Training recipes as data: the official CIFAR and ImageNet settings, and their learning-rate
//! schedules.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::SgdConfig;
use serde::{Deserialize, Serialize};

use crate::data::{Batch, Dataset, DatasetKind};
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::train::augment;
use crate::train::Optim;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// Cosine annealing stepped every iteration, from `lr` down to `min_lr`.
    CosinePerIteration { min_lr: f64 },
    /// Multiply by `gamma` at each milestone epoch.
    Step { milestones: Vec<usize>, gamma: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augmentation {
    /// RandomCrop(32, padding 4) + horizontal flip.
    CifarCrop,
    /// RandomResizedCrop(224) + horizontal flip.
    ImagenetResizedCrop,
    None,
}

/// Optimiser, schedule, batch and augmentation of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// L2 penalty added to the gradient of every parameter (BatchNorm included, as in the
    /// official code).
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub augmentation: Augmentation,
    pub seed: u64,
}

impl Recipe {
    /// Official CIFAR-10/100: SGD 0.1, momentum 0.9 Nesterov, wd 5e-4, cosine per iteration to
    /// 1e-6, 220 epochs, batch 128, crop + flip, seed 1.
    pub fn cifar() -> Self {
        Self {
            epochs: 220,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            schedule: Schedule::CosinePerIteration { min_lr: 1e-6 },
            augmentation: Augmentation::CifarCrop,
            seed: 1,
        }
    }

    /// Official ImageNet: SGD 0.1, momentum 0.9, wd 1e-4, ×0.1 at epochs 30/60/90, 100 epochs,
    /// batch 512, RandomResizedCrop(224) + flip.
    pub fn imagenet() -> Self {
        Self {
            epochs: 100,
            batch_size: 512,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
            schedule: Schedule::Step {
                milestones: vec![30, 60, 90],
                gamma: 0.1,
            },
            augmentation: Augmentation::ImagenetResizedCrop,
            seed: 1,
        }
    }

    pub fn for_dataset(kind: DatasetKind) -> Self {
        match kind {
            DatasetKind::Imagenet => Self::imagenet(),
            _ => Self::cifar(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(Error::input("--epochs and --batch-size must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::input(format!(
                "--lr must be positive, got {}",
                self.lr
            )));
        }
        Ok(())
    }

    /// PyTorch's SGD: dampening 0 (burn's default is 0.1), decay added to the gradient.
    pub fn sgd(&self) -> SgdConfig {
        let momentum = MomentumConfig {
            momentum: self.momentum,
            dampening: 0.0,
            nesterov: self.nesterov,
        };
        SgdConfig::new()
            .with_momentum(Some(momentum))
            .with_weight_decay(Some(WeightDecayConfig::new(self.weight_decay as f32)))
    }

    pub(crate) fn optimizer<B: ConvBackend>(&self) -> Optim<B> {
        self.sgd().init()
    }
}

impl Schedule {
    /// Learning rate of optimizer step `iteration` (0-based).
    pub fn lr(&self, recipe: &Recipe, iteration: usize, total: usize, per_epoch: usize) -> f64 {
        match self {
            Schedule::CosinePerIteration { min_lr } => {
                let progress = iteration as f64 / total.max(1) as f64;
                min_lr
                    + (recipe.lr - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
            Schedule::Step { milestones, gamma } => {
                let epoch = iteration / per_epoch.max(1);
                let passed = milestones.iter().filter(|&&m| epoch >= m).count();
                recipe.lr * gamma.powi(passed as i32)
            }
        }
    }
}

impl Augmentation {
    /// A training batch of the images `indices`, augmented with streams seeded by
    /// (seed, epoch, image index).
    pub fn batch(
        &self,
        dataset: &dyn Dataset,
        indices: &[usize],
        seed: u64,
        epoch: usize,
    ) -> Result<Batch> {
        let shape = dataset.image_shape();
        let per_image = shape.iter().product::<usize>();
        let pixels = match self {
            Augmentation::CifarCrop => {
                let mut raw = dataset.load_u8(indices)?;
                for (image, &index) in raw.chunks_mut(per_image).zip(indices) {
                    augment::crop_and_flip(image, shape, 4, seed, epoch, index);
                }
                raw
            }
            Augmentation::ImagenetResizedCrop => {
                dataset.load_u8_random_resized(indices, seed, epoch)?
            }
            Augmentation::None => dataset.load_u8(indices)?,
        };
        Ok(Batch {
            pixels: pixels.iter().map(|&v| v as f32 / 255.0).collect(),
            shape: [indices.len(), shape[0], shape[1], shape[2]],
            labels: indices.iter().map(|&i| dataset.label(i)).collect(),
            indices: indices.to_vec(),
        })
    }
}
