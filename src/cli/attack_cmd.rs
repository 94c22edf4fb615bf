//! `robust-eval fgsm | pgd | apgd`: robust accuracy under attack, one pass per ε.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use attacks::{Apgd, Attack, Fgsm, Norm, Pgd};
use clap::Args;
use serde_json::{json, Value};

use crate::adversarial::{
    attack_dataset, parse_norm, AttackBackend, AttackRequest, AttackSummary, Budget, FrozenNetwork,
    SampleRecord, Targeting,
};
use crate::cli::common::{model_settings, settings_with_run_context, DataArgs, ModelArgs, RunArgs};
use crate::data::Dataset;
use crate::device::{dispatch, DeviceChoice, Job};
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::report::{self, progress_bar, Journal};

#[derive(Args, Clone, Debug)]
pub struct AttackArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Perturbation budget on the [0,1] scale, as a fraction or decimal; a comma-separated list
    /// gives an accuracy-vs-ε table. Default: 8/255 (linf), 0.5 (l2).
    #[arg(long)]
    pub eps: Option<String>,
    /// linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// Attempts per sample; later ones only on samples not yet broken (worst case kept).
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// none, random, least-likely or class:K.
    #[arg(long, default_value = "none")]
    pub targeted: String,
    /// Forward passes averaged per gradient (expectation over transformation).
    #[arg(long, default_value_t = 1)]
    pub eot: usize,
    /// Directory for the adversarial images (float32 .npy [N, 3, H, W], one file per ε).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Base name of the result files (default: <attack>-<model>-<dataset>).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Clone, Debug)]
pub struct FgsmArgs {
    #[command(flatten)]
    pub attack: AttackArgs,
}

#[derive(Args, Clone, Debug)]
pub struct PgdArgs {
    #[command(flatten)]
    pub attack: AttackArgs,
    /// Step size (default 2/255 for linf, ε/4 for l2).
    #[arg(long)]
    pub alpha: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Start from a uniformly random point of the ε-ball (the default).
    #[arg(long, overrides_with = "no_random_start")]
    pub random_start: bool,
    /// Start from the clean image.
    #[arg(long)]
    pub no_random_start: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ApgdArgs {
    #[command(flatten)]
    pub attack: AttackArgs,
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
}

/// An attack with its settings resolved.
#[derive(Clone, Debug)]
pub enum AttackSpec {
    Fgsm,
    Pgd {
        alpha: Option<Budget>,
        steps: usize,
        random_start: bool,
    },
    Apgd {
        steps: usize,
    },
}

impl AttackSpec {
    fn name(&self) -> &'static str {
        match self {
            Self::Fgsm => "fgsm",
            Self::Pgd { .. } => "pgd",
            Self::Apgd { .. } => "apgd",
        }
    }

    /// The step size used at this ε (PGD only).
    fn alpha_for(&self, eps: &Budget, norm: Norm) -> Option<Budget> {
        match self {
            Self::Pgd { alpha: Some(a), .. } => Some(a.clone()),
            Self::Pgd { alpha: None, .. } => Some(match norm {
                Norm::Linf => Budget {
                    text: "2/255".into(),
                    value: 2.0 / 255.0,
                },
                Norm::L2 => Budget {
                    text: format!("({})/4", eps.text),
                    value: eps.value / 4.0,
                },
            }),
            _ => None,
        }
    }

    fn settings(&self) -> Value {
        match self {
            Self::Fgsm => json!({}),
            Self::Pgd {
                alpha,
                steps,
                random_start,
            } => {
                json!({"alpha": alpha.as_ref().map(|a| a.text.clone()), "steps": steps, "random_start": random_start})
            }
            Self::Apgd { steps } => {
                json!({"steps": steps, "momentum": 0.75, "rho": 0.75, "initial_step": "2·eps"})
            }
        }
    }
}

impl FgsmArgs {
    pub fn into_parts(self) -> (AttackSpec, AttackArgs) {
        (AttackSpec::Fgsm, self.attack)
    }
}

impl PgdArgs {
    pub fn into_parts(self) -> Result<(AttackSpec, AttackArgs)> {
        let alpha = self
            .alpha
            .as_deref()
            .map(|a| Budget::parse(a, "--alpha"))
            .transpose()?;
        if alpha.as_ref().is_some_and(|a| a.value == 0.0) {
            return Err(Error::input("--alpha must be positive"));
        }
        Ok((
            AttackSpec::Pgd {
                alpha,
                steps: self.steps,
                random_start: !self.no_random_start,
            },
            self.attack,
        ))
    }
}

