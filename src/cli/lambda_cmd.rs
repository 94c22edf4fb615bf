//! `robust-eval lambda sweep` (accuracy over a λ grid per condition, with the oracle-best λ) and
//! `robust-eval lambda calibrate` (fitting λ schedules on calibration data disjoint from the
//! evaluation data).

use std::collections::HashSet;
use std::path::PathBuf;

use burn::tensor::{ElementConversion, Tensor};
use clap::{Args, Subcommand};
use corruptions::{Corruption, Preset};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::adversarial::{parse_norm, Budget};
use crate::cli::common::{DataArgs, ModelArgs, RunArgs};
use crate::cli::corrupt_cmd::parse_severities;
use crate::csc::SampleLambda;
use crate::data::{Batch, Dataset};
use crate::defense::calibrate::{Calibration, ConditionStats};
use crate::defense::{estimate_noise, Layers, Rule, Schedule, ScheduleModel, TestTimeDefense};
use crate::error::{Error, Result};
use crate::evaluate::condition::corruption_conditions;
use crate::evaluate::executor::CellImages;
use crate::evaluate::{
    run as run_plan, AttackName, AttackOptions, Condition, CorruptionSource, DataConfig, Defense,
    ModelEntry, Plan, RunOutcome,
};
use crate::kernels::ConvBackend;
use crate::models::Network;
use crate::report::write_atomic;

#[derive(Subcommand, Debug)]
pub enum LambdaCommand {
    /// Accuracy over a λ grid for clean data, corruptions and attacks; the best λ per condition
    /// (an oracle: it is chosen with the labels of the data evaluated) as a schedule file.
    Sweep(SweepArgs),
    /// Fit the per-condition, residual, noise and discrepancy schedules on calibration data.
    Calibrate(CalibrateArgs),
}

#[derive(Args, Clone, Debug)]
pub struct GridArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// The λ grid (comma-separated).
    #[arg(
        long,
        default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4"
    )]
    pub lambdas: String,
    /// Which CSC layers λ changes: first, all, or both (one grid each; a model with one CSC
    /// layer gets one).
    #[arg(long, default_value = "both")]
    pub layers: String,
    /// Corruptions (as `corrupt --corruptions`), or none.
    #[arg(long, default_value = "noise")]
    pub corruptions: String,
    /// 1–5, a comma-separated list, or all.
    #[arg(long, default_value = "all")]
    pub severity: String,
    /// cifar or imagenet parameters (default: by --dataset).
    #[arg(long)]
    pub preset: Option<String>,
}

#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Also attack each λ with PGD (white-box on the model at that λ) at these ε.
    #[arg(long)]
    pub pgd_eps: Option<String>,
    /// PGD iterations.
    #[arg(long, default_value_t = 10)]
    pub pgd_steps: usize,
}

#[derive(Args, Clone, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// The data the schedules will be evaluated on (default: the bundled test images); any image
    /// found in both is refused.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Where the schedule files go (default: <out-dir>/schedules).
    #[arg(long)]
    pub schedules: Option<PathBuf>,
}

pub fn run(command: LambdaCommand) -> Result<()> {
    match command {
        LambdaCommand::Sweep(args) => sweep(args),
        LambdaCommand::Calibrate(args) => calibrate(args),
    }
}

/// One grid: which layers, and λ values.
struct Grid {
    lambdas: Vec<f64>,
    layer_sets: Vec<Layers>,
}

fn parse_grid(args: &GridArgs) -> Result<Grid> {
    let mut lambdas = Vec::new();
    for part in args.lambdas.split(',').map(str::trim) {
        let l: f64 = part
            .parse()
            .map_err(|_| Error::input(format!("--lambdas: '{part}' is not a number")))?;
        if !(l.is_finite() && l > 0.0) {
            return Err(Error::input(format!(
                "--lambdas: λ must be positive, got {part}"
            )));
        }
        lambdas.push(l);
    }
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup();
    let layer_sets = match args.layers.as_str() {
        "first" => vec![Layers::FIRST],
        "all" => vec![Layers::ALL],
        "both" => vec![Layers::FIRST, Layers::ALL],
        other => {
            return Err(Error::input(format!(
                "--layers '{other}' (expected first, all or both)"
            )))
        }
    };
    Ok(Grid {
        lambdas,
        layer_sets,
    })
}

