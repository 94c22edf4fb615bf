//! Benchmark suites: models × data × conditions in a TOML file (or a preset stored in
//! `suites/`), turned into a plan for the runner; sharding across machines and merging shards.
//!
//! ```toml
//! name = "ci"
//! clean = true
//! [data]
//! dataset = "cifar10"       # path = "…" (default: the bundled images), limit = 200
//! [[model]]
//! label = "SDNet-18"        # name in tables (default: the architecture)
//! name = "sdnet18"          # checkpoint = "…", width = 0.25, lambda = 0.1, random_init = false,
//!                           # defense = "noise.json" (as --defense), bn_adapt = true
//! [[attack]]
//! attack = "pgd"            # fgsm | pgd | apgd | autoattack
//! eps = ["1/255", "8/255"]  # norm, alpha, steps, restarts, targeted, eot, random_start,
//!                           # modes = ["adaptive", "static", "transfer"]; for autoattack:
//!                           # version = "standard" (plus, rand, custom), attacks = [...],
//!                           # square_queries = 5000
//! [corruptions]
//! names = "all"             # as --corruptions; severities = [1, 2, 3, 4, 5]; preset; from
//! ```

pub mod baseline;
pub mod merge;
pub mod regress;
pub mod shard;

use std::path::{Path, PathBuf};