impl ApgdArgs {
    pub fn into_parts(self) -> (AttackSpec, AttackArgs) {
        (AttackSpec::Apgd { steps: self.steps }, self.attack)
    }
}

/// The results of one ε.
#[derive(Clone, Debug)]
pub struct EpsResult {
    pub eps: Budget,
    pub summary: AttackSummary,
    pub images_per_second: f64,
    pub zero_gradient_fraction: f64,
}

pub fn run(spec: AttackSpec, args: AttackArgs) -> Result<Vec<EpsResult>> {
    let device = args.run.device()?;
    let norm = parse_norm(&args.norm)?;
    let default_eps = match norm {
        Norm::Linf => "8/255",
        Norm::L2 => "0.5",
    };
    let budgets = Budget::parse_list(args.eps.as_deref().unwrap_or(default_eps), "--eps")?;
    let targeting: Targeting = args.targeted.parse()?;
    if args.restarts == 0 || args.eot == 0 {
        return Err(Error::input("--restarts and --eot must be at least 1"));
    }
    if let AttackSpec::Pgd { steps: 0, .. } | AttackSpec::Apgd { steps: 0 } = spec {
        return Err(Error::input("--steps must be at least 1"));
    }
    if args.export.is_some() && args.run.resume {
        return Err(Error::input("--export cannot be combined with --resume"));
    }
    let mut warnings = Vec::new();
    for eps in &budgets {
        if let Some(alpha) = spec.alpha_for(eps, norm) {
            if alpha.value > eps.value && eps.value > 0.0 {
                warnings.push(format!(
                    "α = {alpha} exceeds ε = {eps}: every step overshoots the ball and is projected back"
                ));
            }
        }
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let dataset = args.data.open()?;
    report::prepare_output_dir(&args.run.out_dir)?;
    if let Some(dir) = &args.export {
        report::prepare_output_dir(dir)?;
    }
    let job = AttackJob {
        spec: &spec,
        args: &args,
        norm,
        budgets: &budgets,
        targeting,
        dataset: dataset.as_ref(),
        device,
        warnings,
    };
    dispatch(device, job)
}

struct AttackJob<'a> {
    spec: &'a AttackSpec,
    args: &'a AttackArgs,
    norm: Norm,
    budgets: &'a [Budget],
    targeting: Targeting,
    dataset: &'a dyn Dataset,
    device: DeviceChoice,
    warnings: Vec<String>,
}

const HEADER: [&str; 12] = [
    "eps",
    "index",
    "label",
    "target",
    "clean_prediction",
    "adversarial_prediction",
    "success",
    "linf",
    "l2",
    "loss",
    "restarts",
    "correct",
];