fn layers_name(layers: &Layers) -> &'static str {
    if *layers == Layers::FIRST {
        "first"
    } else {
        "all"
    }
}

/// The model entries of a grid: one per layer set × λ. With a single CSC layer "first" and
/// "all" are the same model, so only "all" is kept.
fn grid_entries(
    base: &ModelEntry,
    grid: &Grid,
    csc_layers: usize,
) -> Vec<(Layers, f64, ModelEntry)> {
    let mut sets = grid.layer_sets.clone();
    if csc_layers == 1 && sets.len() > 1 {
        sets.retain(|l| *l == Layers::ALL);
    }
    let mut out = Vec::new();
    for layers in sets {
        for &lambda in &grid.lambdas {
            let defense = if layers == Layers::ALL {
                Defense::Lambda(lambda)
            } else {
                Defense::TestTime(TestTimeDefense {
                    schedule: Some(Schedule::new(Rule::Fixed {
                        lambdas: [("first".to_string(), lambda)].into_iter().collect(),
                    })),
                    bn_adapt: false,
                })
            };
            let label = if layers == Layers::ALL {
                base.label.clone()
            } else {
                format!("{} (first layer)", base.label)
            };
            out.push((
                layers.clone(),
                lambda,
                ModelEntry {
                    label,
                    config: base.config.clone(),
                    defense,
                },
            ));
        }
    }
    out
}

fn preset_of(args: &GridArgs) -> Result<Preset> {
    match &args.preset {
        Some(p) => p.parse().map_err(Error::input),
        None if args.data.dataset == "imagenet" => Ok(Preset::Imagenet),
        None => Ok(Preset::Cifar),
    }
}

fn grid_conditions(args: &GridArgs) -> Result<Vec<Condition>> {
    let mut conditions = vec![Condition::Clean];
    if args.corruptions != "none" {
        let selection = Corruption::parse_selection(&args.corruptions)
            .map_err(|e| Error::input(e.to_string()))?;
        let severities = parse_severities(&args.severity)?;
        let source = CorruptionSource::OnTheFly(preset_of(args)?);
        conditions.extend(corruption_conditions(&selection, &severities, &source));
    }
    Ok(conditions)
}

/// Refuses grids for models without CSC layers; returns the loaded network's facts.
fn csc_model(args: &GridArgs) -> Result<(ModelEntry, Network<burn_flex::Flex>, String)> {
    if args.model.defense.is_some() || args.model.lambda.is_some() || args.model.bn_adapt {
        return Err(Error::input(
            "lambda sweep/calibrate set λ themselves: drop --defense, --lambda and --bn-adapt",
        ));
    }
    let base = args.model.entry()?;
    let kind = args.data.config()?.dataset;
    let loaded = base
        .config
        .load::<burn_flex::Flex>(kind, &Default::default())?;
    if loaded.network.csc_count() == 0 {
        return Err(Error::input(format!(
            "{} has no CSC layers: a λ grid applies only to SDNet models",
            loaded.network.spec().name()
        )));
    }
    Ok((base, loaded.network, loaded.identity))
}

fn grid_plan(
    command: &str,
    args: &GridArgs,
    entries: Vec<ModelEntry>,
    out_dir: PathBuf,
) -> Result<Plan> {
    let mut plan = Plan::new(command, entries, args.data.config()?);
    plan.batch_size = args.data.batch_size;
    plan.seed = args.model.seed;
    plan.device = args.run.device.parse()?;
    plan.fresh = args.run.fresh;
    plan.out_dir = out_dir;
    plan.conditions = grid_conditions(args)?;
    Ok(plan)
}

