//! `robust-eval regress --baseline FILE (RESULTS_DIR | --suite PRESET)`: the regression gate.
//! Exit status 0: nothing moved beyond noise; 1: a regression; 2: a usage or input error.

use std::path::PathBuf;

use clap::Args;

use crate::cli::suite_cmd::{run_suite, SuiteRunArgs};
use crate::error::{Error, Result};
use crate::evaluate::results::read_results;
use crate::suite::baseline::Baseline;
use crate::suite::regress::{compare, Comparison, FailOn, Options, Outcome, Test, Verdict};
use crate::suite::Suite;

#[derive(Args, Debug)]
pub struct RegressArgs {
    /// The committed baseline (written by --update).
    #[arg(long)]
    pub baseline: PathBuf,
    /// The results directory to hold against it.
    #[arg(required_unless_present = "suite", conflicts_with = "suite")]
    pub results: Option<PathBuf>,
    /// Run this suite (preset or file) first, into --out-dir, and hold its results.
    #[arg(long)]
    pub suite: Option<String>,
    /// With --suite: where it runs (default results/suite-<name>; finished cells are reused).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// With --suite: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Smallest change that counts, in accuracy points.
    #[arg(long, default_value_t = 0.5)]
    pub min_effect: f64,
    /// Family-wise significance level (Holm-corrected over every comparison).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// What fails the gate: a drop, or any change beyond noise.
    #[arg(long, value_enum, default_value = "change")]
    pub fail_on: FailOn,
    /// Write the results as the new baseline (after showing the comparison, if there is one).
    #[arg(long)]
    pub update: bool,
    /// Show every comparison, not only what moved.
    #[arg(long)]
    pub all: bool,
}

/// Returns whether the gate passed.
pub fn run(args: RegressArgs) -> Result<bool> {
    let options = options(&args)?;
    let dir = match &args.suite {
        Some(suite) => run_suite_first(suite, &args)?,
        None => args
            .results
            .clone()
            .expect("clap requires RESULTS or --suite"),
    };
    let current = Baseline::from_cells(&read_results(&dir)?);
    let compared =
        Baseline::read(&args.baseline).and_then(|baseline| compare(&baseline, &current, &options));
    let outcome = match compared {
        Ok(outcome) => {
            print_outcome(&outcome, &options, args.all);
            Some(outcome)
        }
        // Updating is how a baseline follows an intended change of settings.
        Err(e) if args.update => {
            if args.baseline.exists() {
                println!("note: the old baseline was not compared: {e}");
            }
            None
        }
        Err(e) => return Err(e),
    };
    if args.update {
        current.write(&args.baseline)?;
        println!(
            "wrote {} ({} entries)",
            args.baseline.display(),
            current.entries.len()
        );
        return Ok(true);
    }
    Ok(outcome.is_some_and(|o| !o.failed(options.fail_on)))
}

fn options(args: &RegressArgs) -> Result<Options> {
    if !(0.0..=100.0).contains(&args.min_effect) {
        return Err(Error::input(format!(
            "--min-effect {}: expected accuracy points between 0 and 100",
            args.min_effect
        )));
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(Error::input(format!(
            "--alpha {}: expected a level between 0 and 1",
            args.alpha
        )));
    }
    Ok(Options {
        min_effect: args.min_effect / 100.0,
        alpha: args.alpha,
        fail_on: args.fail_on,
    })
}

fn run_suite_first(suite: &str, args: &RegressArgs) -> Result<PathBuf> {
    let name = Suite::load(suite)?.file.name;
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(format!("suite-{name}")));
    let run_args = SuiteRunArgs {
        suite: suite.to_string(),
        out_dir: Some(out_dir.clone()),
        shard: None,
        shards: None,
        device: args.device.clone(),
        data: None,
        labels: None,
        limit: None,
        batch_size: None,
        checkpoints: Vec::new(),
        models: Vec::new(),
        normalize: Vec::new(),
        data_c: None,
        fresh: false,
    };
    run_suite(&run_args)?;
    Ok(out_dir)
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Unchanged => "within noise",
        Verdict::Rose => "ROSE",
        Verdict::Dropped => "DROPPED",
    }
}

fn p_text(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

fn row(c: &Comparison) -> String {
    let test = match c.test {
        Test::McNemar { b, c } => format!("McNemar -{b}/+{c}"),
        Test::TwoProportion => "two-proportion".into(),
    };
    format!(
        "{:<44} {:<16} {:>8.2} {:>8.2} {:>+7.2} {:<20} {:>9} {:>9}  {}",
        c.cell,
        c.metric,
        100.0 * c.baseline,
        100.0 * c.now,
        100.0 * c.effect(),
        test,
        p_text(c.p),
        p_text(c.p_holm),
        verdict_text(c.verdict)
    )
}

fn print_outcome(outcome: &Outcome, options: &Options, all: bool) {
    let shown: Vec<&Comparison> = if all {
        outcome.comparisons.iter().collect()
    } else {
        outcome.moved().collect()
    };
    if !shown.is_empty() {
        println!(
            "{:<44} {:<16} {:>8} {:>8} {:>7} {:<20} {:>9} {:>9}  verdict",
            "cell", "metric", "baseline", "now", "Δ pts", "test (-lost/+gained)", "p", "p (Holm)"
        );
        for c in &shown {
            println!("{}", row(c));
        }
    }
    for note in &outcome.notes {
        println!("note: {note}");
    }
    if !outcome.new_cells.is_empty() {
        println!(
            "note: {} cell(s) are not in the baseline and were not compared: {}",
            outcome.new_cells.len(),
            outcome.new_cells.join(", ")
        );
    }
    let moved = outcome.moved().count();
    let verdict = if outcome.failed(options.fail_on) {
        "FAIL"
    } else {
        "PASS"
    };
    println!(
        "regress: {} comparisons, {moved} moved beyond noise (Holm-corrected p < {} and |Δ| ≥ {:.2} points; fail on {}): {verdict}",
        outcome.comparisons.len(),
        options.alpha,
        100.0 * options.min_effect,
        match options.fail_on {
            FailOn::Drop => "drop",
            FailOn::Change => "change",
        }
    );
}
