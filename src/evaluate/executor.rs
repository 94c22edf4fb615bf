//! Turning one batch of one cell into per-sample rows: loading its images (clean, corrupted on
//! the fly, or pre-made) and running the model on them, plainly or under attack.

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use corruptions::{Corruption, RgbImage};

use crate::adversarial::{attack_batch, AttackDriver, AttackedBatch, FrozenNetwork};
use crate::corrupted::{premade_open, CorruptedSet};
use crate::data::{Batch, Dataset, DatasetKind};
use crate::defense::{AttackMode, BoundDefense, DefendedClassifier};
use crate::error::{Error, Result};
use crate::eval::{check_finite_logits, predictions_from_logits};
use crate::evaluate::condition::{Condition, CorruptionSource};
use crate::evaluate::plan::{Defense, ModelEntry};
use crate::evaluate::sample::SampleRow;
use crate::kernels::ConvBackend;
use crate::models::Network;

/// A model of the plan, loaded for clean evaluation and, when an attack needs it, for gradients.
pub struct ModelSlot<B: ConvBackend> {
    pub entry: ModelEntry,
    kind: DatasetKind,
    pub clean: Network<B>,
    /// The defense bound to `clean` (fixed λ already applied to it).
    pub defense: Option<BoundDefense>,
    attacked: Option<FrozenNetwork<Autodiff<B>>>,
    /// The undefended model, for transfer attacks.
    undefended: Option<FrozenNetwork<Autodiff<B>>>,
    /// Where the weights came from, and their content digest.
    pub weights: String,
    pub identity: String,
}

impl<B: ConvBackend> ModelSlot<B> {
    pub fn load(entry: &ModelEntry, kind: DatasetKind, device: &B::Device) -> Result<Self> {
        let loaded = entry.config.load::<B>(kind, device)?;
        let mut clean = loaded.network;
        let defense = bind_defense(&mut clean, &entry.defense, &loaded.identity, &entry.label)?;
        Ok(Self {
            entry: entry.clone(),
            kind,
            clean,
            defense,
            attacked: None,
            undefended: None,
            weights: loaded.weights,
            identity: loaded.identity,
        })
    }

    /// The model with frozen parameters on the autodiff backend (loaded on first use).
    fn attacked(&mut self, device: &B::Device) -> Result<&FrozenNetwork<Autodiff<B>>> {
        if self.attacked.is_none() {
            let loaded = self.entry.config.load::<Autodiff<B>>(self.kind, device)?;
            let mut network = loaded.network;
            bind_defense(
                &mut network,
                &self.entry.defense,
                &loaded.identity,
                &self.entry.label,
            )?;
            self.attacked = Some(FrozenNetwork::new(network));
        }
        Ok(self.attacked.as_ref().expect("loaded above"))
    }

    /// The model without its defense on the autodiff backend (loaded on first use).
    fn undefended(&mut self, device: &B::Device) -> Result<&FrozenNetwork<Autodiff<B>>> {
        if self.undefended.is_none() {
            let network = self
                .entry
                .config
                .load::<Autodiff<B>>(self.kind, device)?
                .network;
            self.undefended = Some(FrozenNetwork::new(network));
        }
        Ok(self.undefended.as_ref().expect("loaded above"))
    }

    /// Logits of the (defended) model and the λ it chose per sample.
    fn forward(&self, images: Tensor<B, 4>, condition: &str) -> (Tensor<B, 2>, Option<Vec<f64>>) {
        match &self.defense {
            Some(d) => d.forward(&self.clean, images, condition),
            None => (self.clean.forward(images), None),
        }
    }
}

fn bind_defense<B: ConvBackend>(
    network: &mut Network<B>,
    defense: &Defense,
    identity: &str,
    label: &str,
) -> Result<Option<BoundDefense>> {
    defense
        .test_time()
        .map(|d| BoundDefense::bind(&d, network, identity, label))
        .transpose()
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
            let (logits, lambdas) =
                slot.forward(batch.images::<B>(device), &condition.schedule_key());
            let values = logits_vec(logits.clone());
            check_finite_logits(&values, batch, &slot.entry.label)?;
            let predictions = predictions_from_logits(logits, batch);
            let seconds = share(batch.len());
            Ok(BatchOutput {
                rows: predictions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        SampleRow::from_prediction(p, seconds)
                            .with_lambda(lambdas.as_ref().map(|l| l[i]))
                    })
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
            let label = condition.schedule_key();
            let (clean_logits, clean_lambdas) = slot.forward(batch.images::<B>(device), &label);
            let clean = logits_vec(clean_logits);
            check_finite_logits(&clean, batch, &slot.entry.label)?;
            let checks = match a.config {
                attacks::AttackConfig::AutoAttack(_) => {
                    let (again, _) = slot.forward(batch.images::<B>(device), &label);
                    runtime_checks(&clean, &logits_vec(again), batch.len())
                }
                _ => None,
            };
            let mut attacked = attack_slot(
                slot,
                &a.config,
                a.mode,
                &label,
                clean_lambdas,
                batch,
                driver,
                device,
            )?;
            let lambdas = rescore_defended(slot, &mut attacked, &clean, batch, &label, device);
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
                    .enumerate()
                    .map(|(i, (r, &zero))| {
                        let mut row = SampleRow::from_record(r, zero, seconds)
                            .with_lambda(lambdas.as_ref().map(|l| l[i]));
                        row.checks = checks.clone();
                        row
                    })
                    .collect(),
                logits: None,
                adversarial: Some(attacked.adversarial),
            })
        }
    }
}

