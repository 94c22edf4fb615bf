//! `robust-eval autoattack`: the AutoAttack ensemble (standard, plus, rand or a custom list), one
//! cell per ε, with robust accuracy after each member and the runtime checks' warnings.

use std::path::PathBuf;

use attacks::Version;
use clap::Args;

use crate::adversarial::{parse_norm, Budget};
use crate::cli::attack_cmd::parse_modes;
use crate::cli::common::{single_model_plan, DataArgs, ModelArgs, RunArgs};
use crate::error::{Error, Result};
use crate::evaluate::{run as run_plan, AttackName, AttackOptions, CellOutcome, EnsembleSpec};

#[derive(Args, Clone, Debug)]
pub struct AutoAttackArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Perturbation budget on the [0,1] scale; a comma-separated list gives one cell per ε.
    /// Default: 8/255 (linf), 0.5 (l2).
    #[arg(long)]
    pub eps: Option<String>,
    /// linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// standard (APGD-CE, APGD-T, FAB-T, Square), plus, rand (APGD-CE and APGD-DLR with EOT 20)
    /// or custom (the members of --attacks).
    #[arg(long, default_value = "standard")]
    pub version: String,
    /// The members of --version custom, in order, comma-separated: apgd-ce, apgd-dlr, apgd-t,
    /// fab, fab-t, square.
    #[arg(long)]
    pub attacks: Option<String>,
    /// Square's query budget per sample (default 5000).
    #[arg(long)]
    pub square_queries: Option<usize>,
    /// How a defended model is attacked: adaptive, static or transfer (comma-separated).
    #[arg(long, default_value = "adaptive")]
    pub attack_mode: String,
    /// Directory for the adversarial images (float32 .npy [N, 3, H, W], one file per ε).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Put the results in <out-dir>/<name>/ instead of <out-dir>/.
    #[arg(long)]
    pub name: Option<String>,
}

impl AutoAttackArgs {
    /// The ensemble the flags describe.
    pub fn ensemble(&self) -> Result<EnsembleSpec> {
        let members: Vec<String> = match &self.attacks {
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => Vec::new(),
        };
        let spec = EnsembleSpec::parse(&self.version, &members, self.square_queries)
            .map_err(Error::input)?;
        if spec.version == Version::Custom && spec.members.is_empty() {
            return Err(Error::input(
                "--version custom needs --attacks (e.g. apgd-ce,square)",
            ));
        }
        Ok(spec)
    }
}

pub fn run(args: AutoAttackArgs) -> Result<Vec<CellOutcome>> {
    let norm = parse_norm(&args.norm)?;
    let eps_text = args
        .eps
        .clone()
        .unwrap_or_else(|| AttackOptions::default_eps(norm).to_string());
    let options = AttackOptions {
        modes: parse_modes(&args.attack_mode)?,
        ensemble: Some(args.ensemble()?),
        ..AttackOptions::new(
            AttackName::AutoAttack,
            norm,
            Budget::parse_list(&eps_text, "--eps")?,
        )
    };
    let mut plan = single_model_plan(
        "autoattack",
        &args.model,
        &args.data,
        &args.run,
        args.name.as_deref(),
    )?;
    plan.conditions = options.conditions()?;
    plan.exports.adversarial = args.export.clone();
    let mut header_printed = false;
    let outcome = run_plan(&plan, &mut |cell| {
        if !header_printed {
            print_header(cell);
            header_printed = true;
        }
        print_cell(cell);
    })?;
    Ok(outcome.cells)
}

fn print_header(cell: &CellOutcome) {
    println!(
        "AutoAttack on {} — {} images of {}",
        cell.record["model"]["label"].as_str().unwrap_or_default(),
        cell.result.n,
        cell.record["data"]["source"].as_str().unwrap_or_default()
    );
}

fn print_cell(cell: &CellOutcome) {
    let condition = &cell.record["condition"];
    let members: Vec<&str> = condition["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let metric = |name: &str| 100.0 * cell.result.metric(name).unwrap_or(f64::NAN);
    println!(
        "{} ε = {} ({}): clean {:.2}%",
        condition["attack"]["norm"].as_str().unwrap_or_default(),
        condition["eps"].as_str().unwrap_or_default(),
        condition["against_defense"].as_str().unwrap_or("adaptive"),
        metric("clean_accuracy"),
    );
    for member in &members {
        println!(
            "  after {member:<9} {:>7.2}%",
            metric(&format!("robust_accuracy_after_{member}"))
        );
    }
    println!(
        "  robust accuracy {:.2}%  ({:.1} images/s; max perturbation linf {:.5}, l2 {:.5}; \
         images in [0, 1], no NaN)",
        metric("robust_accuracy"),
        cell.result.images_per_second,
        cell.result.metric("max_linf").unwrap_or(f64::NAN),
        cell.result.metric("max_l2").unwrap_or(f64::NAN),
    );
    for warning in &cell.result.warnings {
        eprintln!("warning: {warning}");
    }
}
