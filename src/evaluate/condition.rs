//! What a cell measures under: clean images, a corruption at a severity, or an attack with its
//! full configuration. Conditions are plain data: they name themselves, serialise their settings
//! and say what they cost; executing them is [`super::executor`]'s job.

use std::path::PathBuf;

use attacks::{Apgd, AttackConfig, AutoAttack, Fgsm, Norm, Pgd, Version};
use corruptions::{Corruption, Preset};
use serde_json::{json, Value};

use crate::adversarial::{Budget, Targeting};
use crate::defense::AttackMode;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Clean,
    Corruption {
        corruption: Corruption,
        severity: u8,
        source: CorruptionSource,
    },
    Attack(AttackCondition),
}

/// Where corrupted images come from.
#[derive(Clone, Debug, PartialEq)]
pub enum CorruptionSource {
    /// Generated from the clean images with a parameter preset and the plan's seed.
    OnTheFly(Preset),
    /// A released (or exported) CIFAR-10-C / ImageNet-C directory.
    Premade(PathBuf),
}

/// An attack as it ran: the attack crate's struct (defaults included) plus how ε and α were
/// written and how the attack is driven.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackCondition {
    pub config: AttackConfig,
    /// ε as the user wrote it ("8/255").
    pub eps_text: String,
    /// α as the user wrote it, when given.
    pub alpha_text: Option<String>,
    pub restarts: usize,
    pub targeting: Targeting,
    /// How a defended model is attacked (the same for an undefended one).
    pub mode: AttackMode,
}

impl Condition {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Corruption { .. } => "corruption",
            Self::Attack(_) => "attack",
        }
    }

    /// Short name inside a cell key: `clean`, `gaussian_noise(3)`, `pgd(linf,8/255)`.
    pub fn label(&self) -> String {
        match self {
            Self::Clean => "clean".into(),
            Self::Corruption {
                corruption,
                severity,
                ..
            } => format!("{corruption}({severity})"),
            Self::Attack(a) => match a.mode {
                AttackMode::Adaptive => format!("{}({},{})", a.name(), a.norm(), a.eps_text),
                mode => format!("{}({},{},{mode})", a.name(), a.norm(), a.eps_text),
            },
        }
    }

    /// The condition as per-condition λ tables name it: its label, whatever the attack mode
    /// (a transfer attack on `pgd(linf,2/255)` meets the λ of `pgd(linf,2/255)`).
    pub fn schedule_key(&self) -> String {
        match self {
            Self::Attack(a) => format!("{}({},{})", a.name(), a.norm(), a.eps_text),
            _ => self.label(),
        }
    }

    /// Whether the plan's seed changes the outcome (random draws), so it belongs to the cell.
    pub fn uses_seed(&self) -> bool {
        match self {
            Self::Clean => false,
            Self::Corruption { source, .. } => matches!(source, CorruptionSource::OnTheFly(_)),
            Self::Attack(_) => true,
        }
    }

    /// Every setting that decides the outcome.
    pub fn settings(&self) -> Value {
        match self {
            Self::Clean => json!({"kind": "clean"}),
            Self::Corruption {
                corruption,
                severity,
                source,
            } => {
                let source = match source {
                    CorruptionSource::OnTheFly(preset) => {
                        json!({"generated": preset_name(*preset)})
                    }
                    CorruptionSource::Premade(dir) => json!({"premade": dir}),
                };
                json!({"kind": "corruption", "corruption": corruption.name(),
                       "severity": severity, "source": source})
            }
            Self::Attack(a) => {
                let mut settings = json!({
                    "kind": "attack",
                    "attack": a.config,
                    "eps": a.eps_text,
                    "alpha_as_written": a.alpha_text,
                    "restarts": a.restarts,
                    "targeted": a.targeting.to_string(),
                });
                // Adaptive is the default and was the only mode: its cells keep their digests.
                if a.mode != AttackMode::Adaptive {
                    settings["against_defense"] = json!(a.mode);
                }
                if let AttackConfig::AutoAttack(_) = a.config {
                    settings["members"] = json!(a.config.members());
                }
                settings
            }
        }
    }

    /// Relative cost of one image (a clean forward pass = 1), for progress and sharding.
    pub fn cost_per_image(&self) -> f64 {
        match self {
            Self::Clean | Self::Corruption { .. } => 1.0,
            // Clean pass, then per attempt forward + backward (≈ 3 passes) per gradient.
            Self::Attack(a) => 2.0 + 3.0 * (a.restarts * a.config.gradient_passes()) as f64,
        }
    }

    /// Warnings about questionable settings, known before anything runs.
    pub fn warnings(&self) -> Vec<String> {
        let Self::Attack(a) = self else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        let eps = a.config.eps();
        if a.config.norm() == Norm::Linf && eps >= 1.0 {
            warnings.push(format!(
                "ε = {} covers the whole [0, 1] pixel range: any image can be reached \
                 (did you mean {}/255?)",
                a.eps_text, a.eps_text
            ));
        }
        if let Some(alpha) = a.config.alpha() {
            if alpha > eps && eps > 0.0 {
                let alpha_text = a.alpha_text.clone().unwrap_or_else(|| as_255ths(alpha));
                warnings.push(format!(
                    "α = {alpha_text} exceeds ε = {}: every step overshoots the ball and is projected back",
                    a.eps_text
                ));
            }
        }
        warnings
    }

    /// Orders conditions as tables show them: clean, corruptions (in the benchmark's order) by
    /// severity, then attacks by name, norm and ε.
    pub fn sort_key(&self) -> String {
        match self {
            Self::Clean => "0".into(),
            Self::Corruption {
                corruption,
                severity,
                ..
            } => {
                let position = Corruption::ALL.iter().position(|c| c == corruption);
                format!("1-{:02}-{severity}", position.unwrap_or(99))
            }
            Self::Attack(a) => format!(
                "2-{}-{}-{:024.15}-{}-{}",
                a.name(),
                a.norm(),
                a.eps(),
                a.targeting,
                a.mode
            ),
        }
    }

    /// The columns of the long-format results: corruption, severity, attack, norm, ε.
    pub fn columns(&self) -> [String; 5] {
        match self {
            Self::Clean => Default::default(),
            Self::Corruption {
                corruption,
                severity,
                ..
            } => [
                corruption.name().into(),
                severity.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ],
            Self::Attack(a) => [
                String::new(),
                String::new(),
                a.name(),
                a.norm().to_string(),
                a.eps_text.clone(),
            ],
        }
    }
}