/// Attacks a batch of `slot`'s model as `mode` says.
#[allow(clippy::too_many_arguments)]
fn attack_slot<B: ConvBackend>(
    slot: &mut ModelSlot<B>,
    attack: &attacks::AttackConfig,
    mode: AttackMode,
    condition: &str,
    clean_lambdas: Option<Vec<f64>>,
    batch: &Batch,
    driver: AttackDriver,
    device: &B::Device,
) -> Result<AttackedBatch> {
    let classes = slot.clean.spec().num_classes;
    if slot.defense.is_none() || mode == AttackMode::Transfer {
        let model = if slot.defense.is_none() {
            slot.attacked(device)?
        } else {
            slot.undefended(device)?
        };
        return attack_batch(attack, model, classes, batch, driver, device);
    }
    slot.attacked(device)?;
    let defense = slot.defense.as_ref().expect("defended");
    let network = slot.attacked.as_ref().expect("loaded above").network();
    let held = match mode {
        AttackMode::Static => Some(clean_lambdas.unwrap_or_else(|| {
            vec![network.csc_lambdas().first().copied().unwrap_or(0.0); batch.len()]
        })),
        _ => None,
    };
    let classifier = DefendedClassifier {
        network,
        inner: &slot.clean,
        defense,
        condition,
        held,
    };
    attack_batch(attack, &classifier, classes, batch, driver, device)
}

/// Scores adversarial images with the defended model itself (λ chosen anew on each adversarial
/// image, BatchNorm adapted to the adversarial batch), whatever the attacker used, and the clean
/// predictions from the defended model's clean logits. Returns the λ chosen per sample.
fn rescore_defended<B: ConvBackend>(
    slot: &ModelSlot<B>,
    attacked: &mut AttackedBatch,
    clean_logits: &[f32],
    batch: &Batch,
    condition: &str,
    device: &B::Device,
) -> Option<Vec<f64>> {
    slot.defense.as_ref()?;
    let shape = batch.shape;
    let images = Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(attacked.adversarial.clone(), shape),
        device,
    );
    let (logits, lambdas) = slot.forward(images, condition);
    let classes = logits.dims()[1];
    let values = logits_vec(logits);
    for (i, record) in attacked.records.iter_mut().enumerate() {
        let row = &values[i * classes..(i + 1) * classes];
        record.adversarial_prediction = argmax_row(row);
        record.clean_prediction = argmax_row(&clean_logits[i * classes..(i + 1) * classes]);
        record.loss = cross_entropy_row(row, record.label);
        record.success = match record.target {
            Some(t) => record.adversarial_prediction == t,
            None => record.adversarial_prediction != record.label,
        };
    }
    lambdas
}

/// AutoAttack's checks on the model, from two passes of clean logits over the same batch: logits
/// that change between the passes (a randomised model: ‖a/‖a‖ − b/‖b‖‖ > 1e-4 for some image), and
/// outputs that look like probabilities (all in [0, 1], every row summing to 1 within 1e-5).
fn runtime_checks(first: &[f32], second: &[f32], n: usize) -> Option<String> {
    let classes = first.len() / n.max(1);
    let unit = |row: &[f32]| {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-10;
        row.iter().map(|v| v / norm).collect::<Vec<f32>>()
    };
    let randomised = first
        .chunks(classes)
        .zip(second.chunks(classes))
        .any(|(a, b)| {
            let (a, b) = (unit(a), unit(b));
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
                > 1e-4
        });
    let softmax = first.iter().all(|v| (-1e-5..1.0 + 1e-5).contains(v))
        && first
            .chunks(classes)
            .all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let flags: Vec<&str> = [(randomised, "randomised"), (softmax, "softmax")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    (!flags.is_empty()).then(|| flags.join(";"))
}

fn argmax_row(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn cross_entropy_row(row: &[f32], label: usize) -> f32 {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln() - row[label]
}

fn logits_vec<B: burn::tensor::backend::Backend>(logits: burn::tensor::Tensor<B, 2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 logits")
}