/// Accuracy per (layer set, λ) for each condition label, from a finished grid run.
struct GridResult {
    /// (condition label, layers, accuracy per λ, n).
    rows: Vec<(String, Layers, Vec<f64>, usize)>,
}

fn collect(
    outcome: &RunOutcome,
    plan: &Plan,
    entries: &[(Layers, f64, ModelEntry)],
    grid: &Grid,
) -> GridResult {
    let mut rows = Vec::new();
    let mut layer_sets: Vec<Layers> = entries.iter().map(|e| e.0.clone()).collect();
    layer_sets.dedup();
    for layers in layer_sets {
        for (c, condition) in plan.conditions.iter().enumerate() {
            let mut accuracy = Vec::new();
            let mut n = 0;
            for &lambda in &grid.lambdas {
                let m = entries
                    .iter()
                    .position(|e| e.0 == layers && e.1 == lambda)
                    .expect("grid entry");
                let cell = outcome.cell(m, c).expect("finished cell");
                let metric = if matches!(condition, Condition::Attack(_)) {
                    "robust_accuracy"
                } else {
                    "accuracy"
                };
                accuracy.push(cell.result.metric(metric).unwrap_or(f64::NAN));
                n = cell.result.n;
            }
            rows.push((condition.label(), layers.clone(), accuracy, n));
        }
    }
    GridResult { rows }
}

fn print_grid(result: &GridResult, grid: &Grid) {
    let mut header = format!("{:<26} {:>6}", "condition", "layers");
    for l in &grid.lambdas {
        header.push_str(&format!(" {:>6}", format!("λ{l}")));
    }
    println!("{header}   best λ (oracle)");
    for (label, layers, accuracy, _) in &result.rows {
        let mut line = format!("{label:<26} {:>6}", layers_name(layers));
        for a in accuracy {
            line.push_str(&format!(" {:>6.2}", 100.0 * a));
        }
        let stats = best_of(accuracy, &grid.lambdas);
        line.push_str(&format!("   {}", stats));
        println!("{line}");
    }
}

fn best_of(accuracy: &[f64], lambdas: &[f64]) -> f64 {
    let mut best = 0;
    for (i, a) in accuracy.iter().enumerate() {
        if *a > accuracy[best] {
            best = i;
        }
    }
    lambdas[best]
}

fn write_grid_csv(path: &std::path::Path, result: &GridResult, grid: &Grid) -> Result<()> {
    let mut text = String::from("condition,layers,lambda,accuracy,n,best_lambda\n");
    for (label, layers, accuracy, n) in &result.rows {
        let best = best_of(accuracy, &grid.lambdas);
        for (l, a) in grid.lambdas.iter().zip(accuracy) {
            text.push_str(&format!(
                "{label},{},{l},{a},{n},{best}\n",
                layers_name(layers)
            ));
        }
    }
    write_atomic(path, text.as_bytes())
}