impl Job for AttackJob<'_> {
    type Output = Vec<EpsResult>;

    fn run<B: ConvBackend>(mut self, device: B::Device) -> Result<Vec<EpsResult>> {
        let args = self.args;
        let kind = args.data.kind()?;
        let loaded = args.model.load::<AttackBackend<B>>(kind, &device)?;
        let model_json = model_settings(&loaded);
        let model_name = loaded.network.spec().name();
        let model = FrozenNetwork::new(loaded.network);
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{}", self.spec.name(), model_name, kind.name()));
        let out = &args.run.out_dir;
        let settings = json!({
            "command": self.spec.name(),
            "model": model_json,
            "data": {"dataset": kind.name(), "path": args.data.describe(), "split": args.data.split},
            "attack": {
                "name": self.spec.name(), "norm": self.norm.to_string(),
                "eps": self.budgets.iter().map(|b| b.text.clone()).collect::<Vec<_>>(),
                "restarts": args.restarts, "targeted": self.targeting.to_string(), "eot": args.eot,
                "seed": args.model.seed, "details": self.spec.settings(),
            },
        });
        let journal_path = out.join(format!("{name}.samples.csv"));
        let (mut journal, done) =
            Journal::open(&journal_path, &HEADER, &settings, args.run.resume)?;
        let previous = parse_records(&done)?;

        println!(
            "{} ({}) on {} — {} images of {}",
            self.spec.name(),
            self.norm,
            model_name,
            self.dataset.len(),
            self.dataset.source()
        );
        println!(
            "{:>10} {:>9} {:>9} {:>9} {:>10}",
            "eps", "clean", "robust", "success", "images/s"
        );
        let mut results = Vec::new();
        for (position, eps) in self.budgets.iter().enumerate() {
            let mut records: Vec<SampleRecord> =
                previous.get(&eps.text).cloned().unwrap_or_default();
            let finished: HashSet<usize> = records.iter().map(|r| r.index).collect();
            let todo: Vec<usize> = (0..self.dataset.len())
                .filter(|i| !finished.contains(i))
                .collect();
            let mut exporter = self.exporter(position, eps)?;
            let bar = progress_bar(todo.len() as u64, &format!("ε={eps}"));
            let start = Instant::now();
            let (mut zero, mut attacked) = (0, 0);
            let request = AttackRequest {
                dataset: self.dataset,
                indices: &todo,
                batch_size: args.data.batch_size,
                restarts: args.restarts,
                targeting: self.targeting,
                seed: args.model.seed,
                progress: &bar,
            };
            let on_batch = |batch: crate::adversarial::BatchResult| {
                journal.append(
                    &batch
                        .records
                        .iter()
                        .map(|r| record_row(&eps.text, r))
                        .collect::<Vec<_>>(),
                )?;
                if let Some(writer) = exporter.as_mut() {
                    writer.write(&batch.adversarial)?;
                }
                zero += batch.zero_gradients;
                attacked += batch.attacked;
                records.extend(batch.records);
                Ok(())
            };
            self.attack_with(eps, &model, request, &device, on_batch)?;
            bar.finish_and_clear();
            let seconds = start.elapsed().as_secs_f64();
            if let Some(writer) = exporter {
                writer.finish()?;
            }
            records.retain(|r| r.index < self.dataset.len());
            records.sort_by_key(|r| r.index);
            let zero_fraction = if attacked == 0 {
                0.0
            } else {
                zero as f64 / attacked as f64
            };
            if zero_fraction > 0.1 {
                let w = format!(
                    "ε = {eps}: the input gradient was exactly zero for {:.0} % of the attacked samples — \
                     possible gradient masking; robust accuracy may be overestimated",
                    100.0 * zero_fraction
                );
                eprintln!("warning: {w}");
                self.warnings.push(w);
            }
            let summary = AttackSummary::of(&records);
            let rate = todo.len() as f64 / seconds.max(1e-9);
            println!(
                "{:>10} {:>8.2}% {:>8.2}% {:>8.2}% {:>10.1}",
                eps.text,
                100.0 * summary.clean_accuracy,
                100.0 * summary.robust_accuracy,
                100.0 * summary.success_rate,
                rate
            );
            results.push(EpsResult {
                eps: eps.clone(),
                summary,
                images_per_second: rate,
                zero_gradient_fraction: zero_fraction,
            });
        }
        self.write_reports(
            &name,
            &settings,
            &results,
            &model_name,
            &loaded_weights(&settings),
        )?;
        Ok(results)
    }
}