use attacks::Version;
use corruptions::{Corruption, Preset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::adversarial::{parse_norm, Budget, Targeting};
use crate::data::{DatasetKind, Split};
use crate::defense::{AttackMode, Schedule};
use crate::error::{Error, Result};
use crate::evaluate::condition::corruption_conditions;
use crate::evaluate::{
    AttackName, AttackOptions, Condition, CorruptionSource, DataConfig, Defense, EnsembleSpec,
    ModelEntry, Plan, SuiteOrigin,
};
use crate::models::load::hex;
use crate::models::{Arch, ModelConfig, Normalization, WeightsSource};

/// The presets, stored in the repository's `suites/` folder and compiled in.
pub const PRESETS: &[(&str, &str)] = &[
    ("ci", include_str!("../../suites/ci.toml")),
    ("cifar10", include_str!("../../suites/cifar10.toml")),
    ("cifar100", include_str!("../../suites/cifar100.toml")),
    ("imagenet", include_str!("../../suites/imagenet.toml")),
    (
        "robustbench-cifar10",
        include_str!("../../suites/robustbench-cifar10.toml"),
    ),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Evaluate clean accuracy too.
    #[serde(default = "yes")]
    pub clean: bool,
    pub data: SuiteData,
    #[serde(rename = "model", default)]
    pub models: Vec<SuiteModel>,
    #[serde(rename = "attack", default)]
    pub attacks: Vec<SuiteAttack>,
    pub corruptions: Option<SuiteCorruptions>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteData {
    pub dataset: String,
    pub path: Option<PathBuf>,
    /// The label file of a flat ImageNet validation folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    pub limit: Option<usize>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub seed: u64,
}

fn default_batch() -> usize {
    100
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteModel {
    pub label: Option<String>,
    pub name: String,
    pub checkpoint: Option<PathBuf>,
    pub width: Option<f64>,
    pub lambda: Option<f64>,
    /// A λ schedule, as `--defense` takes it (a .json path is relative to the suite file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defense: Option<String>,
    /// Test-time BatchNorm adaptation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bn_adapt: bool,
    #[serde(default)]
    pub random_init: bool,
    /// Normalisation inside the model, as `--normalize` takes it (default: the architecture's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteAttack {
    pub attack: String,
    #[serde(default = "default_norm")]
    pub norm: String,
    pub eps: Vec<String>,
    pub alpha: Option<String>,
    pub steps: Option<usize>,
    #[serde(default = "one")]
    pub restarts: usize,
    #[serde(default = "untargeted")]
    pub targeted: String,
    #[serde(default = "one")]
    pub eot: usize,
    #[serde(default = "yes")]
    pub random_start: bool,
    /// How defended models are attacked: adaptive, static, transfer (default adaptive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<String>,
    /// AutoAttack's version: standard (the default), plus, rand or custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The members of AutoAttack's custom version (apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<String>,
    /// Square's query budget inside AutoAttack (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub square_queries: Option<usize>,
}

impl SuiteAttack {
    /// The AutoAttack ensemble of an `autoattack` entry; other attacks refuse its fields, and
    /// AutoAttack refuses the step settings it fixes itself.
    fn ensemble(&self, name: AttackName) -> std::result::Result<Option<EnsembleSpec>, String> {
        if name != AttackName::AutoAttack {
            if self.version.is_some() || !self.attacks.is_empty() || self.square_queries.is_some() {
                return Err("version, attacks and square_queries are AutoAttack settings".into());
            }
            return Ok(None);
        }
        let fixed = [
            ("alpha", self.alpha.is_some()),
            ("steps", self.steps.is_some()),
            ("restarts", self.restarts != 1),
            ("eot", self.eot != 1),
            ("random_start", !self.random_start),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, set)| *set) {
            return Err(format!(
                "{field}: AutoAttack's members keep their own iteration counts, restarts and \
                 starts (choose a version, or attacks = [...] with version = \"custom\")"
            ));
        }
        let spec = EnsembleSpec::parse(
            self.version.as_deref().unwrap_or("standard"),
            &self.attacks,
            self.square_queries,
        )?;
        if spec.version == Version::Custom && spec.members.is_empty() {
            return Err(
                "version = \"custom\" needs attacks = [...] (e.g. [\"apgd-ce\", \"square\"])"
                    .into(),
            );
        }
        Ok(Some(spec))
    }
}

fn default_norm() -> String {
    "linf".into()
}
fn one() -> usize {
    1
}
fn untargeted() -> String {
    "none".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteCorruptions {
    #[serde(default = "all")]
    pub names: String,
    #[serde(default = "all_severities")]
    pub severities: Vec<u8>,
    pub preset: Option<String>,
    /// A pre-made CIFAR-10-C / ImageNet-C directory instead of on-the-fly corruptions.
    pub from: Option<PathBuf>,
    /// Evaluate these corruptions only on a pre-made set (`from`, or `suite run --data-c`):
    /// without one the section is left out (RobustBench's leaderboards use CIFAR-10-C itself).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub premade_only: bool,
}

fn all() -> String {
    "all".into()
}
fn all_severities() -> Vec<u8> {
    vec![1, 2, 3, 4, 5]
}

/// Models and data a preset is extended with on the command line.
#[derive(Clone, Debug, Default)]
pub struct Extension {
    /// `LABEL=ARCH` pairs.
    pub models: Vec<(String, String)>,
    /// `LABEL=SPEC` pairs (`--normalize` per model).
    pub normalize: Vec<(String, String)>,
    /// A pre-made CIFAR-10-C / ImageNet-C directory for the suite's corruptions.
    pub data_c: Option<PathBuf>,
}

/// Overrides given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub limit: Option<usize>,
    pub batch_size: Option<usize>,
    /// `label=path` pairs.
    pub checkpoints: Vec<(String, PathBuf)>,
}

/// A suite and where it came from (for error messages and relative paths).
#[derive(Clone, Debug)]
pub struct Suite {
    pub file: SuiteFile,
    /// "preset ci" or the file's path.
    pub origin: String,
    /// Relative paths inside a suite file are relative to its folder.
    pub base_dir: PathBuf,
}

impl Suite {
    /// A preset name or a path to a TOML file.
    pub fn load(what: &str) -> Result<Self> {
        if let Some((_, text)) = PRESETS.iter().find(|(name, _)| *name == what) {
            return Self::parse(text, &format!("preset {what}"), Path::new("."));
        }
        let path = Path::new(what);
        if path.extension().and_then(|e| e.to_str()) != Some("toml") && !path.exists() {
            return Err(Error::input(format!(
                "unknown suite '{what}': expected a preset ({}) or a .toml file",
                preset_names().join(", ")
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read suite", e))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Self> {
        let file: SuiteFile = toml::from_str(text)
            .map_err(|e| Error::input(format!("{origin}: {}", e.to_string().trim_end())))?;
        let suite = Self {
            file,
            origin: origin.to_string(),
            base_dir: base_dir.to_path_buf(),
        };
        suite.validate()?;
        Ok(suite)
    }

    fn bad(&self, what: String) -> Error {
        Error::input(format!("{}: {what}", self.origin))
    }

    fn validate(&self) -> Result<()> {
        let f = &self.file;
        f.data
            .dataset
            .parse::<DatasetKind>()
            .map_err(|e| self.bad(e.to_string()))?;
        for m in &f.models {
            Arch::from_name(&m.name).map_err(|e| self.bad(format!("[[model]] {e}")))?;
        }
        let mut labels: Vec<String> = f.models.iter().map(label_of).collect();
        labels.sort();
        if let Some(pair) = labels.windows(2).find(|p| p[0] == p[1]) {
            return Err(self.bad(format!(
                "two models are labelled '{}': give each a distinct label",
                pair[0]
            )));
        }
        self.conditions()?;
        Ok(())
    }

    /// The conditions of the suite, in table order: clean, corruptions, attacks.
    pub fn conditions(&self) -> Result<Vec<Condition>> {
        let f = &self.file;
        let mut conditions = Vec::new();
        if f.clean {
            conditions.push(Condition::Clean);
        }
        if let Some(c) = f
            .corruptions
            .as_ref()
            .filter(|c| !c.premade_only || c.from.is_some())
        {
            let selection = Corruption::parse_selection(&c.names)
                .map_err(|e| self.bad(format!("[corruptions] {e}")))?;
            for s in &c.severities {
                if !(1..=5).contains(s) {
                    return Err(self.bad(format!("[corruptions] severity {s} is outside 1–5")));
                }
            }
            let source = match (&c.from, &c.preset) {
                (Some(dir), _) => CorruptionSource::Premade(self.base_dir.join(dir)),
                (None, Some(p)) => CorruptionSource::OnTheFly(
                    p.parse::<Preset>()
                        .map_err(|e| self.bad(format!("[corruptions] {e}")))?,
                ),
                (None, None) if f.data.dataset == "imagenet" => {
                    CorruptionSource::OnTheFly(Preset::Imagenet)
                }
                (None, None) => CorruptionSource::OnTheFly(Preset::Cifar),
            };
            conditions.extend(corruption_conditions(&selection, &c.severities, &source));
        }
        for a in &f.attacks {
            conditions.extend(self.attack_conditions(a)?);
        }
        if conditions.is_empty() {
            return Err(
                self.bad("no conditions (clean = false and no attacks or corruptions)".into())
            );
        }
        Ok(conditions)
    }

    fn attack_conditions(&self, a: &SuiteAttack) -> Result<Vec<Condition>> {
        let context = |e: Error| self.bad(format!("[[attack]] {}: {e}", a.attack));
        let name: AttackName = a
            .attack
            .parse()
            .map_err(|e: Error| self.bad(format!("[[attack]] {e}")))?;
        let ensemble = a.ensemble(name).map_err(|e| context(Error::input(e)))?;
        let norm = parse_norm(&a.norm).map_err(context)?;
        let eps = a
            .eps
            .iter()
            .map(|e| Budget::parse(e, "eps"))
            .collect::<Result<Vec<_>>>()
            .map_err(context)?;
        let alpha = a
            .alpha
            .as_deref()
            .map(|t| Budget::parse(t, "alpha"))
            .transpose()
            .map_err(context)?;
        let options = AttackOptions {
            alpha,
            steps: a.steps,
            random_start: a.random_start,
            restarts: a.restarts,
            targeting: a.targeted.parse::<Targeting>().map_err(context)?,
            eot: a.eot,
            modes: if a.modes.is_empty() {
                vec![AttackMode::Adaptive]
            } else {
                a.modes
                    .iter()
                    .map(|m| m.parse())
                    .collect::<Result<_>>()
                    .map_err(context)?
            },
            ensemble,
            ..AttackOptions::new(name, norm, eps)
        };
        options.conditions().map_err(context)
    }

    /// SHA-256 of the suite's definition (overrides included).
    pub fn digest(&self, overrides: &Overrides) -> String {
        let mut definition = serde_json::json!({
            "suite": self.file,
            "data": overrides.data, "limit": overrides.limit, "batch_size": overrides.batch_size,
            "checkpoints": overrides.checkpoints,
        });
        if let Some(labels) = &overrides.labels {
            definition["labels"] = serde_json::json!(labels); // older digests unchanged
        }
        let text = definition.to_string();
        hex(&Sha256::digest(text.as_bytes()))[..16].to_string()
    }

    /// The suite with models and a pre-made corruption set added on the command line
    /// (`--model LABEL=ARCH`, `--normalize LABEL=SPEC`, `--data-c DIR`).
    pub fn extended(mut self, extra: &Extension) -> Result<Self> {
        for (label, name) in &extra.models {
            self.file.models.push(SuiteModel {
                label: Some(label.clone()),
                name: name.clone(),
                checkpoint: None,
                width: None,
                lambda: None,
                defense: None,
                bn_adapt: false,
                random_init: false,
                normalize: None,
            });
        }
        for (label, spec) in &extra.normalize {
            let model = self
                .file
                .models
                .iter_mut()
                .find(|m| label_of(m) == *label)
                .ok_or_else(|| {
                    Error::input(format!(
                        "--normalize {label}=…: no model is labelled '{label}'"
                    ))
                })?;
            model.normalize = Some(spec.clone());
        }
        if let Some(dir) = &extra.data_c {
            let corruptions = self.file.corruptions.as_mut().ok_or_else(|| {
                Error::input(format!(
                    "--data-c: the suite ({}) has no [corruptions] section",
                    self.origin
                ))
            })?;
            corruptions.from = Some(dir.clone());
        }
        self.validate()?;
        Ok(self)
    }

    /// The plan of the suite; device, output directory and shard are the caller's.
    pub fn plan(&self, overrides: &Overrides) -> Result<Plan> {
        let f = &self.file;
        if f.models.is_empty() {
            return Err(self.bad(
                "no models: add [[model]] entries, or --model LABEL=ARCH (with --checkpoint \
                 LABEL=PATH) on the command line"
                    .into(),
            ));
        }
        for (label, _) in &overrides.checkpoints {
            if !f.models.iter().any(|m| &label_of(m) == label) {
                return Err(self.bad(format!(
                    "--checkpoint {label}=…: no model is labelled '{label}' (labels: {})",
                    f.models.iter().map(label_of).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let models = f
            .models
            .iter()
            .map(|m| self.entry(m, overrides))
            .collect::<Result<Vec<_>>>()?;
        let data = DataConfig {
            dataset: f.data.dataset.parse()?,
            path: overrides
                .data
                .clone()
                .or_else(|| f.data.path.as_ref().map(|p| self.base_dir.join(p))),
            split: Split::Test,
            limit: overrides.limit.or(f.data.limit),
            labels: overrides
                .labels
                .clone()
                .or_else(|| f.data.labels.as_ref().map(|p| self.base_dir.join(p))),
        };
        let mut plan = Plan::new("suite run", models, data);
        plan.conditions = self.conditions()?;
        plan.batch_size = overrides.batch_size.unwrap_or(f.data.batch_size);
        plan.seed = f.data.seed;
        plan.suite = Some(SuiteOrigin {
            name: f.name.clone(),
            digest: self.digest(overrides),
        });
        Ok(plan)
    }

    fn entry(&self, m: &SuiteModel, overrides: &Overrides) -> Result<ModelEntry> {
        let label = label_of(m);
        let checkpoint = overrides
            .checkpoints
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, p)| p.clone())
            .or_else(|| m.checkpoint.as_ref().map(|p| self.base_dir.join(p)));
        let weights = match (checkpoint, m.random_init) {
            (Some(path), _) => WeightsSource::Checkpoint(path),
            (None, true) => WeightsSource::Random(self.file.data.seed),
            (None, false) => WeightsSource::Bundled,
        };
        Ok(ModelEntry {
            label,
            config: ModelConfig {
                name: Some(m.name.clone()),
                weights,
                width: m.width,
                normalize: m
                    .normalize
                    .as_deref()
                    .map(Normalization::parse)
                    .transpose()
                    .map_err(|e| self.bad(format!("model '{}': {e}", label_of(m))))?,
                ..ModelConfig::default()
            },
            defense: self.defense_of(m)?,
        })
    }

    fn defense_of(&self, m: &SuiteModel) -> Result<Defense> {
        let context = |e: Error| self.bad(format!("model '{}': {e}", label_of(m)));
        if m.lambda.is_some() && m.defense.is_some() {
            return Err(context(Error::input("give lambda or defense, not both")));
        }
        let schedule = match (&m.defense, m.lambda) {
            (Some(spec), _) => {
                let path = self.base_dir.join(spec);
                let spec = if spec.ends_with(".json") {
                    path.to_string_lossy().into_owned()
                } else {
                    spec.clone()
                };
                Some(Schedule::parse(&spec).map_err(context)?)
            }
            (None, Some(lambda)) => {
                Some(Schedule::parse(&format!("fixed:all={lambda}")).map_err(context)?)
            }
            (None, None) => None,
        };
        Ok(Defense::from_parts(schedule, m.bn_adapt))
    }
}

fn label_of(m: &SuiteModel) -> String {
    m.label.clone().unwrap_or_else(|| m.name.clone())
}

pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}