fn sweep(args: SweepArgs) -> Result<()> {
    let grid = parse_grid(&args.grid)?;
    let (base, network, identity) = csc_model(&args.grid)?;
    let entries = grid_entries(&base, &grid, network.csc_count());
    let mut plan = grid_plan(
        "lambda sweep",
        &args.grid,
        entries.iter().map(|e| e.2.clone()).collect(),
        args.grid.run.out_dir.clone(),
    )?;
    if let Some(eps) = &args.pgd_eps {
        let options = AttackOptions {
            steps: Some(args.pgd_steps),
            ..AttackOptions::new(
                AttackName::Pgd,
                parse_norm("linf")?,
                Budget::parse_list(eps, "--pgd-eps")?,
            )
        };
        plan.conditions.extend(options.conditions()?);
    }
    let outcome = run_plan(&plan, &mut |_| {})?;
    let result = collect(&outcome, &plan, &entries, &grid);
    print_grid(&result, &grid);
    let out = &plan.out_dir;
    write_grid_csv(&out.join("lambda_sweep.csv"), &result, &grid)?;
    // The best λ per condition, chosen with these labels: an oracle.
    for layers in entries
        .iter()
        .map(|e| e.0.clone())
        .collect::<Vec<_>>()
        .iter()
        .fold(Vec::new(), |mut v: Vec<Layers>, l| {
            if !v.contains(l) {
                v.push(l.clone());
            }
            v
        })
    {
        let table = result
            .rows
            .iter()
            .filter(|r| r.1 == layers)
            .map(|(label, _, acc, _)| (label.clone(), best_of(acc, &grid.lambdas)))
            .collect();
        let schedule = Schedule {
            rule: Rule::PerCondition {
                layers: layers.clone(),
                default: network.csc_lambdas()[0],
                table,
                oracle: true,
            },
            model: Some(ScheduleModel {
                name: network.spec().name(),
                weights_sha256: identity.clone(),
            }),
            fit: Some(
                json!({"oracle_on": plan.data.describe(), "grid": grid.lambdas,
                             "command_line": std::env::args().collect::<Vec<_>>().join(" ")}),
            ),
        };
        let path = out.join(format!("oracle-{}.json", layers_name(&layers)));
        write_atomic(&path, schedule.to_json().as_bytes())?;
        println!("wrote      {}", path.display());
    }
    println!("wrote      {}", out.join("lambda_sweep.csv").display());
    Ok(())
}

fn calibrate(args: CalibrateArgs) -> Result<()> {
    let grid = parse_grid(&args.grid)?;
    let (base, network, identity) = csc_model(&args.grid)?;
    let calib_config = args.grid.data.config()?;
    if args.grid.data.data.is_none() {
        return Err(Error::input(
            "lambda calibrate needs --data: calibration images that are not the evaluation images",
        ));
    }
    let calib = calib_config.open()?;
    let eval_config = DataConfig {
        path: args.eval_data.clone(),
        limit: None,
        ..calib_config.clone()
    };
    check_disjoint(calib.as_ref(), eval_config.open()?.as_ref(), &eval_config)?;
    if grid.layer_sets.len() > 1 && network.csc_count() > 1 {
        return Err(Error::input(
            "lambda calibrate fits one layer set: give --layers first or --layers all",
        ));
    }
    let entries = grid_entries(&base, &grid, network.csc_count());
    let plan = grid_plan(
        "lambda calibrate",
        &args.grid,
        entries.iter().map(|e| e.2.clone()).collect(),
        args.grid.run.out_dir.clone(),
    )?;
    let outcome = run_plan(&plan, &mut |_| {})?;
    let result = collect(&outcome, &plan, &entries, &grid);
    print_grid(&result, &grid);
    write_grid_csv(&plan.out_dir.join("calibration_grid.csv"), &result, &grid)?;

    let layers = entries[0].0.clone();
    let probe = network.csc_lambdas()[0];
    let probe_index = grid
        .lambdas
        .iter()
        .position(|l| *l == probe)
        .ok_or_else(|| {
            Error::input(format!(
            "the grid must contain the model's own λ {probe} (the probe λ of residual schedules)"
        ))
        })?;
    let mut stats = Vec::new();
    for (c, condition) in plan.conditions.iter().enumerate() {
        let (sigma, residual) =
            label_free_stats(&network, condition, calib.as_ref(), &plan, &grid.lambdas)?;
        let row = result
            .rows
            .iter()
            .find(|r| r.0 == condition.label() && r.1 == layers)
            .expect("grid row");
        let _ = c;
        stats.push(ConditionStats {
            condition: condition.label(),
            n: row.3,
            accuracy: row.2.clone(),
            sigma,
            residual,
        });
    }
    let (_, std) = network.spec().normalization();
    let calibration = Calibration {
        grid: &grid.lambdas,
        probe: probe_index,
        layers,
        stats: &stats,
        noise_gain: std.iter().map(|s| 1.0 / (*s as f64).powi(2)).sum::<f64>() / 3.0,
        model: ScheduleModel {
            name: network.spec().name(),
            weights_sha256: identity,
        },
        provenance: json!({"data": calib.source(), "n": calib.len(), "seed": plan.seed,
                           "preset": format!("{:?}", preset_of(&args.grid)?),
                           "conditions": stats.iter().map(|s| s.condition.clone()).collect::<Vec<_>>()}),
    };
    let dir = args
        .schedules
        .clone()
        .unwrap_or_else(|| plan.out_dir.join("schedules"));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    for (name, schedule) in calibration.fit() {
        let path = dir.join(format!("{name}.json"));
        write_atomic(&path, schedule.to_json().as_bytes())?;
        println!("wrote      {}  ({})", path.display(), schedule.name());
    }
    let stats_path = dir.join("calibration_stats.json");
    write_atomic(
        &stats_path,
        serde_json::to_string_pretty(&stats)
            .expect("serialises")
            .as_bytes(),
    )?;
    println!("wrote      {}", stats_path.display());
    Ok(())
}

