//! `robust-eval fgsm | pgd | apgd`: robust accuracy under attack, one cell per ε.

use std::path::PathBuf;

use clap::Args;

use crate::adversarial::{parse_norm, AttackSummary, Budget, Targeting};
use crate::cli::common::{single_model_plan, DataArgs, ModelArgs, RunArgs};
use crate::defense::AttackMode;
use crate::error::Result;
use crate::evaluate::summary::attack_summary;
use crate::evaluate::{run as run_plan, AttackName, AttackOptions, CellOutcome, Defense};

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
    /// How a defended model (--defense, --bn-adapt) is attacked, a comma-separated list:
    /// adaptive (through the whole defense, λ re-selected every step), static (λ held at the
    /// clean image's choice, BatchNorm not adapted) and transfer (crafted on the undefended
    /// model). Every one is scored on the defended model.
    #[arg(long, default_value = "adaptive")]
    pub attack_mode: String,
    /// Directory for the adversarial images (float32 .npy [N, 3, H, W], one file per ε).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Put the results in <out-dir>/<name>/ instead of <out-dir>/.
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
    /// Iterations (default 10).
    #[arg(long)]
    pub steps: Option<usize>,
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
    /// Iterations (default 100).
    #[arg(long)]
    pub steps: Option<usize>,
}

/// The attack-specific flags of a command.
#[derive(Clone, Debug)]
pub struct AttackSpec {
    pub attack: AttackName,
    pub alpha: Option<Budget>,
    pub steps: Option<usize>,
    pub random_start: bool,
}

impl FgsmArgs {
    pub fn into_parts(self) -> (AttackSpec, AttackArgs) {
        (spec(AttackName::Fgsm, None, None, false), self.attack)
    }
}

impl PgdArgs {
    pub fn into_parts(self) -> Result<(AttackSpec, AttackArgs)> {
        let alpha = self
            .alpha
            .as_deref()
            .map(|a| Budget::parse(a, "--alpha"))
            .transpose()?;
        Ok((
            spec(AttackName::Pgd, alpha, self.steps, !self.no_random_start),
            self.attack,
        ))
    }
}

impl ApgdArgs {
    pub fn into_parts(self) -> (AttackSpec, AttackArgs) {
        (spec(AttackName::Apgd, None, self.steps, true), self.attack)
    }
}

fn spec(
    attack: AttackName,
    alpha: Option<Budget>,
    steps: Option<usize>,
    random_start: bool,
) -> AttackSpec {
    AttackSpec {
        attack,
        alpha,
        steps,
        random_start,
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
    let norm = parse_norm(&args.norm)?;
    let eps_text = args
        .eps
        .clone()
        .unwrap_or_else(|| AttackOptions::default_eps(norm).to_string());
    let budgets = Budget::parse_list(&eps_text, "--eps")?;
    let options = AttackOptions {
        alpha: spec.alpha.clone(),
        steps: spec.steps,
        random_start: spec.random_start,
        restarts: args.restarts,
        targeting: args.targeted.parse::<Targeting>()?,
        eot: args.eot,
        modes: parse_modes(&args.attack_mode)?,
        ..AttackOptions::new(spec.attack, norm, budgets.clone())
    };
    let modes = options.modes.len();
    let command = format!("{:?}", spec.attack).to_lowercase();
    let mut plan = single_model_plan(
        &command,
        &args.model,
        &args.data,
        &args.run,
        args.name.as_deref(),
    )?;
    plan.conditions = options.conditions()?;
    if plan.models[0].defense == Defense::None && options.modes != [AttackMode::Adaptive] {
        eprintln!(
            "warning: --attack-mode {}: without --defense or --bn-adapt every mode attacks the \
             same model",
            args.attack_mode
        );
    }
    plan.exports.adversarial = args.export.clone();
    for condition in &plan.conditions {
        for warning in condition.warnings() {
            eprintln!("warning: {warning}");
        }
    }
    let mut header_printed = false;
    let outcome = run_plan(&plan, &mut |cell| {
        if !header_printed {
            print_header(&command, &norm.to_string(), cell);
            header_printed = true;
        }
        print_row(cell);
    })?;
    Ok(outcome
        .cells
        .iter()
        .map(|cell| EpsResult {
            eps: budgets[cell.condition / modes].clone(),
            summary: attack_summary(&cell.rows),
            images_per_second: cell.result.images_per_second,
            zero_gradient_fraction: cell.result.metric("zero_gradient_fraction").unwrap_or(0.0),
        })
        .collect())
}

pub fn parse_modes(text: &str) -> Result<Vec<AttackMode>> {
    let mut modes: Vec<AttackMode> = Vec::new();
    for part in text.split(',').map(str::trim) {
        let mode: AttackMode = part.parse()?;
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    Ok(modes)
}

fn print_header(attack: &str, norm: &str, cell: &CellOutcome) {
    println!(
        "{attack} ({norm}) on {} — {} images of {}",
        cell.record["model"]["label"].as_str().unwrap_or_default(),
        cell.result.n,
        cell.record["data"]["source"].as_str().unwrap_or_default()
    );
    println!(
        "{:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "eps", "clean", "robust", "success", "images/s", "against"
    );
}

fn print_row(cell: &CellOutcome) {
    let known = cell.record["static_warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for warning in &cell.result.warnings {
        if !known.iter().any(|k| k.as_str() == Some(warning)) {
            eprintln!("warning: {warning}");
        }
    }
    let metric = |name: &str| 100.0 * cell.result.metric(name).unwrap_or(f64::NAN);
    let mode = cell.record["condition"]["against_defense"]
        .as_str()
        .unwrap_or("adaptive");
    println!(
        "{:>10} {:>8.2}% {:>8.2}% {:>8.2}% {:>10.1} {:>9}",
        cell.record["columns"]["eps"].as_str().unwrap_or_default(),
        metric("clean_accuracy"),
        metric("robust_accuracy"),
        metric("success_rate"),
        cell.result.images_per_second,
        mode
    );
}
