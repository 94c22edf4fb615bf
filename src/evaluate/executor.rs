//! Turning one batch of one cell into per-sample rows: loading its images (clean, corrupted on
//! the fly, or pre-made) and running the model on them, plainly or under attack.

use burn::backend::Autodiff;
use corruptions::{Corruption, RgbImage};

use crate::adversarial::{attack_batch, AttackDriver, FrozenNetwork};
use crate::corrupted::{premade_open, CorruptedSet};
use crate::data::{Batch, Dataset, DatasetKind};
use crate::error::{Error, Result};
use crate::eval::{check_finite_logits, predictions_from_logits};
use crate::evaluate::condition::{Condition, CorruptionSource};
use crate::evaluate::plan::{Defense, ModelEntry};
use crate::evaluate::sample::SampleRow;
use crate::kernels::ConvBackend;
use crate::models::{LambdaTarget, Network};

/// A model of the plan, loaded for clean evaluation and, when an attack needs it, for gradients.
pub struct ModelSlot<B: ConvBackend> {
    pub entry: ModelEntry,
    kind: DatasetKind,
    pub clean: Network<B>,
    attacked: Option<FrozenNetwork<Autodiff<B>>>,
    /// Where the weights came from, and their content digest.
    pub weights: String,
    pub identity: String,
}

impl<B: ConvBackend> ModelSlot<B> {
    pub fn load(entry: &ModelEntry, kind: DatasetKind, device: &B::Device) -> Result<Self> {
        let loaded = entry.config.load::<B>(kind, device)?;
        let mut clean = loaded.network;
        apply_defense(&mut clean, &entry.defense, &entry.label)?;
        Ok(Self {
            entry: entry.clone(),
            kind,
            clean,
            attacked: None,
            weights: loaded.weights,
            identity: loaded.identity,
        })
    }

    /// The model with frozen parameters on the autodiff backend (loaded on first use).
    fn attacked(&mut self, device: &B::Device) -> Result<&FrozenNetwork<Autodiff<B>>> {
        if self.attacked.is_none() {
            let mut network = self
                .entry
                .config
                .load::<Autodiff<B>>(self.kind, device)?
                .network;
            apply_defense(&mut network, &self.entry.defense, &self.entry.label)?;
            self.attacked = Some(FrozenNetwork::new(network));
        }
        Ok(self.attacked.as_ref().expect("loaded above"))
    }
}

fn apply_defense<B: ConvBackend>(
    network: &mut Network<B>,
    defense: &Defense,
    label: &str,
) -> Result<()> {
    match defense {
        Defense::None => Ok(()),
        Defense::Lambda(lambda) => {
            if !(lambda.is_finite() && *lambda >= 0.0) {
                return Err(Error::input(format!(
                    "λ must be a non-negative number, got {lambda}"
                )));
            }
            if network.set_lambda(LambdaTarget::All, *lambda) == 0 {
                // A result labelled with a defense the model cannot have would mislead.
                return Err(Error::input(format!(
                    "{label} has no CSC layers: λ = {lambda} (--lambda) applies only to SDNet models"
                )));
            }
            Ok(())
        }
    }
}

/// The images of one batch, and the corrupted images themselves when they are exported.
pub struct LoadedBatch {
    pub batch: Batch,
    pub corrupted: Option<Vec<RgbImage>>,
}

