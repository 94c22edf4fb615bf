//! Clean predictions: top-1 / top-5 from logits, accuracy, and a plain clean-accuracy pass over a
//! data set for training's validation (evaluation commands run on [`crate::evaluate`]).

use crate::kernels::ConvBackend;
use std::sync::mpsc;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use indicatif::ProgressBar;

use crate::data::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::models::Network;

/// Calls `consume` on consecutive batches of `indices`, loading the next batch in the background.
pub fn for_each_batch(
    dataset: &dyn Dataset,
    indices: &[usize],
    batch_size: usize,
    mut consume: impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::input("batch size must be at least 1"));
    }
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Result<Batch>>(2);
        scope.spawn(move || {
            for chunk in indices.chunks(batch_size) {
                if sender.send(Batch::load(dataset, chunk)).is_err() {
                    break; // the consumer stopped early
                }
            }
        });
        for batch in receiver {
            consume(batch?)?;
        }
        Ok(())
    })
}

/// Per-sample outcome of a clean evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    /// Whether the label is among the five highest logits.
    pub in_top5: bool,
}

impl Prediction {
    pub fn correct(&self) -> bool {
        self.predicted == self.label
    }
}

/// Top-1 class and top-5 membership of the label for each row of `logits`.
pub fn predictions_from_logits<B: ConvBackend>(
    logits: Tensor<B, 2>,
    batch: &Batch,
) -> Vec<Prediction> {
    let [n, classes] = logits.dims();
    let k = classes.min(5);
    let (_, top) = logits.topk_with_indices(k, 1);
    let top: Vec<i64> = to_i64(top);
    (0..n)
        .map(|row| {
            let ranked = &top[row * k..(row + 1) * k];
            let label = batch.labels[row];
            Prediction {
                index: batch.indices[row],
                label,
                predicted: ranked[0] as usize,
                in_top5: ranked.iter().any(|&c| c as usize == label),
            }
        })
        .collect()
}

fn to_i64<B: ConvBackend>(t: Tensor<B, 2, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .expect("integer data")
}

/// Accuracy figures over a set of predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accuracy {
    pub n: usize,
    pub top1: f64,
    pub top5: f64,
}

impl Accuracy {
    pub fn of(predictions: &[Prediction]) -> Self {
        let n = predictions.len();
        let frac = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
        Self {
            n,
            top1: frac(predictions.iter().filter(|p| p.correct()).count()),
            top5: frac(predictions.iter().filter(|p| p.in_top5).count()),
        }
    }
}

/// The outcome of [`evaluate`].
pub struct Evaluation {
    pub predictions: Vec<Prediction>,
    pub seconds: f64,
}

impl Evaluation {
    pub fn accuracy(&self) -> Accuracy {
        Accuracy::of(&self.predictions)
    }

    pub fn images_per_second(&self) -> f64 {
        self.predictions.len() as f64 / self.seconds.max(1e-9)
    }
}

/// What [`evaluate`] runs on.
pub struct EvalRequest<'a, B: Backend> {
    pub model: &'a Network<B>,
    pub dataset: &'a dyn Dataset,
    /// Which images of the data set, in order.
    pub indices: &'a [usize],
    pub batch_size: usize,
    pub device: &'a B::Device,
    pub progress: &'a ProgressBar,
}

/// Non-finite logits mean broken weights or inputs: an error, never an accuracy.
pub fn check_finite_logits(logits: &[f32], batch: &Batch, label: &str) -> Result<()> {
    let classes = logits.len() / batch.len().max(1);
    if let Some(position) = logits.iter().position(|v| !v.is_finite()) {
        let image = batch.indices[position / classes.max(1)];
        return Err(Error::input(format!(
            "{label} produced non-finite logits (first at image {image}, in the batch of images \
             {}–{}): its weights or the input are broken",
            batch.indices[0],
            batch.indices[batch.len() - 1]
        )));
    }
    Ok(())
}

/// Clean accuracy of the model on the requested images. `on_batch` sees each batch's
/// predictions as soon as they exist (for journaling).
pub fn evaluate<B: ConvBackend>(
    request: EvalRequest<'_, B>,
    mut on_batch: impl FnMut(&[Prediction]) -> Result<()>,
) -> Result<Evaluation> {
    let start = Instant::now();
    let mut predictions = Vec::with_capacity(request.indices.len());
    for_each_batch(
        request.dataset,
        request.indices,
        request.batch_size,
        |batch| {
            let logits = request.model.forward(batch.images::<B>(request.device));
            let values: Vec<f32> = logits
                .clone()
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 logits");
            check_finite_logits(&values, &batch, "the model")?;
            let batch_predictions = predictions_from_logits(logits, &batch);
            on_batch(&batch_predictions)?;
            predictions.extend(batch_predictions);
            request.progress.inc(batch.len() as u64);
            Ok(())
        },
    )?;
    Ok(Evaluation {
        predictions,
        seconds: start.elapsed().as_secs_f64(),
    })
}
