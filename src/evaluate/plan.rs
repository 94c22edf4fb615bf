//! A plan: models × conditions on one data set, with how to run them (batch size, seed, device,
//! output directory, shard, exports).

use std::path::PathBuf;

use corruptions::Preset;
use serde::{Deserialize, Serialize};

use crate::defense::{Rule, Schedule, TestTimeDefense};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::evaluate::condition::Condition;
use crate::evaluate::data::DataConfig;
use crate::models::ModelConfig;

/// A test-time change to the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Defense {
    None,
    /// One λ for every CSC layer (`--lambda`, or `--defense fixed:λ`).
    Lambda(f64),
    /// A λ schedule and/or test-time BatchNorm adaptation.
    TestTime(TestTimeDefense),
}

impl Defense {
    /// From `--defense` / `--bn-adapt`: a fixed λ for all layers is the plain `lambda=` defense.
    pub fn from_parts(schedule: Option<Schedule>, bn_adapt: bool) -> Self {
        if let (Some(Rule::Fixed { lambdas }), false) =
            (schedule.as_ref().map(|s| &s.rule), bn_adapt)
        {
            if let (1, Some(l)) = (lambdas.len(), lambdas.get("all")) {
                return Self::Lambda(*l);
            }
        }
        if schedule.is_none() && !bn_adapt {
            return Self::None;
        }
        Self::TestTime(TestTimeDefense { schedule, bn_adapt })
    }

    /// The defense in the form the executor binds.
    pub fn test_time(&self) -> Option<TestTimeDefense> {
        match self {
            Self::None => None,
            Self::Lambda(l) => Some(TestTimeDefense {
                schedule: Some(Schedule::new(Rule::Fixed {
                    lambdas: [("all".to_string(), *l)].into_iter().collect(),
                })),
                bn_adapt: false,
            }),
            Self::TestTime(t) => Some(t.clone()),
        }
    }

    /// Every setting of the defense, for cell records (`null` for none and plain λ, whose name
    /// says everything).
    pub fn settings(&self) -> serde_json::Value {
        match self {
            Self::TestTime(t) => t.settings(),
            _ => serde_json::Value::Null,
        }
    }
}

impl std::fmt::Display for Defense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => write!(f, "none"),
            Self::Lambda(l) => write!(f, "lambda={l}"),
            Self::TestTime(t) => f.write_str(&t.name()),
        }
    }
}

/// One model of a plan: its name in results, how to build it, and its defense.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    pub label: String,
    pub config: ModelConfig,
    pub defense: Defense,
}

impl ModelEntry {
    /// A model labelled by its architecture name.
    pub fn new(config: ModelConfig, defense: Defense) -> Self {
        Self {
            label: config.model_name().to_string(),
            config,
            defense,
        }
    }
}

/// Part `index` (1-based) of `count` disjoint parts of a plan's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index == 0 || index > count {
            return Err(Error::input(format!(
                "--shard {index}/{count}: expected I/N with 1 ≤ I ≤ N (e.g. 1/4 … 4/4)"
            )));
        }
        Ok(Self { index, count })
    }

    /// Whether the `unit`-th work unit of the plan (counted over all cells) belongs here.
    /// Round-robin, so that every shard gets a share of the expensive cells.
    pub fn owns(&self, unit: usize) -> bool {
        unit % self.count == self.index - 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Files written from the images themselves, beside the results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exports {
    /// Adversarial images, float32 `.npy` [N, C, H, W], one file per attack cell.
    pub adversarial: Option<PathBuf>,
    /// Corrupted sets in the CIFAR-10-C / ImageNet-C layouts.
    pub corrupted: Option<(PathBuf, Preset)>,
    /// Clean logits, float32 `.npy` [N, classes].
    pub logits: Option<PathBuf>,
}

impl Exports {
    pub fn any(&self) -> bool {
        self.adversarial.is_some() || self.corrupted.is_some() || self.logits.is_some()
    }
}

/// Which suite a plan came from (recorded so that shards of different suites are not merged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteOrigin {
    pub name: String,
    /// SHA-256 of the suite's resolved definition.
    pub digest: String,
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// The command that built the plan (recorded with every cell).
    pub command: String,
    /// No models: only write the exports (`corrupt --export-only`).
    pub models: Vec<ModelEntry>,
    pub data: DataConfig,
    pub conditions: Vec<Condition>,
    pub batch_size: usize,
    /// Seed of every random draw (random starts, targets, corruption noise).
    pub seed: u64,
    pub device: DeviceChoice,
    pub out_dir: PathBuf,
    pub shard: Option<Shard>,
    pub exports: Exports,
    /// Recompute the plan's cells even when finished results exist.
    pub fresh: bool,
    pub suite: Option<SuiteOrigin>,
}

impl Plan {
    pub fn new(command: &str, models: Vec<ModelEntry>, data: DataConfig) -> Self {
        Self {
            command: command.into(),
            models,
            data,
            conditions: vec![Condition::Clean],
            batch_size: 100,
            seed: 0,
            device: DeviceChoice::Cpu,
            out_dir: PathBuf::from("results"),
            shard: None,
            exports: Exports::default(),
            fresh: false,
            suite: None,
        }
    }

    /// Whether any condition reads the plan's data set (pre-made corruptions bring their own).
    pub fn needs_base_data(&self) -> bool {
        self.conditions.iter().any(|c| {
            !matches!(
                c,
                Condition::Corruption {
                    source: crate::evaluate::condition::CorruptionSource::Premade(_),
                    ..
                }
            )
        })
    }

    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::input("--batch-size must be at least 1"));
        }
        if self.conditions.is_empty() {
            return Err(Error::input("the plan has no conditions to evaluate"));
        }
        if self.exports.any() {
            if self.models.len() > 1 {
                return Err(Error::input("exports need a plan with a single model"));
            }
            if self.shard.is_some() {
                return Err(Error::input("exports cannot be combined with --shard"));
            }
        }
        if self.models.is_empty() && self.exports.corrupted.is_none() {
            return Err(Error::input("the plan has no models to evaluate"));
        }
        Ok(())
    }
}
