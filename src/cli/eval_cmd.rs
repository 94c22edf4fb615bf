//! `robust-eval eval`: clean accuracy, throughput, per-sample predictions and optional logits.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::{single_model_plan, DataArgs, ModelArgs, RunArgs};
use crate::device::backend_name;
use crate::error::Result;
use crate::eval::Accuracy;
use crate::evaluate::{run as run_plan, Condition};

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
    /// Put the results in <out-dir>/<name>/ instead of <out-dir>/.
    #[arg(long)]
    pub name: Option<String>,
}

/// What `eval` measured.
pub struct EvalOutcome {
    pub accuracy: Accuracy,
    pub images_per_second: f64,
    /// Images taken from an earlier run's journal.
    pub resumed_samples: usize,
    pub files: Vec<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<EvalOutcome> {
    let mut plan = single_model_plan(
        "eval",
        &args.model,
        &args.data,
        &args.run,
        args.name.as_deref(),
    )?;
    plan.conditions = vec![Condition::Clean];
    plan.exports.logits = args.logits.clone();
    let outcome = run_plan(&plan, &mut |_| {})?;
    let cell = outcome.cell(0, 0).expect("the clean cell finished");
    let predictions: Vec<_> = cell.rows.iter().map(|r| r.prediction()).collect();
    let accuracy = Accuracy::of(&predictions);
    println!(
        "top-1      {:.2} % ({} images)",
        100.0 * accuracy.top1,
        accuracy.n
    );
    if cell.record["model"]["num_classes"].as_u64().unwrap_or(0) > 10 {
        println!("top-5      {:.2} %", 100.0 * accuracy.top5);
    }
    println!(
        "throughput {:.1} images/s on {}",
        cell.result.images_per_second,
        backend_name(plan.device)
    );
    for file in &outcome.files {
        println!("wrote      {}", file.display());
    }
    Ok(EvalOutcome {
        accuracy,
        images_per_second: cell.result.images_per_second,
        resumed_samples: cell.resumed_samples,
        files: outcome.files.clone(),
    })
}
