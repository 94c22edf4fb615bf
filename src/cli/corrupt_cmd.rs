//! `robust-eval corrupt`: accuracy under the 19 corruptions × 5 severities, mean over severities,
//! over the 15 benchmark corruptions and all 19, mCE for ImageNet; or export of the sets.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use corruptions::metrics::{corruption_error, relative_corruption_error};
use corruptions::{Corruption, Preset};
use serde::Serialize;
use serde_json::json;

use crate::cli::common::{model_settings, settings_with_run_context, DataArgs, ModelArgs, RunArgs};
use crate::corrupted::{premade_cifar, premade_imagenet, CorruptedSet, Exporter};
use crate::data::{Batch, Dataset, DatasetKind};
use crate::device::{dispatch, DeviceChoice, Job};
use crate::error::{Error, Result};
use crate::eval::{evaluate, predictions_from_logits, Accuracy, EvalRequest, Prediction};
use crate::kernels::ConvBackend;
use crate::models::Network;
use crate::report::{self, progress_bar, Journal};

#[derive(Args, Clone, Debug)]
pub struct CorruptArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// 1–5, a comma-separated list, or all.
    #[arg(long, default_value = "all")]
    pub severity: String,
    /// all, benchmark (the 15 of mCE), noise, blur, weather, digital, or names separated by commas.
    #[arg(long, default_value = "all")]
    pub corruptions: String,
    /// Parameter table: cifar (CIFAR-10-C, 32×32) or imagenet (ImageNet-C). Default: by --dataset.
    #[arg(long)]
    pub preset: Option<String>,
    /// Evaluate pre-made sets instead: a CIFAR-10-C / CIFAR-100-C directory (<corruption>.npy and
    /// labels.npy) or an ImageNet-C directory (<corruption>/<severity>/<wnid>/<image>).
    #[arg(long, conflicts_with = "export")]
    pub from: Option<PathBuf>,
    /// Also write the corrupted sets in those layouts (npy for CIFAR, JPEG quality 85 for ImageNet).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// With --export: only write the sets, evaluate nothing.
    #[arg(long, requires = "export")]
    pub export_only: bool,
    /// Base name of the result files (default: corrupt-<model>-<dataset>).
    #[arg(long)]
    pub name: Option<String>,
}

/// Accuracy at one (corruption, severity).
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub corruption: String,
    pub severity: u8,
    pub n: usize,
    pub accuracy: f64,
}

/// Everything `corrupt` measured.
#[derive(Clone, Debug, Serialize)]
pub struct CorruptionReport {
    pub clean_accuracy: Option<f64>,
    pub cells: Vec<Cell>,
    /// Mean accuracy over the evaluated severities, per corruption.
    pub per_corruption: BTreeMap<String, f64>,
    /// Mean over the 15 benchmark corruptions (when all were evaluated).
    pub mean_benchmark: Option<f64>,
    /// Mean over all 19 (when all were evaluated).
    pub mean_all: Option<f64>,
    /// ImageNet only: mean corruption error against AlexNet, ×100, and its relative version.
    pub mce: Option<f64>,
    pub relative_mce: Option<f64>,
    pub images_per_second: f64,
}