/// Where a cell's images come from, resolved on the loading thread.
pub enum CellImages<'a> {
    Base(&'a dyn Dataset),
    Corrupted(CorruptedSet<'a>),
    Premade(Box<dyn Dataset>),
}

impl<'a> CellImages<'a> {
    pub fn open(
        condition: &Condition,
        base: Option<&'a dyn Dataset>,
        kind: DatasetKind,
        limit: Option<usize>,
        seed: u64,
    ) -> Result<Self> {
        let need_base = || base.ok_or_else(|| Error::input("this condition needs a data set"));
        Ok(match condition {
            Condition::Corruption {
                corruption,
                severity,
                source: CorruptionSource::OnTheFly(preset),
            } => Self::Corrupted(CorruptedSet {
                inner: need_base()?,
                corruption: *corruption,
                severity: *severity,
                preset: *preset,
                seed,
            }),
            Condition::Corruption {
                corruption,
                severity,
                source: CorruptionSource::Premade(dir),
            } => Self::Premade(premade_open(kind, dir, *corruption, *severity, limit)?),
            Condition::Clean | Condition::Attack(_) => Self::Base(need_base()?),
        })
    }

    /// Loads the images `indices`; `keep_corrupted` also returns the corrupted RGB images.
    pub fn load(&self, indices: &[usize], keep_corrupted: bool) -> Result<LoadedBatch> {
        match self {
            Self::Base(set) => Ok(LoadedBatch {
                batch: Batch::load(*set, indices)?,
                corrupted: None,
            }),
            Self::Premade(set) => Ok(LoadedBatch {
                batch: Batch::load(set.as_ref(), indices)?,
                corrupted: None,
            }),
            Self::Corrupted(set) => {
                let images = set.images(indices)?;
                let [c, h, w] = set.image_shape();
                let batch = Batch {
                    pixels: images
                        .iter()
                        .flat_map(|i| i.to_planes())
                        .map(|v| v as f32 / 255.0)
                        .collect(),
                    shape: [indices.len(), c, h, w],
                    labels: indices.iter().map(|&i| set.label(i)).collect(),
                    indices: indices.to_vec(),
                };
                Ok(LoadedBatch {
                    batch,
                    corrupted: keep_corrupted.then_some(images),
                })
            }
        }
    }

    pub fn dataset(&self) -> &dyn Dataset {
        match self {
            Self::Base(set) => *set,
            Self::Corrupted(set) => set,
            Self::Premade(set) => set.as_ref(),
        }
    }

    pub fn corruption(&self) -> Option<Corruption> {
        match self {
            Self::Corrupted(set) => Some(set.corruption),
            _ => None,
        }
    }
}

/// What a batch produced.
pub struct BatchOutput {
    pub rows: Vec<SampleRow>,
    /// Logits [n, classes], for clean and corrupted images.
    pub logits: Option<Vec<f32>>,
    /// Adversarial images, NCHW, for attacks.
    pub adversarial: Option<Vec<f32>>,
}

/// Runs the model of `slot` on a batch under `condition`.
pub fn execute<B: ConvBackend>(
    slot: &mut ModelSlot<B>,
    condition: &Condition,
    batch: &Batch,
    seed: u64,
    device: &B::Device,
) -> Result<BatchOutput> {
    let start = std::time::Instant::now();
    let share = |n: usize| start.elapsed().as_secs_f64() / n.max(1) as f64;
    match condition {
        Condition::Clean | Condition::Corruption { .. } => {
            let logits = slot.clean.forward(batch.images::<B>(device));
            let values = logits_vec(logits.clone());
            check_finite_logits(&values, batch, &slot.entry.label)?;
            let predictions = predictions_from_logits(logits, batch);
            let seconds = share(batch.len());
            Ok(BatchOutput {
                rows: predictions
                    .iter()
                    .map(|p| SampleRow::from_prediction(p, seconds))
                    .collect(),
                logits: Some(values),
                adversarial: None,
            })
        }
        Condition::Attack(a) => {
            let driver = AttackDriver {
                restarts: a.restarts,
                targeting: a.targeting,
                seed,
            };
            // A model that is broken on the clean images is reported as such, not as a failure
            // of the attack.
            let clean = logits_vec(slot.clean.forward(batch.images::<B>(device)));
            check_finite_logits(&clean, batch, &slot.entry.label)?;
            let model = slot.attacked(device)?;
            let attacked = attack_batch(&a.config, model, batch, driver, device)?;
            if let Some(r) = attacked.records.iter().find(|r| !r.loss.is_finite()) {
                return Err(Error::input(format!(
                    "{} produced non-finite logits under attack (first at image {}, in the batch \
                     of images {}–{}): the model is numerically unstable near its inputs",
                    slot.entry.label,
                    r.index,
                    batch.indices[0],
                    batch.indices[batch.len() - 1]
                )));
            }
            let seconds = share(batch.len());
            Ok(BatchOutput {
                rows: attacked
                    .records
                    .iter()
                    .zip(&attacked.zero_gradient)
                    .map(|(r, &zero)| SampleRow::from_record(r, zero, seconds))
                    .collect(),
                logits: None,
                adversarial: Some(attacked.adversarial),
            })
        }
    }
}

fn logits_vec<B: burn::tensor::backend::Backend>(logits: burn::tensor::Tensor<B, 2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 logits")
}
