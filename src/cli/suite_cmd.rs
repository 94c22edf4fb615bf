//! `robust-eval suite run | list | merge`: benchmark suites comparing models side by side.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::{Error, Result};
use crate::evaluate::aggregate::{model_corruption_report, CorruptionReport};
use crate::evaluate::{run as run_plan, CellOutcome, Plan};
use crate::suite::merge::merge;
use crate::suite::shard::parse_shard;
use crate::suite::{Extension, Overrides, Suite, PRESETS};

#[derive(Subcommand, Debug)]
pub enum SuiteCommand {
    /// Run a suite (a preset or a TOML file); finished cells in --out-dir are reused.
    Run(Box<SuiteRunArgs>),
    /// List the presets.
    List,
    /// Join the output directories of `suite run --shard` into one results directory.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct SuiteRunArgs {
    /// A preset (see `suite list`) or a suite file (.toml).
    pub suite: String,
    /// Default: results/suite-<name> (with --shard: results/suite-<name>-shard-I-of-N).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Run part I of N (1-based), or `auto` from Slurm / Kubernetes Indexed Job variables.
    #[arg(long)]
    pub shard: Option<String>,
    /// With --shard auto on Kubernetes: the number of completions (shards).
    #[arg(long)]
    pub shards: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Data path instead of the suite's (e.g. for the cifar100 and imagenet presets).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Label file of a flat ImageNet validation folder (see `eval --labels`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Weights for a model of the suite: LABEL=PATH (repeatable).
    #[arg(long = "checkpoint", value_name = "LABEL=PATH")]
    pub checkpoints: Vec<String>,
    /// Add a model to the suite: LABEL=ARCH (repeatable; e.g. Standard=wrn-28-10 with
    /// --checkpoint Standard=Standard.pt).
    #[arg(long = "model", value_name = "LABEL=ARCH")]
    pub models: Vec<String>,
    /// Normalisation of a model of the suite: LABEL=SPEC, SPEC as `eval --normalize` takes it
    /// (repeatable).
    #[arg(long = "normalize", value_name = "LABEL=SPEC")]
    pub normalize: Vec<String>,
    /// A pre-made CIFAR-10-C / ImageNet-C directory for the suite's corruptions.
    #[arg(long)]
    pub data_c: Option<PathBuf>,
    /// Recompute every cell of the suite.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' output directories.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn run(command: SuiteCommand) -> Result<()> {
    match command {
        SuiteCommand::List => {
            for (name, text) in PRESETS {
                let suite = Suite::parse(text, name, std::path::Path::new("."))?;
                println!("{name:<20} {}", suite.file.description);
            }
            Ok(())
        }
        SuiteCommand::Merge(args) => {
            for file in merge(&args.dirs, &args.out_dir)? {
                println!("wrote {}", file.display());
            }
            Ok(())
        }
        SuiteCommand::Run(args) => run_suite(&args).map(|_| ()),
    }
}

/// Builds the plan of `suite run` (exposed for tests).
pub fn suite_plan(args: &SuiteRunArgs) -> Result<Plan> {
    let pairs = |flag: &str, items: &[String]| -> Result<Vec<(String, String)>> {
        items
            .iter()
            .map(|text| {
                text.split_once('=')
                    .filter(|(l, v)| !l.is_empty() && !v.is_empty())
                    .map(|(l, v)| (l.to_string(), v.to_string()))
                    .ok_or_else(|| Error::input(format!("--{flag} '{text}': expected LABEL=VALUE")))
            })
            .collect()
    };
    let suite = Suite::load(&args.suite)?.extended(&Extension {
        models: pairs("model", &args.models)?,
        normalize: pairs("normalize", &args.normalize)?,
        data_c: args.data_c.clone(),
    })?;
    let overrides = Overrides {
        data: args.data.clone(),
        labels: args.labels.clone(),
        limit: args.limit,
        batch_size: args.batch_size,
        checkpoints: args
            .checkpoints
            .iter()
            .map(|c| parse_checkpoint(c))
            .collect::<Result<_>>()?,
    };
    let mut plan = suite.plan(&overrides)?;
    plan.device = args.device.parse()?;
    plan.fresh = args.fresh;
    plan.shard = args
        .shard
        .as_deref()
        .map(|s| parse_shard(s, args.shards, &|k| std::env::var(k).ok()))
        .transpose()?;
    plan.out_dir = args.out_dir.clone().unwrap_or_else(|| {
        let name = &suite.file.name;
        PathBuf::from("results").join(match plan.shard {
            Some(s) => format!("suite-{name}-shard-{}-of-{}", s.index, s.count),
            None => format!("suite-{name}"),
        })
    });
    Ok(plan)
}

