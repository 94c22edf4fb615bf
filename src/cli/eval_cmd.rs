//! `robust-eval eval`: clean accuracy, throughput, per-sample predictions and optional logits.

use crate::kernels::ConvBackend;
use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::cli::common::{model_settings, settings_with_run_context, DataArgs, ModelArgs, RunArgs};
use crate::data::Dataset;
use crate::device::{backend_name, dispatch, DeviceChoice, Job};
use crate::error::{Error, Result};
use crate::eval::{evaluate, Accuracy, EvalRequest, Prediction};
use crate::report::{self, progress_bar, Journal};

#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Also write the logits as a float32 .npy array [N, classes].
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Base name of the result files (default: eval-<model>-<dataset>).
    #[arg(long)]
    pub name: Option<String>,
}

/// What `eval` measured.
pub struct EvalOutcome {
    pub accuracy: Accuracy,
    pub images_per_second: f64,
    pub files: Vec<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<EvalOutcome> {
    let device = args.run.device()?;
    if args.logits.is_some() && args.run.resume {
        return Err(Error::input(
            "--logits cannot be combined with --resume (logits are kept in memory)",
        ));
    }
    let dataset = args.data.open()?;
    report::prepare_output_dir(&args.run.out_dir)?;
    let outcome = dispatch(
        device,
        EvalJob {
            args: &args,
            dataset: dataset.as_ref(),
            device,
        },
    )?;
    let acc = outcome.accuracy;
    println!("top-1      {:.2} % ({} images)", 100.0 * acc.top1, acc.n);
    if dataset.num_classes() > 10 {
        println!("top-5      {:.2} %", 100.0 * acc.top5);
    }
    println!(
        "throughput {:.1} images/s on {}",
        outcome.images_per_second,
        backend_name(device)
    );
    for file in &outcome.files {
        println!("wrote      {}", file.display());
    }
    Ok(outcome)
}

struct EvalJob<'a> {
    args: &'a EvalArgs,
    dataset: &'a dyn Dataset,
    device: DeviceChoice,
}

impl Job for EvalJob<'_> {
    type Output = EvalOutcome;

    fn run<B: ConvBackend>(self, device: B::Device) -> Result<EvalOutcome> {
        let args = self.args;
        let kind = args.data.kind()?;
        let loaded = args.model.load::<B>(kind, &device)?;
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| format!("eval-{}-{}", loaded.network.spec().name(), kind.name()));
        let out = &args.run.out_dir;
        let settings = json!({
            "command": "eval",
            "model": model_settings(&loaded),
            "data": { "dataset": kind.name(), "path": args.data.describe(), "split": args.data.split },
        });

        let header = ["index", "label", "prediction", "correct", "in_top5"];
        let journal_path = out.join(format!("{name}.predictions.csv"));
        let (mut journal, done) =
            Journal::open(&journal_path, &header, &settings, args.run.resume)?;
        let mut predictions = parse_predictions(&done)?;
        let finished: std::collections::HashSet<usize> =
            predictions.iter().map(|p| p.index).collect();
        let todo: Vec<usize> = (0..self.dataset.len())
            .filter(|i| !finished.contains(i))
            .collect();

        let bar = progress_bar(todo.len() as u64, "eval");
        let evaluation = evaluate(
            EvalRequest {
                model: &loaded.network,
                dataset: self.dataset,
                indices: &todo,
                batch_size: args.data.batch_size,
                keep_logits: args.logits.is_some(),
                device: &device,
                progress: &bar,
            },
            |batch| journal.append(&batch.iter().map(prediction_row).collect::<Vec<_>>()),
        )?;
        bar.finish_and_clear();
        let images_per_second = evaluation.images_per_second();
        predictions.extend(evaluation.predictions.iter().cloned());
        predictions.retain(|p| p.index < self.dataset.len());
        predictions.sort_by_key(|p| p.index);
        let accuracy = Accuracy::of(&predictions);

        let mut files = vec![journal_path];
        if let (Some(path), Some(logits)) = (&args.logits, &evaluation.logits) {
            let shape = [predictions.len(), loaded.network.spec().num_classes];
            report::NpyWriter::save(path, logits, &shape)?;
            files.push(path.clone());
        }
        let results = json!({
            "n": accuracy.n,
            "top1": accuracy.top1,
            "top5": accuracy.top5,
            "images_per_second": images_per_second,
            "resumed_samples": finished.len(),
        });
        let mut full = settings_with_run_context(&settings, args.data.batch_size, self.device);
        full["data"]["n"] = json!(accuracy.n);
        full["data"]["source"] = json!(self.dataset.source());
        let json_path = out.join(format!("{name}.json"));
        report::write_json(&json_path, &json!({ "settings": full, "results": results }))?;
        let csv_path = out.join(format!("{name}.csv"));
        report::write_csv(
            &csv_path,
            &[
                "model",
                "weights",
                "dataset",
                "data",
                "n",
                "top1",
                "top5",
                "images_per_second",
                "device",
            ],
            &[vec![
                loaded.network.spec().name(),
                loaded.weights.clone(),
                kind.name().into(),
                args.data.describe(),
                accuracy.n.to_string(),
                format!("{:.4}", accuracy.top1),
                format!("{:.4}", accuracy.top5),
                format!("{images_per_second:.1}"),
                self.device.to_string(),
            ]],
        )?;
        files.extend([json_path, csv_path]);
        Ok(EvalOutcome {
            accuracy,
            images_per_second,
            files,
        })
    }
}

fn prediction_row(p: &Prediction) -> Vec<String> {
    vec![
        p.index.to_string(),
        p.label.to_string(),
        p.predicted.to_string(),
        u8::from(p.correct()).to_string(),
        u8::from(p.in_top5).to_string(),
    ]
}

fn parse_predictions(rows: &[BTreeMap<String, String>]) -> Result<Vec<Prediction>> {
    rows.iter()
        .map(|row| {
            let field = |k: &str| -> Result<usize> {
                row[k].parse().map_err(|_| {
                    Error::input(format!(
                        "bad value '{}' in column {k} of the journal",
                        row[k]
                    ))
                })
            };
            Ok(Prediction {
                index: field("index")?,
                label: field("label")?,
                predicted: field("prediction")?,
                in_top5: field("in_top5")? == 1,
            })
        })
        .collect()
}