impl AttackCondition {
    /// The attack's name in labels and tables: the attacks crate's short name, or for an
    /// AutoAttack ensemble `autoattack`, `autoattack-plus`, `autoattack-rand`, or the members
    /// of a custom one joined by `+` (`apgd-t`, `apgd-ce+square`).
    pub fn name(&self) -> String {
        match &self.config {
            AttackConfig::AutoAttack(a) => match a.version {
                Version::Standard => "autoattack".into(),
                Version::Custom => a.member_names().join("+"),
                version => format!("autoattack-{version}"),
            },
            other => other.name().into(),
        }
    }

    pub fn norm(&self) -> Norm {
        self.config.norm()
    }

    pub fn eps(&self) -> f64 {
        self.config.eps()
    }
}

/// `k/255` when the value is a whole number of 255ths (how budgets are usually written).
fn as_255ths(value: f64) -> String {
    let k = value * 255.0;
    if (k - k.round()).abs() < 1e-9 {
        format!("{}/255", k.round())
    } else {
        format!("{value}")
    }
}

pub fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Cifar => "cifar",
        Preset::Imagenet => "imagenet",
    }
}

/// Which attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackName {
    Fgsm,
    Pgd,
    Apgd,
    /// The AutoAttack ensemble of [`AttackOptions::ensemble`].
    AutoAttack,
}

/// Which AutoAttack ensemble.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleSpec {
    pub version: Version,
    /// The members of a custom version, by AutoAttack name.
    pub members: Vec<String>,
    /// Square's query budget, when not the version's 5000.
    pub square_queries: Option<usize>,
}

impl EnsembleSpec {
    /// The spec of a version name and member names as users write them (members trimmed and
    /// lower-cased); `build` checks the members.
    pub fn parse(
        version: &str,
        members: &[String],
        square_queries: Option<usize>,
    ) -> std::result::Result<Self, String> {
        Ok(Self {
            version: version.parse()?,
            members: members
                .iter()
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect(),
            square_queries,
        })
    }

    /// The ensemble at `eps`, checked.
    pub fn build(&self, eps: f64, norm: Norm) -> Result<AutoAttack> {
        let mut ensemble = match self.version {
            Version::Custom => {
                let names: Vec<&str> = self.members.iter().map(String::as_str).collect();
                AutoAttack::custom(&names, eps, norm).map_err(Error::input)?
            }
            version => {
                if !self.members.is_empty() {
                    return Err(Error::input(format!(
                        "--attacks lists the members of --version custom; the {version} version \
                         has its own"
                    )));
                }
                AutoAttack::new(version, eps, norm).map_err(Error::input)?
            }
        };
        if let Some(queries) = self.square_queries {
            if queries == 0 {
                return Err(Error::input("--square-queries must be at least 1"));
            }
            if !ensemble.member_names().iter().any(|m| m == "square") {
                return Err(Error::input(
                    "--square-queries: the ensemble has no Square member",
                ));
            }
            for member in &mut ensemble.members {
                if let AttackConfig::Square(square) = &mut member.attack {
                    square.queries = queries;
                }
            }
        }
        Ok(ensemble)
    }
}