pub fn parse_severities(text: &str) -> Result<Vec<u8>> {
    if text == "all" {
        return Ok(vec![1, 2, 3, 4, 5]);
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let s: u8 = part.trim().parse().map_err(|_| {
            Error::input(format!(
                "--severity '{part}' is not a number (expected 1–5 or all)"
            ))
        })?;
        if !(1..=5).contains(&s) {
            return Err(Error::input(format!("--severity {s} is outside 1–5")));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(args: CorruptArgs) -> Result<CorruptionReport> {
    let device = args.run.device()?;
    let kind = args.data.kind()?;
    let severities = parse_severities(&args.severity)?;
    let selection =
        Corruption::parse_selection(&args.corruptions).map_err(|e| Error::input(e.to_string()))?;
    let preset = match &args.preset {
        Some(p) => p.parse().map_err(Error::input)?,
        None if kind == DatasetKind::Imagenet => Preset::Imagenet,
        None => Preset::Cifar,
    };
    let dataset = match &args.from {
        Some(_) => None,
        None => Some(args.data.open()?),
    };
    report::prepare_output_dir(&args.run.out_dir)?;
    let exporter = match &args.export {
        Some(dir) => Some(Exporter::new(dir, preset)?),
        None => None,
    };
    if let Some(set) = &dataset {
        let probe = set.image_shape();
        let image =
            corruptions::RgbImage::new(probe[2], probe[1], vec![0; probe[1] * probe[2] * 3])
                .map_err(|e| Error::input(e.to_string()))?;
        for c in &selection {
            preset
                .check_size(&image, *c)
                .map_err(|e| Error::input(format!("{}: {e}", set.source())))?;
        }
    }
    let job = CorruptJob {
        args: &args,
        kind,
        preset,
        severities,
        selection,
        dataset: dataset.as_deref(),
        exporter,
        device,
    };
    let report = dispatch(device, job)?;
    print_report(&report, &args);
    Ok(report)
}

struct CorruptJob<'a> {
    args: &'a CorruptArgs,
    kind: DatasetKind,
    preset: Preset,
    severities: Vec<u8>,
    selection: Vec<Corruption>,
    dataset: Option<&'a dyn Dataset>,
    exporter: Option<Exporter>,
    device: DeviceChoice,
}

const HEADER: [&str; 6] = [
    "corruption",
    "severity",
    "index",
    "label",
    "prediction",
    "correct",
];

impl Job for CorruptJob<'_> {
    type Output = CorruptionReport;

    fn run<B: ConvBackend>(mut self, device: B::Device) -> Result<CorruptionReport> {
        let args = self.args;
        let evaluate_model = !args.export_only;
        let loaded = args.model.load::<B>(self.kind, &device)?;
        let name = args.name.clone().unwrap_or_else(|| {
            format!(
                "corrupt-{}-{}",
                loaded.network.spec().name(),
                self.kind.name()
            )
        });
        let settings = json!({
            "command": "corrupt",
            "model": model_settings(&loaded),
            "data": {"dataset": self.kind.name(), "path": args.data.describe(), "from": args.from},
            "preset": format!("{:?}", self.preset).to_lowercase(),
            "severities": self.severities,
            "corruptions": self.selection.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "seed": args.model.seed,
        });
        let out = &args.run.out_dir;
        let journal_path = out.join(format!("{name}.samples.csv"));
        let (mut journal, done) =
            Journal::open(&journal_path, &HEADER, &settings, args.run.resume)?;
        let mut previous: BTreeMap<(String, u8), Vec<Prediction>> = BTreeMap::new();
        for row in &done {
            let parse = |k: &str| {
                row[k]
                    .parse::<usize>()
                    .map_err(|_| Error::input(format!("bad journal value in {k}")))
            };
            previous
                .entry((
                    row["corruption"].clone(),
                    row["severity"].parse().unwrap_or(0),
                ))
                .or_default()
                .push(Prediction {
                    index: parse("index")?,
                    label: parse("label")?,
                    predicted: parse("prediction")?,
                    in_top5: false,
                });
        }
        let start = Instant::now();
        let mut images = 0usize;
        let mut results: BTreeMap<(String, u8), Accuracy> = BTreeMap::new();

        let mut conditions: Vec<(Option<Corruption>, u8)> = Vec::new();
        if self.dataset.is_some() && evaluate_model {
            conditions.push((None, 0));
        }
        for c in &self.selection {
            for &s in &self.severities {
                conditions.push((Some(*c), s));
            }
        }
        for (position, (corruption, severity)) in conditions.iter().enumerate() {
            let label = corruption.map_or("clean".to_string(), |c| c.name().to_string());
            let owned: Box<dyn Dataset + '_> = match (corruption, &args.from, self.dataset) {
                (None, _, Some(set)) => Box::new(Borrowed(set)),
                (Some(c), Some(dir), _) => self.premade(dir, *c, *severity)?,
                (Some(c), None, Some(set)) => Box::new(CorruptedSet {
                    inner: set,
                    corruption: *c,
                    severity: *severity,
                    preset: self.preset,
                    seed: args.model.seed,
                }),
                _ => unreachable!("either --from or a data set"),
            };
            let set = owned.as_ref();
            let mut predictions = previous
                .remove(&(label.clone(), *severity))
                .unwrap_or_default();
            let finished: HashSet<usize> = predictions.iter().map(|p| p.index).collect();
            let todo: Vec<usize> = (0..set.len()).filter(|i| !finished.contains(i)).collect();
            let bar = progress_bar(
                todo.len() as u64,
                &format!("{}/{} {label} s{severity}", position + 1, conditions.len()),
            );
            let mut record = |batch: &[Prediction]| {
                journal.append(
                    &batch
                        .iter()
                        .map(|p| row(&label, *severity, p))
                        .collect::<Vec<_>>(),
                )
            };
            let new = match (&mut self.exporter, corruption) {
                (Some(exporter), Some(c)) if args.from.is_none() => {
                    let corrupted = CorruptedSet {
                        inner: self.dataset.expect("data"),
                        corruption: *c,
                        severity: *severity,
                        preset: self.preset,
                        seed: args.model.seed,
                    };
                    export_and_evaluate(
                        &corrupted,
                        exporter,
                        evaluate_model.then_some(&loaded.network),
                        &todo,
                        args.data.batch_size,
                        &device,
                        &bar,
                        &mut record,
                    )?
                }
                _ => {
                    evaluate(
                        EvalRequest {
                            model: &loaded.network,
                            dataset: set,
                            indices: &todo,
                            batch_size: args.data.batch_size,
                            keep_logits: false,
                            device: &device,
                            progress: &bar,
                        },
                        &mut record,
                    )?
                    .predictions
                }
            };
            bar.finish_and_clear();
            images += new.len();
            predictions.extend(new);
            if let (Some(exporter), Some(c)) = (&mut self.exporter, corruption) {
                if severity == self.severities.last().expect("a severity") {
                    exporter.finish_corruption(*c)?;
                }
            }
            if evaluate_model {
                predictions.retain(|p| p.index < set.len());
                results.insert((label, *severity), Accuracy::of(&predictions));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let report = summarize(
            &results,
            &self.selection,
            &self.severities,
            self.kind,
            self.preset,
            images as f64 / seconds.max(1e-9),
        );
        if evaluate_model {
            self.write_reports(&name, &settings, &report)?;
        }
        Ok(report)
    }
}

impl CorruptJob<'_> {
    fn premade(&self, dir: &std::path::Path, c: Corruption, s: u8) -> Result<Box<dyn Dataset>> {
        Ok(match self.kind {
            DatasetKind::Imagenet => Box::new(premade_imagenet(dir, c, s)?),
            kind => Box::new(premade_cifar(
                dir,
                c,
                s,
                kind.num_classes(),
                self.args.data.limit,
            )?),
        })
    }

    fn write_reports(
        &self,
        name: &str,
        settings: &serde_json::Value,
        report: &CorruptionReport,
    ) -> Result<()> {
        let out = &self.args.run.out_dir;
        let full = settings_with_run_context(settings, self.args.data.batch_size, self.device);
        report::write_json(
            &out.join(format!("{name}.json")),
            &json!({"settings": full, "results": report}),
        )?;
        let mut rows: Vec<Vec<String>> = report
            .cells
            .iter()
            .map(|c| {
                vec![
                    c.corruption.clone(),
                    c.severity.to_string(),
                    c.n.to_string(),
                    format!("{:.4}", c.accuracy),
                    format!("{:.4}", 1.0 - c.accuracy),
                ]
            })
            .collect();
        if let Some(clean) = report.clean_accuracy {
            rows.insert(
                0,
                vec![
                    "clean".into(),
                    "0".into(),
                    String::new(),
                    format!("{clean:.4}"),
                    format!("{:.4}", 1.0 - clean),
                ],
            );
        }
        report::write_csv(
            &out.join(format!("{name}.csv")),
            &["corruption", "severity", "n", "accuracy", "error"],
            &rows,
        )
    }
}

/// Corrupts the images once, exports them, and evaluates the model on the same images.
#[allow(clippy::too_many_arguments)]
fn export_and_evaluate<B: ConvBackend>(
    set: &CorruptedSet<'_>,
    exporter: &mut Exporter,
    model: Option<&Network<B>>,
    indices: &[usize],
    batch_size: usize,
    device: &B::Device,
    bar: &indicatif::ProgressBar,
    record: &mut dyn FnMut(&[Prediction]) -> Result<()>,
) -> Result<Vec<Prediction>> {
    let mut predictions = Vec::new();
    let names = |i: usize| set.inner.item_name(i);
    for chunk in indices.chunks(batch_size.max(1)) {
        let images = set.images(chunk)?;
        exporter.add(set, chunk, &images, &names)?;
        if let Some(model) = model {
            let [c, h, w] = set.image_shape();
            let batch = Batch {
                pixels: images
                    .iter()
                    .flat_map(|i| i.to_planes())
                    .map(|v| v as f32 / 255.0)
                    .collect(),
                shape: [chunk.len(), c, h, w],
                labels: chunk.iter().map(|&i| set.label(i)).collect(),
                indices: chunk.to_vec(),
            };
            let found = predictions_from_logits(model.forward(batch.images::<B>(device)), &batch);
            record(&found)?;
            predictions.extend(found);
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(predictions)
}

fn row(label: &str, severity: u8, p: &Prediction) -> Vec<String> {
    vec![
        label.to_string(),
        severity.to_string(),
        p.index.to_string(),
        p.label.to_string(),
        p.predicted.to_string(),
        u8::from(p.correct()).to_string(),
    ]
}

fn summarize(
    results: &BTreeMap<(String, u8), Accuracy>,
    selection: &[Corruption],
    severities: &[u8],
    kind: DatasetKind,
    preset: Preset,
    images_per_second: f64,
) -> CorruptionReport {
    let clean_accuracy = results.get(&("clean".to_string(), 0)).map(|a| a.top1);
    let mut cells = Vec::new();
    let mut per_corruption = BTreeMap::new();
    let mut ce = Vec::new();
    let mut relative = Vec::new();
    for c in selection {
        let accs: Vec<(u8, f64, usize)> = severities
            .iter()
            .filter_map(|&s| {
                results
                    .get(&(c.name().to_string(), s))
                    .map(|a| (s, a.top1, a.n))
            })
            .collect();
        if accs.is_empty() {
            continue;
        }
        for (s, acc, n) in &accs {
            cells.push(Cell {
                corruption: c.name().to_string(),
                severity: *s,
                n: *n,
                accuracy: *acc,
            });
        }
        per_corruption.insert(
            c.name().to_string(),
            accs.iter().map(|a| a.1).sum::<f64>() / accs.len() as f64,
        );
        if Corruption::benchmark().contains(c) {
            let errors: Vec<(u8, f64)> = accs.iter().map(|(s, a, _)| (*s, 1.0 - a)).collect();
            ce.push(corruption_error(*c, &errors));
            if let Some(clean) = clean_accuracy {
                relative.push(relative_corruption_error(*c, &errors, 1.0 - clean));
            }
        }
    }
    let mean_over = |set: &[Corruption]| -> Option<f64> {
        let values: Option<Vec<f64>> = set
            .iter()
            .map(|c| per_corruption.get(c.name()).copied())
            .collect();
        values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    let imagenet = kind == DatasetKind::Imagenet && preset == Preset::Imagenet;
    let all_benchmark = ce.len() == 15 && severities.len() == 5;
    CorruptionReport {
        clean_accuracy,
        mean_benchmark: mean_over(Corruption::benchmark()),
        mean_all: mean_over(&Corruption::ALL),
        mce: (imagenet && all_benchmark).then(|| 100.0 * ce.iter().sum::<f64>() / 15.0),
        relative_mce: (imagenet && all_benchmark && relative.len() == 15)
            .then(|| 100.0 * relative.iter().sum::<f64>() / 15.0),
        cells,
        per_corruption,
        images_per_second,
    }
}

fn print_report(report: &CorruptionReport, args: &CorruptArgs) {
    if args.export_only {
        println!(
            "wrote {}",
            args.export
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return;
    }
    if let Some(clean) = report.clean_accuracy {
        println!("clean accuracy {:.2} %", 100.0 * clean);
    }
    println!(
        "{:<18} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "accuracy %", "s1", "s2", "s3", "s4", "s5", "mean"
    );
    for (name, mean) in &report.per_corruption {
        let mut line = format!("{name:<18}");
        for s in 1..=5u8 {
            match report
                .cells
                .iter()
                .find(|c| &c.corruption == name && c.severity == s)
            {
                Some(cell) => line.push_str(&format!(" {:>7.2}", 100.0 * cell.accuracy)),
                None => line.push_str(&format!(" {:>7}", "-")),
            }
        }
        println!("{line} {:>7.2}", 100.0 * mean);
    }
    if let Some(m) = report.mean_benchmark {
        println!("mean over the 15 benchmark corruptions: {:.2} %", 100.0 * m);
    }
    if let Some(m) = report.mean_all {
        println!("mean over all 19: {:.2} %", 100.0 * m);
    }
    if let (Some(mce), Some(rel)) = (report.mce, report.relative_mce) {
        println!("mCE {mce:.2}, relative mCE {rel:.2} (AlexNet = 100)");
    }
    println!(
        "{:.1} images/s (corruption + inference)",
        report.images_per_second
    );
}

/// A borrowed data set as a boxed one.
struct Borrowed<'a>(&'a dyn Dataset);

impl Dataset for Borrowed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn image_shape(&self) -> [usize; 3] {
        self.0.image_shape()
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
    fn label(&self, index: usize) -> usize {
        self.0.label(index)
    }
    fn load_u8(&self, indices: &[usize]) -> Result<Vec<u8>> {
        self.0.load_u8(indices)
    }
    fn source(&self) -> String {
        self.0.source()
    }
}