fn parse_checkpoint(text: &str) -> Result<(String, PathBuf)> {
    text.split_once('=')
        .map(|(l, p)| (l.to_string(), PathBuf::from(p)))
        .ok_or_else(|| Error::input(format!("--checkpoint '{text}': expected LABEL=PATH")))
}

pub fn run_suite(args: &SuiteRunArgs) -> Result<Vec<CellOutcome>> {
    let plan = suite_plan(args)?;
    let start = std::time::Instant::now();
    let outcome = run_plan(&plan, &mut |cell| {
        for w in &cell.result.warnings {
            eprintln!("warning: {}: {w}", cell.key);
        }
    })?;
    if let Some(shard) = plan.shard {
        println!(
            "shard {shard}: {} images computed in {:.1} s; join the shards with `robust-eval suite merge`",
            outcome.computed_images,
            outcome.seconds
        );
    } else {
        print_side_by_side(&plan, &outcome.cells);
        println!(
            "{} cells ({} reused), {} images computed, {:.1} s",
            outcome.cells.len(),
            outcome.reused_cells,
            outcome.computed_images,
            start.elapsed().as_secs_f64()
        );
    }
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(outcome.cells)
}

/// One row per condition, one column per model (accuracy, or robust accuracy under attack),
/// then the corruption means (and mCE on ImageNet).
pub fn print_side_by_side(plan: &Plan, cells: &[CellOutcome]) {
    let labels: Vec<&str> = plan.models.iter().map(|m| m.label.as_str()).collect();
    let width = labels.iter().map(|l| l.len()).max().unwrap_or(8).max(9);
    let mut header = format!("{:<26}", "accuracy %");
    for l in &labels {
        header.push_str(&format!(" {l:>width$}"));
    }
    println!("{header}");
    let value = |m: usize, c: usize| cells.iter().find(|o| o.model == m && o.condition == c);
    for (c, condition) in plan.conditions.iter().enumerate() {
        let mut line = format!("{:<26}", condition.label());
        for m in 0..labels.len() {
            match value(m, c) {
                Some(o) => line.push_str(&format!(" {:>width$.2}", 100.0 * o.result.headline())),
                None => line.push_str(&format!(" {:>width$}", "-")),
            }
        }
        println!("{line}");
    }
    let reports: Vec<CorruptionReport> = (0..labels.len())
        .map(|m| model_corruption_report(plan, cells, m, 0.0))
        .collect();
    let summary_row = |name: &str, pick: &dyn Fn(&CorruptionReport) -> Option<f64>, scale: f64| {
        if reports.iter().any(|r| pick(r).is_some()) {
            let mut line = format!("{name:<26}");
            for r in &reports {
                match pick(r) {
                    Some(v) => line.push_str(&format!(" {:>width$.2}", scale * v)),
                    None => line.push_str(&format!(" {:>width$}", "-")),
                }
            }
            println!("{line}");
        }
    };
    summary_row("mean, 15 benchmark", &|r| r.mean_benchmark, 100.0);
    summary_row("mean, all 19", &|r| r.mean_all, 100.0);
    summary_row("mCE (AlexNet = 100)", &|r| r.mce, 1.0);
}