fn loaded_weights(settings: &Value) -> String {
    settings["model"]["weights"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl AttackJob<'_> {
    fn attack_with<B: ConvBackend>(
        &self,
        eps: &Budget,
        model: &FrozenNetwork<AttackBackend<B>>,
        request: AttackRequest<'_>,
        device: &B::Device,
        on_batch: impl FnMut(crate::adversarial::BatchResult) -> Result<()>,
    ) -> Result<()> {
        let eot = self.args.eot;
        match self.spec {
            AttackSpec::Fgsm => {
                let attack = Fgsm {
                    eps: eps.value,
                    norm: self.norm,
                    eot,
                };
                run_pass(&attack, model, request, device, on_batch)
            }
            AttackSpec::Pgd {
                steps,
                random_start,
                ..
            } => {
                let alpha = self
                    .spec
                    .alpha_for(eps, self.norm)
                    .expect("PGD has a step size");
                let attack = Pgd {
                    eps: eps.value,
                    alpha: alpha.value,
                    steps: *steps,
                    norm: self.norm,
                    random_start: *random_start,
                    eot,
                };
                run_pass(&attack, model, request, device, on_batch)
            }
            AttackSpec::Apgd { steps } => {
                let mut attack = Apgd::new(eps.value, self.norm);
                attack.steps = *steps;
                attack.eot = eot;
                run_pass(&attack, model, request, device, on_batch)
            }
        }
    }

    fn exporter(&self, position: usize, eps: &Budget) -> Result<Option<report::NpyWriter<f32>>> {
        let Some(dir) = &self.args.export else {
            return Ok(None);
        };
        let [c, h, w] = self.dataset.image_shape();
        let path = dir.join(format!("adversarial-eps{position}.npy"));
        let _ = eps;
        report::NpyWriter::create(&path, &[self.dataset.len(), c, h, w]).map(Some)
    }

    fn write_reports(
        &self,
        name: &str,
        settings: &Value,
        results: &[EpsResult],
        model_name: &str,
        weights: &str,
    ) -> Result<()> {
        let out = &self.args.run.out_dir;
        let full = settings_with_run_context(settings, self.args.data.batch_size, self.device);
        let alpha_text = |eps: &Budget| {
            self.spec
                .alpha_for(eps, self.norm)
                .map(|a| a.text)
                .unwrap_or_default()
        };
        let json_results: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({
                    "eps": r.eps.text, "eps_value": r.eps.value, "alpha": alpha_text(&r.eps),
                    "summary": r.summary, "images_per_second": r.images_per_second,
                    "zero_gradient_fraction": r.zero_gradient_fraction,
                })
            })
            .collect();
        report::write_json(
            &out.join(format!("{name}.json")),
            &json!({"settings": full, "results": json_results, "warnings": self.warnings}),
        )?;
        let steps = match self.spec {
            AttackSpec::Fgsm => 1,
            AttackSpec::Pgd { steps, .. } | AttackSpec::Apgd { steps } => *steps,
        };
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    model_name.to_string(),
                    weights.to_string(),
                    self.spec.name().into(),
                    self.norm.to_string(),
                    r.eps.text.clone(),
                    format!("{:.8}", r.eps.value),
                    alpha_text(&r.eps),
                    steps.to_string(),
                    self.args.restarts.to_string(),
                    self.targeting.to_string(),
                    r.summary.n.to_string(),
                    format!("{:.4}", r.summary.clean_accuracy),
                    format!("{:.4}", r.summary.robust_accuracy),
                    format!("{:.4}", r.summary.success_rate),
                    format!("{:.6}", r.summary.mean_linf),
                    format!("{:.6}", r.summary.mean_l2),
                    format!("{:.1}", r.images_per_second),
                    self.args.model.seed.to_string(),
                    self.device.to_string(),
                ]
            })
            .collect();
        report::write_csv(
            &out.join(format!("{name}.csv")),
            &[
                "model",
                "weights",
                "attack",
                "norm",
                "eps",
                "eps_value",
                "alpha",
                "steps",
                "restarts",
                "targeted",
                "n",
                "clean_accuracy",
                "robust_accuracy",
                "success_rate",
                "mean_linf",
                "mean_l2",
                "images_per_second",
                "seed",
                "device",
            ],
            &rows,
        )
    }
}

fn run_pass<B: ConvBackend, A: Attack<AttackBackend<B>>>(
    attack: &A,
    model: &FrozenNetwork<AttackBackend<B>>,
    request: AttackRequest<'_>,
    device: &B::Device,
    on_batch: impl FnMut(crate::adversarial::BatchResult) -> Result<()>,
) -> Result<()> {
    attack_dataset(attack, model, request, device, on_batch)
}

fn record_row(eps: &str, r: &SampleRecord) -> Vec<String> {
    vec![
        eps.to_string(),
        r.index.to_string(),
        r.label.to_string(),
        r.target.map(|t| t.to_string()).unwrap_or_default(),
        r.clean_prediction.to_string(),
        r.adversarial_prediction.to_string(),
        u8::from(r.success).to_string(),
        // Shortest representations that read back to the same f32: resumed runs add up identically.
        r.linf.to_string(),
        r.l2.to_string(),
        r.loss.to_string(),
        r.restarts.to_string(),
        u8::from(r.robust_correct()).to_string(),
    ]
}

fn parse_records(rows: &[BTreeMap<String, String>]) -> Result<BTreeMap<String, Vec<SampleRecord>>> {
    let mut by_eps: BTreeMap<String, Vec<SampleRecord>> = BTreeMap::new();
    for row in rows {
        let bad = |k: &str| {
            Error::input(format!(
                "bad value '{}' in column {k} of the journal",
                row[k]
            ))
        };
        let int = |k: &str| row[k].parse::<usize>().map_err(|_| bad(k));
        let float = |k: &str| row[k].parse::<f32>().map_err(|_| bad(k));
        let record = SampleRecord {
            index: int("index")?,
            label: int("label")?,
            target: if row["target"].is_empty() {
                None
            } else {
                Some(int("target")?)
            },
            clean_prediction: int("clean_prediction")?,
            adversarial_prediction: int("adversarial_prediction")?,
            success: int("success")? == 1,
            linf: float("linf")?,
            l2: float("l2")?,
            loss: float("loss")?,
            restarts: int("restarts")?,
        };
        by_eps.entry(row["eps"].clone()).or_default().push(record);
    }
    Ok(by_eps)
}
