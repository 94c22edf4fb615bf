//! Model names, architectures and the settings that define a network.

use serde::{Deserialize, Serialize};

use crate::csc::Solver;
use crate::error::{Error, Result};

/// Which family of network, with its depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum Arch {
    /// ResNet-18/34 (BasicBlocks, widths 64…512).
    Resnet { depth: usize },
    /// SDNet-18/34: a CSC stem, the rest of the ResNet unchanged.
    Sdnet { depth: usize },
    /// SDNet-18/34-all: every 3×3 convolution is a CSC layer; ReLU only after a shortcut.
    SdnetAll { depth: usize, shortcut: bool },
    /// He et al. CIFAR ResNets (6n+2 layers, widths 16/32/64, parameter-free option-A shortcut).
    CifarResnet { depth: usize },
}

/// Input domain, which fixes the stem and the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// 32×32 images, 3×3 stem.
    Cifar,
    /// 224×224 images, 7×7 stride-2 stem and max-pool.
    Imagenet,
}

impl std::str::FromStr for Domain {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cifar" | "cifar10" | "cifar100" => Ok(Self::Cifar),
            "imagenet" => Ok(Self::Imagenet),
            other => Err(Error::input(format!(
                "unknown dataset kind '{other}' (expected cifar10, cifar100 or imagenet)"
            ))),
        }
    }
}

pub const CIFAR_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR_STD: [f32; 3] = [0.2023, 0.1994, 0.2010];
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Every name `robust-eval` accepts for `--model`.
pub const MODEL_NAMES: [&str; 13] = [
    "resnet18",
    "resnet34",
    "sdnet18",
    "sdnet34",
    "sdnet18-all",
    "sdnet34-all",
    "sdnet18-all-noshortcut",
    "sdnet34-all-noshortcut",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
];

impl Arch {
    pub fn from_name(name: &str) -> Result<Self> {
        let arch = match name {
            "resnet18" => Self::Resnet { depth: 18 },
            "resnet34" => Self::Resnet { depth: 34 },
            "sdnet18" => Self::Sdnet { depth: 18 },
            "sdnet34" => Self::Sdnet { depth: 34 },
            "sdnet18-all" => Self::SdnetAll {
                depth: 18,
                shortcut: true,
            },
            "sdnet34-all" => Self::SdnetAll {
                depth: 34,
                shortcut: true,
            },
            "sdnet18-all-noshortcut" => Self::SdnetAll {
                depth: 18,
                shortcut: false,
            },
            "sdnet34-all-noshortcut" => Self::SdnetAll {
                depth: 34,
                shortcut: false,
            },
            "resnet20" => Self::CifarResnet { depth: 20 },
            "resnet32" => Self::CifarResnet { depth: 32 },
            "resnet44" => Self::CifarResnet { depth: 44 },
            "resnet56" => Self::CifarResnet { depth: 56 },
            "resnet110" => Self::CifarResnet { depth: 110 },
            other => {
                return Err(Error::input(format!(
                    "unknown model '{other}'; known models: {}",
                    MODEL_NAMES.join(", ")
                )))
            }
        };
        Ok(arch)
    }

    pub fn name(&self) -> String {
        match *self {
            Self::Resnet { depth } | Self::CifarResnet { depth } => format!("resnet{depth}"),
            Self::Sdnet { depth } => format!("sdnet{depth}"),
            Self::SdnetAll {
                depth,
                shortcut: true,
            } => format!("sdnet{depth}-all"),
            Self::SdnetAll {
                depth,
                shortcut: false,
            } => format!("sdnet{depth}-all-noshortcut"),
        }
    }

    /// Blocks per stage.
    pub fn blocks(&self) -> Vec<usize> {
        match *self {
            Self::Resnet { depth } | Self::Sdnet { depth } | Self::SdnetAll { depth, .. } => {
                if depth == 18 {
                    vec![2, 2, 2, 2]
                } else {
                    vec![3, 4, 6, 3]
                }
            }
            Self::CifarResnet { depth } => vec![(depth - 2) / 6; 3],
        }
    }

    pub fn has_csc(&self) -> bool {
        matches!(self, Self::Sdnet { .. } | Self::SdnetAll { .. })
    }
}

/// CSC solver settings shared by every CSC layer of a model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CscSettings {
    pub lambda: f64,
    pub n_steps: usize,
    #[serde(with = "solver_name")]
    pub solver: Solver,
}

impl Default for CscSettings {
    fn default() -> Self {
        Self {
            lambda: 0.1,
            n_steps: 2,
            solver: Solver::Fista,
        }
    }
}

pub(crate) mod solver_name {
    use super::Solver;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Solver, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(match s {
            Solver::Fista => "fista",
            Solver::OfficialFista => "official",
            Solver::Ista => "ista",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Solver, D::Error> {
        let s = String::deserialize(de)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything needed to build a network (weights aside).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    pub domain: Domain,
    pub num_classes: usize,
    /// Width multiplier of the 18/34 families (1.0 = 64 channels in the first stage).
    pub width: f64,
    pub csc: CscSettings,
}

impl ModelSpec {
    pub fn new(name: &str, domain: Domain, num_classes: usize) -> Result<Self> {
        let arch = Arch::from_name(name)?;
        if matches!(arch, Arch::CifarResnet { .. }) && domain == Domain::Imagenet {
            return Err(Error::input(format!(
                "model '{name}' is a CIFAR architecture; it has no ImageNet variant"
            )));
        }
        if num_classes == 0 {
            return Err(Error::input("number of classes must be at least 1"));
        }
        Ok(Self {
            arch,
            domain,
            num_classes,
            width: 1.0,
            csc: CscSettings::default(),
        })
    }

    pub fn with_width(mut self, width: f64) -> Result<Self> {
        if !(width.is_finite() && width > 0.0) {
            return Err(Error::input(format!(
                "width multiplier must be positive, got {width}"
            )));
        }
        if matches!(self.arch, Arch::CifarResnet { .. }) && width != 1.0 {
            return Err(Error::input(
                "the width multiplier applies to the 18/34 families only",
            ));
        }
        self.width = width;
        Ok(self)
    }

    pub fn name(&self) -> String {
        self.arch.name()
    }

    /// Channels of each stage.
    pub fn stage_widths(&self) -> Vec<usize> {
        match self.arch {
            Arch::CifarResnet { .. } => vec![16, 32, 64],
            _ => {
                let base = ((64.0 * self.width).round() as usize).max(1);
                vec![base, 2 * base, 4 * base, 8 * base]
            }
        }
    }

    /// Per-channel mean and std applied inside the model (inputs are in [0,1]).
    pub fn normalization(&self) -> ([f32; 3], [f32; 3]) {
        match (self.arch, self.domain) {
            // The pytorch_resnet_cifar10 checkpoints were trained with ImageNet statistics.
            (Arch::CifarResnet { .. }, _) | (_, Domain::Imagenet) => (IMAGENET_MEAN, IMAGENET_STD),
            (_, Domain::Cifar) => (CIFAR_MEAN, CIFAR_STD),
        }
    }

    /// Input side length the model is meant for.
    pub fn input_size(&self) -> usize {
        match self.domain {
            Domain::Cifar => 32,
            Domain::Imagenet => 224,
        }
    }
}
