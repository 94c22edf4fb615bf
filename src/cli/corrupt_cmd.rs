//! `robust-eval corrupt`: accuracy under the 19 corruptions × 5 severities, mean over severities,
//! over the 15 benchmark corruptions and all 19, mCE for ImageNet; or export of the sets.

use std::path::PathBuf;

use clap::Args;
use corruptions::{Corruption, Preset};

use crate::cli::common::{single_model_plan, DataArgs, ModelArgs, RunArgs};
use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::evaluate::aggregate::model_corruption_report;
use crate::evaluate::condition::corruption_conditions;
use crate::evaluate::{run as run_plan, Condition, CorruptionSource};

pub use crate::evaluate::aggregate::CorruptionReport;

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
    /// Put the results in <out-dir>/<name>/ instead of <out-dir>/.
    #[arg(long)]
    pub name: Option<String>,
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
    let kind: DatasetKind = args.data.dataset.parse()?;
    let severities = parse_severities(&args.severity)?;
    let selection =
        Corruption::parse_selection(&args.corruptions).map_err(|e| Error::input(e.to_string()))?;
    let preset = match &args.preset {
        Some(p) => p.parse().map_err(Error::input)?,
        None if kind == DatasetKind::Imagenet => Preset::Imagenet,
        None => Preset::Cifar,
    };
    if args.from.is_none() && (preset == Preset::Imagenet) != (kind == DatasetKind::Imagenet) {
        eprintln!(
            "warning: the {} preset is tuned for {} images but the data are {}: its severities do \
             not mean what they mean in the published sets",
            args.preset.as_deref().unwrap_or_default(),
            if preset == Preset::Imagenet {
                "224×224 ImageNet"
            } else {
                "32×32 CIFAR"
            },
            kind.name()
        );
    }
    let mut plan = single_model_plan(
        "corrupt",
        &args.model,
        &args.data,
        &args.run,
        args.name.as_deref(),
    )?;
    let source = match &args.from {
        Some(dir) => CorruptionSource::Premade(dir.clone()),
        None => CorruptionSource::OnTheFly(preset),
    };
    plan.conditions = corruption_conditions(&selection, &severities, &source);
    if args.from.is_none() && !args.export_only {
        plan.conditions.insert(0, Condition::Clean);
    }
    if args.export_only {
        plan.models.clear();
    }
    plan.exports.corrupted = args.export.clone().map(|dir| (dir, preset));
    let outcome = run_plan(&plan, &mut |_| {})?;
    let rate = outcome.computed_images as f64 / outcome.seconds.max(1e-9);
    let report = model_corruption_report(&plan, &outcome.cells, 0, rate);
    print_report(&report, &args, &outcome.files);
    Ok(report)
}

fn print_report(report: &CorruptionReport, args: &CorruptArgs, files: &[PathBuf]) {
    if args.export_only {
        if let Some(dir) = &args.export {
            println!("wrote {}", dir.display());
        }
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
    for file in files {
        println!("wrote {}", file.display());
    }
}
