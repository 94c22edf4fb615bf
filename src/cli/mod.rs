//! The command line: argument parsing and one module per command. Commands only parse, call the
//! library and print.

pub mod attack_cmd;
pub mod autoattack_cmd;
pub mod common;
pub mod corrupt_cmd;
pub mod eval_cmd;
pub mod lambda_cmd;
pub mod regress_cmd;
pub mod report_cmd;
pub mod speed_cmd;
pub mod suite_cmd;
pub mod train_cmd;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::checkpoint;
use crate::data::DatasetKind;
use crate::device::Cpu;
use crate::error::{Error, Result};
use crate::models::{Domain, ModelConfig, ModelSpec, Network, WeightsSource, MODEL_NAMES};

#[derive(Parser, Debug)]
#[command(
    name = "robust-eval",
    version,
    about = "Robustness evaluation of image classifiers (SDNet, ResNet): accuracy, attacks, corruptions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// List the models with their parameter counts.
    Models,
    /// Clean accuracy (top-1, top-5) and throughput on a data set.
    Eval(eval_cmd::EvalArgs),
    /// Convert a PyTorch checkpoint into robust-eval's own format.
    Convert(ConvertArgs),
    /// Fast gradient sign method (one step of size ε).
    Fgsm(attack_cmd::FgsmArgs),
    /// Projected gradient descent (L∞ or L2), with restarts and targets.
    Pgd(attack_cmd::PgdArgs),
    /// APGD-CE: step-size-free PGD with momentum (Croce & Hein 2020).
    Apgd(attack_cmd::ApgdArgs),
    /// AutoAttack: APGD-CE, APGD-T, FAB-T and Square as an ensemble (or plus, rand, custom).
    Autoattack(autoattack_cmd::AutoAttackArgs),
    /// Accuracy under the 19 common corruptions (CIFAR-10-C / ImageNet-C), mCE; export the sets.
    Corrupt(corrupt_cmd::CorruptArgs),
    /// Train a model with the official recipe (resumable).
    Train(train_cmd::TrainArgs),
    /// Run, list or merge benchmark suites (models × conditions, shardable).
    #[command(subcommand)]
    Suite(suite_cmd::SuiteCommand),
    /// λ at test time for SDNet: sweep a grid, or calibrate schedules on held-out data.
    #[command(subcommand)]
    Lambda(lambda_cmd::LambdaCommand),
    /// Markdown, self-contained HTML and SVG plots of results directories.
    Report(report_cmd::ReportArgs),
    /// Hold results against a committed baseline: exit 1 when a number moved beyond noise.
    Regress(regress_cmd::RegressArgs),
    /// Measure throughput (images/s) of the model zoo.
    Speed(speed_cmd::SpeedArgs),
}

impl Command {
    /// The exit status of a failed command (`regress` keeps 1 for a regression).
    pub fn error_status(&self) -> i32 {
        match self {
            Self::Regress(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint to read (PyTorch or robust-eval).
    pub input: PathBuf,
    /// Where to write the robust-eval checkpoint.
    pub output: PathBuf,
    /// Architecture of the checkpoint.
    #[arg(long)]
    pub model: String,
    /// Data set the model was trained for: cifar10, cifar100 or imagenet.
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
}

/// Runs a command; returns the process's exit status.
pub fn run(cli: Cli) -> Result<i32> {
    let done = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Models => done(list_models()),
        Command::Eval(args) => done(eval_cmd::run(args).map(|_| ())),
        Command::Convert(args) => done(convert(args)),
        Command::Speed(args) => done(speed_cmd::run(args)),
        Command::Suite(command) => done(suite_cmd::run(command)),
        Command::Lambda(command) => done(lambda_cmd::run(command)),
        Command::Train(args) => done(train_cmd::run(args).map(|_| ())),
        Command::Corrupt(args) => done(corrupt_cmd::run(args).map(|_| ())),
        Command::Report(args) => done(report_cmd::run(args)),
        Command::Regress(args) => regress_cmd::run(args).map(|passed| i32::from(!passed)),
        Command::Fgsm(args) => {
            let (spec, args) = args.into_parts();
            done(attack_cmd::run(spec, args).map(|_| ()))
        }
        Command::Pgd(args) => {
            let (spec, args) = args.into_parts()?;
            done(attack_cmd::run(spec, args).map(|_| ()))
        }
        Command::Apgd(args) => {
            let (spec, args) = args.into_parts();
            done(attack_cmd::run(spec, args).map(|_| ()))
        }
        Command::Autoattack(args) => done(autoattack_cmd::run(args).map(|_| ())),
    }
}

fn list_models() -> Result<()> {
    println!(
        "{:<24} {:>14} {:>15} {:>11}  normalisation (CIFAR-10)",
        "model", "CIFAR-10", "ImageNet", "CSC layers"
    );
    for name in MODEL_NAMES {
        let cifar_spec = ModelSpec::new(name, Domain::Cifar, 10)?;
        let cifar = model_shapes(&cifar_spec);
        let imagenet = match ModelSpec::new(name, Domain::Imagenet, 1000) {
            Ok(spec) => format!(
                "{:.2} M",
                model_shapes(&spec).trainable_params() as f64 / 1e6
            ),
            Err(_) => "-".into(),
        };
        println!(
            "{:<24} {:>12.3} M {:>15} {:>11}  {}",
            name,
            cifar.trainable_params() as f64 / 1e6,
            imagenet,
            cifar.csc_count(),
            cifar_spec.normalization_used().describe()
        );
    }
    println!(
        "\nThe 18/34 families take --width to scale every stage (e.g. --width 0.25); --model also \
         takes any wrn-D-W or dm-wrn-D-W (D = 6n + 4). --normalize overrides the normalisation."
    );
    Ok(())
}

/// A network with the model's shapes and no meaningful weights.
fn model_shapes(spec: &ModelSpec) -> Network<Cpu> {
    crate::nn::shapes_only(|| Network::new(spec, 0, &Default::default()))
}

fn convert(args: ConvertArgs) -> Result<()> {
    if args.input == args.output {
        return Err(Error::input("input and output are the same file"));
    }
    let kind: DatasetKind = args.dataset.parse()?;
    let config = ModelConfig {
        name: Some(args.model.clone()),
        weights: WeightsSource::Checkpoint(args.input.clone()),
        width: Some(args.width),
        ..ModelConfig::default()
    };
    let loaded = config.load::<Cpu>(kind, &Default::default())?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::report::prepare_output_dir(dir)?;
    }
    checkpoint::save(&loaded.network, &args.output)?;
    println!(
        "wrote {} ({}, {} parameters)",
        args.output.display(),
        loaded.network.spec().name(),
        loaded.network.trainable_params()
    );
    Ok(())
}