impl std::str::FromStr for AttackName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fgsm" | "fgm" => Ok(Self::Fgsm),
            "pgd" => Ok(Self::Pgd),
            "apgd" | "apgd-ce" => Ok(Self::Apgd),
            "autoattack" => Ok(Self::AutoAttack),
            other => Err(Error::input(format!(
                "unknown attack '{other}' (expected fgsm, pgd, apgd or autoattack)"
            ))),
        }
    }
}

/// An attack as a user describes it: one per ε of the list, every other setting shared; unset
/// settings take the `attacks` crate's defaults.
#[derive(Clone, Debug)]
pub struct AttackOptions {
    pub attack: AttackName,
    pub norm: Norm,
    pub eps: Vec<Budget>,
    pub alpha: Option<Budget>,
    pub steps: Option<usize>,
    pub random_start: bool,
    pub restarts: usize,
    pub targeting: Targeting,
    pub eot: usize,
    /// One condition per ε and mode.
    pub modes: Vec<AttackMode>,
    /// The ensemble, for [`AttackName::AutoAttack`].
    pub ensemble: Option<EnsembleSpec>,
}

impl AttackOptions {
    pub fn new(attack: AttackName, norm: Norm, eps: Vec<Budget>) -> Self {
        Self {
            attack,
            norm,
            eps,
            alpha: None,
            steps: None,
            random_start: true,
            restarts: 1,
            targeting: Targeting::Untargeted,
            eot: 1,
            modes: vec![AttackMode::Adaptive],
            ensemble: None,
        }
    }

    /// The ε list users get when they give none: 8/255 (L∞), 0.5 (L2).
    pub fn default_eps(norm: Norm) -> &'static str {
        match norm {
            Norm::Linf => "8/255",
            Norm::L2 => "0.5",
        }
    }

    /// One attack condition per ε, checked.
    pub fn conditions(&self) -> Result<Vec<Condition>> {
        if self.restarts == 0 || self.eot == 0 {
            return Err(Error::input("--restarts and --eot must be at least 1"));
        }
        if self.steps == Some(0) {
            return Err(Error::input("--steps must be at least 1"));
        }
        if self.alpha.as_ref().is_some_and(|a| a.value == 0.0) {
            return Err(Error::input("--alpha must be positive"));
        }
        if self.eps.is_empty() {
            return Err(Error::input("--eps: no value given"));
        }
        if self.modes.is_empty() {
            return Err(Error::input("--attack-mode: no mode given"));
        }
        if self.attack == AttackName::AutoAttack && self.targeting != Targeting::Untargeted {
            return Err(Error::input(
                "AutoAttack is untargeted (APGD-T and FAB-T choose their own targets)",
            ));
        }
        let mut conditions = Vec::new();
        for eps in &self.eps {
            let condition = self.condition(eps)?;
            for &mode in &self.modes {
                conditions.push(Condition::Attack(AttackCondition {
                    mode,
                    ..condition.clone()
                }));
            }
        }
        Ok(conditions)
    }

    fn condition(&self, eps: &Budget) -> Result<AttackCondition> {
        let config = match self.attack {
            AttackName::Fgsm => AttackConfig::Fgsm(Fgsm {
                eot: self.eot,
                ..Fgsm::new(eps.value, self.norm)
            }),
            AttackName::Pgd => {
                let defaults = Pgd::new(eps.value, self.norm);
                AttackConfig::Pgd(Pgd {
                    alpha: self.alpha.as_ref().map_or(defaults.alpha, |a| a.value),
                    steps: self.steps.unwrap_or(defaults.steps),
                    random_start: self.random_start,
                    eot: self.eot,
                    ..defaults
                })
            }
            AttackName::Apgd => {
                let defaults = Apgd::new(eps.value, self.norm);
                AttackConfig::Apgd(Apgd {
                    steps: self.steps.unwrap_or(defaults.steps),
                    eot: self.eot,
                    ..defaults
                })
            }
            AttackName::AutoAttack => {
                let spec = self.ensemble.as_ref().ok_or_else(|| {
                    Error::input("autoattack needs a version (standard, plus, rand or custom)")
                })?;
                AttackConfig::AutoAttack(spec.build(eps.value, self.norm)?)
            }
        };
        Ok(AttackCondition {
            config,
            eps_text: eps.text.clone(),
            alpha_text: self.alpha.as_ref().map(|a| a.text.clone()),
            restarts: self.restarts,
            targeting: self.targeting,
            mode: AttackMode::Adaptive,
        })
    }
}

/// The corruption conditions of a selection × severities, corruption-major.
pub fn corruption_conditions(
    selection: &[Corruption],
    severities: &[u8],
    source: &CorruptionSource,
) -> Vec<Condition> {
    selection
        .iter()
        .flat_map(|&corruption| {
            severities
                .iter()
                .map(move |&severity| Condition::Corruption {
                    corruption,
                    severity,
                    source: source.clone(),
                })
        })
        .collect()
}