/// Mean σ̂ and mean first-layer residual per input value at each grid λ over the images of a
/// calibration condition.
fn label_free_stats<B: ConvBackend>(
    network: &Network<B>,
    condition: &Condition,
    base: &dyn Dataset,
    plan: &Plan,
    lambdas: &[f64],
) -> Result<(f64, Vec<f64>)> {
    let images = CellImages::open(
        condition,
        Some(base),
        plan.data.dataset,
        plan.data.limit,
        plan.seed,
    )?;
    let n = images.dataset().len();
    let device = Default::default();
    let mut sigma = 0.0;
    let mut residual = vec![0.0; lambdas.len()];
    for chunk in (0..n).collect::<Vec<_>>().chunks(plan.batch_size) {
        let batch: Batch = images.load(chunk, false)?.batch;
        sigma += estimate_noise(&batch.pixels, batch.shape)
            .iter()
            .sum::<f64>();
        let tensor: Tensor<B, 4> = batch.images::<B>(&device);
        let values = batch.shape[1..].iter().product::<usize>() as f64;
        for (k, &l) in lambdas.iter().enumerate() {
            let out = network
                .first_csc_output_lambda(
                    tensor.clone(),
                    Some(&SampleLambda::Values(vec![l; batch.len()])),
                )
                .expect("a CSC model");
            let sum: f64 = out.reconstruction_error.sum().into_scalar().elem::<f64>();
            residual[k] += sum / values;
        }
    }
    let n = n.max(1) as f64;
    Ok((sigma / n, residual.iter().map(|r| r / n).collect()))
}

/// Refuses calibration data that shares an image (same pixels) with the evaluation data.
fn check_disjoint(calib: &dyn Dataset, eval: &dyn Dataset, eval_config: &DataConfig) -> Result<()> {
    let digest = |set: &dyn Dataset, i: usize| -> Result<[u8; 32]> {
        Ok(Sha256::digest(set.load_u8(&[i])?).into())
    };
    let mut seen = HashSet::new();
    for i in 0..eval.len() {
        seen.insert(digest(eval, i)?);
    }
    let mut shared = Vec::new();
    for i in 0..calib.len() {
        if seen.contains(&digest(calib, i)?) {
            shared.push(i);
        }
    }
    if !shared.is_empty() {
        return Err(Error::input(format!(
            "the calibration data {} share {} image(s) with the evaluation data {} (calibration \
             indices {}…): calibrating on evaluation images would report a fitted number as a \
             held-out one",
            calib.source(),
            shared.len(),
            eval_config.describe(),
            shared
                .iter()
                .take(5)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}
