//! Model names, architectures and the settings that define a network.

use serde::{Deserialize, Serialize};

use crate::csc::Solver;
use crate::error::{Error, Result};

/// Which family of network, with its depth (and width where the family has one).
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
    /// The WideResNet of the RobustBench CIFAR leaderboards (pre-activation blocks, ReLU).
    WideResnet { depth: usize, widen: usize },
    /// DeepMind's WideResNet (Gowal 2020, Rebuffi 2021, Wang 2023): pre-activation blocks with
    /// Swish/SiLU, SAME padding at stride 2, CIFAR mean/std inside.
    DmWideResnet { depth: usize, widen: usize },
    /// RobustBench's PreActResNet-18 (shortcut from the block input, no BatchNorm before the head).
    PreactResnet { depth: usize },
    /// torchvision's ResNet-50/101/152 and Wide ResNet-50-2/101-2 (Bottleneck blocks; the
    /// inner width is `planes · group_width / 64`).
    BottleneckResnet { depth: usize, group_width: usize },
}

/// The nonlinearity of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    /// x · sigmoid(x) (DeepMind's "Swish").
    Silu,
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
/// The statistics DeepMind's CIFAR models (and RobustBench's wrappers) normalise with.
pub const DM_CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const DM_CIFAR10_STD: [f32; 3] = [0.2471, 0.2435, 0.2616];
pub const DM_CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
pub const DM_CIFAR100_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

/// The names `robust-eval models` lists. `--model` also takes any valid `wrn-D-W` and
/// `dm-wrn-D-W` (depth D = 6n + 4, width W ≥ 1).
pub const MODEL_NAMES: [&str; 27] = [
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
    "wrn-28-10",
    "wrn-34-10",
    "wrn-34-20",
    "wrn-70-16",
    "dm-wrn-28-10",
    "dm-wrn-34-10",
    "dm-wrn-34-20",
    "dm-wrn-70-16",
    "preact-resnet18",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide-resnet50-2",
    "wide-resnet101-2",
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
            "preact-resnet18" => Self::PreactResnet { depth: 18 },
            "resnet50" => Self::bottleneck(50, 64),
            "resnet101" => Self::bottleneck(101, 64),
            "resnet152" => Self::bottleneck(152, 64),
            "wide-resnet50-2" => Self::bottleneck(50, 128),
            "wide-resnet101-2" => Self::bottleneck(101, 128),
            other => return Self::wide_from_name(other),
        };
        Ok(arch)
    }

    fn bottleneck(depth: usize, group_width: usize) -> Self {
        Self::BottleneckResnet { depth, group_width }
    }

    /// `wrn-D-W` and `dm-wrn-D-W`.
    fn wide_from_name(name: &str) -> Result<Self> {
        let unknown = || {
            Error::input(format!(
                "unknown model '{name}'; known models: {} (and any wrn-D-W or dm-wrn-D-W with \
                 D = 6n + 4)",
                MODEL_NAMES.join(", ")
            ))
        };
        let (deepmind, rest) = match name.strip_prefix("dm-wrn-") {
            Some(rest) => (true, rest),
            None => (false, name.strip_prefix("wrn-").ok_or_else(unknown)?),
        };
        let (depth, widen) = rest.split_once('-').ok_or_else(unknown)?;
        let parse = |s: &str| {
            s.parse::<usize>()
                .ok()
                .filter(|v| *v > 0 && !s.starts_with('0'))
        };
        let (Some(depth), Some(widen)) = (parse(depth), parse(widen)) else {
            return Err(unknown());
        };
        if depth < 10 || (depth - 4) % 6 != 0 {
            return Err(Error::input(format!(
                "model '{name}': a WideResNet's depth is 6n + 4 with n ≥ 1 (10, 16, 22, 28, 34, \
                 40, …, 70), got {depth}"
            )));
        }
        Ok(if deepmind {
            Self::DmWideResnet { depth, widen }
        } else {
            Self::WideResnet { depth, widen }
        })
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
            Self::WideResnet { depth, widen } => format!("wrn-{depth}-{widen}"),
            Self::DmWideResnet { depth, widen } => format!("dm-wrn-{depth}-{widen}"),
            Self::PreactResnet { depth } => format!("preact-resnet{depth}"),
            Self::BottleneckResnet {
                depth,
                group_width: 64,
            } => format!("resnet{depth}"),
            Self::BottleneckResnet { depth, group_width } => {
                format!("wide-resnet{depth}-{}", group_width / 64)
            }
        }
    }

    /// The architecture as papers and RobustBench's leaderboards name it.
    pub fn published_name(&self) -> String {
        match *self {
            Self::WideResnet { depth, widen } => format!("WideResNet-{depth}-{widen}"),
            Self::DmWideResnet { depth, widen } => {
                format!("WideResNet-{depth}-{widen} (DeepMind, Swish)")
            }
            Self::PreactResnet { depth } => format!("PreActResNet-{depth}"),
            Self::BottleneckResnet {
                depth,
                group_width: 64,
            } => format!("ResNet-{depth}"),
            Self::BottleneckResnet { depth, group_width } => {
                format!("WideResNet-{depth}-{}", group_width / 64)
            }
            Self::Resnet { depth } | Self::CifarResnet { depth } => format!("ResNet-{depth}"),
            Self::Sdnet { depth } => format!("SDNet-{depth}"),
            Self::SdnetAll { depth, .. } => format!("SDNet-{depth}-all"),
        }
    }

    /// Blocks per stage.
    pub fn blocks(&self) -> Vec<usize> {
        match *self {
            Self::Resnet { depth }
            | Self::Sdnet { depth }
            | Self::SdnetAll { depth, .. }
            | Self::PreactResnet { depth } => {
                if depth == 18 {
                    vec![2, 2, 2, 2]
                } else {
                    vec![3, 4, 6, 3]
                }
            }
            Self::CifarResnet { depth } => vec![(depth - 2) / 6; 3],
            Self::WideResnet { depth, .. } | Self::DmWideResnet { depth, .. } => {
                vec![(depth - 4) / 6; 3]
            }
            Self::BottleneckResnet { depth, .. } => match depth {
                50 => vec![3, 4, 6, 3],
                101 => vec![3, 4, 23, 3],
                _ => vec![3, 8, 36, 3],
            },
        }
    }

    pub fn has_csc(&self) -> bool {
        matches!(self, Self::Sdnet { .. } | Self::SdnetAll { .. })
    }

    /// Pre-activation networks: BatchNorm and activation open each block, the stem is a bare
    /// convolution, and a last BatchNorm + activation precede the pooling (except in
    /// RobustBench's PreActResNet-18).
    pub fn is_preactivation(&self) -> bool {
        matches!(
            self,
            Self::WideResnet { .. } | Self::DmWideResnet { .. } | Self::PreactResnet { .. }
        )
    }

    pub fn activation(&self) -> Activation {
        match self {
            Self::DmWideResnet { .. } => Activation::Silu,
            _ => Activation::Relu,
        }
    }

    /// Families that take `--width` (the 18/34 ResNets and SDNets).
    fn scalable(&self) -> bool {
        matches!(
            self,
            Self::Resnet { .. } | Self::Sdnet { .. } | Self::SdnetAll { .. }
        )
    }

    /// Families defined for 32×32 inputs only.
    fn cifar_only(&self) -> bool {
        matches!(
            self,
            Self::CifarResnet { .. }
                | Self::WideResnet { .. }
                | Self::DmWideResnet { .. }
                | Self::PreactResnet { .. }
        )
    }
}

/// Per-channel mean and standard deviation applied to [0,1] images inside the model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The identity: images go into the first layer as they are.
    pub const NONE: Self = Self {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Result<Self> {
        if mean.iter().chain(&std).any(|v| !v.is_finite()) || std.iter().any(|s| *s <= 0.0) {
            return Err(Error::input(format!(
                "normalisation mean {mean:?} / std {std:?}: every value must be finite and every \
                 std positive"
            )));
        }
        Ok(Self { mean, std })
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::NONE
    }

    /// `none`, `imagenet`, `cifar10`, `cifar100` (DeepMind's statistics), `M,S` (one mean and
    /// std for every channel) or `m1,m2,m3,s1,s2,s3`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "none" => return Ok(Self::NONE),
            "imagenet" => return Self::new(IMAGENET_MEAN, IMAGENET_STD),
            "cifar10" => return Self::new(DM_CIFAR10_MEAN, DM_CIFAR10_STD),
            "cifar100" => return Self::new(DM_CIFAR100_MEAN, DM_CIFAR100_STD),
            _ => {}
        }
        let bad = || {
            Error::input(format!(
                "--normalize '{text}': expected none, imagenet, cifar10, cifar100, MEAN,STD or \
                 m1,m2,m3,s1,s2,s3"
            ))
        };
        let values = text
            .split(',')
            .map(|v| v.trim().parse::<f32>().map_err(|_| bad()))
            .collect::<Result<Vec<f32>>>()?;
        match values.as_slice() {
            [m, s] => Self::new([*m; 3], [*s; 3]),
            [m1, m2, m3, s1, s2, s3] => Self::new([*m1, *m2, *m3], [*s1, *s2, *s3]),
            _ => Err(bad()),
        }
    }

    /// How results and the `models` table write it.
    pub fn describe(&self) -> String {
        if self.is_identity() {
            "none".into()
        } else {
            let list = |v: &[f32; 3]| v.map(|x| x.to_string()).join(",");
            format!("mean {} std {}", list(&self.mean), list(&self.std))
        }
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
    /// Normalisation other than the architecture's default (`--normalize`, or the mean/std
    /// buffers a checkpoint carries); `None` is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization_override: Option<Normalization>,
}

impl ModelSpec {
    pub fn new(name: &str, domain: Domain, num_classes: usize) -> Result<Self> {
        let arch = Arch::from_name(name)?;
        if arch.cifar_only() && domain == Domain::Imagenet {
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
            normalization_override: None,
        })
    }

    pub fn with_width(mut self, width: f64) -> Result<Self> {
        if !(width.is_finite() && width > 0.0) {
            return Err(Error::input(format!(
                "width multiplier must be positive, got {width}"
            )));
        }
        if !self.arch.scalable() && width != 1.0 {
            return Err(Error::input(format!(
                "the width multiplier applies to the 18/34 ResNet and SDNet families only, not \
                 {}",
                self.name()
            )));
        }
        self.width = width;
        Ok(self)
    }

    pub fn name(&self) -> String {
        self.arch.name()
    }

    /// Output channels of the stem.
    pub fn stem_width(&self) -> usize {
        match self.arch {
            Arch::WideResnet { .. } | Arch::DmWideResnet { .. } => 16,
            Arch::BottleneckResnet { .. } => 64,
            _ => self.stage_widths()[0],
        }
    }

    /// Output channels of each stage.
    pub fn stage_widths(&self) -> Vec<usize> {
        match self.arch {
            Arch::CifarResnet { .. } => vec![16, 32, 64],
            Arch::WideResnet { widen, .. } | Arch::DmWideResnet { widen, .. } => {
                vec![16 * widen, 32 * widen, 64 * widen]
            }
            Arch::BottleneckResnet { .. } => vec![256, 512, 1024, 2048],
            _ => {
                let base = ((64.0 * self.width).round() as usize).max(1);
                vec![base, 2 * base, 4 * base, 8 * base]
            }
        }
    }

    /// Inner width of a Bottleneck block in each stage (torchvision's `planes · group_width / 64`).
    pub fn bottleneck_widths(&self) -> Vec<usize> {
        let group_width = match self.arch {
            Arch::BottleneckResnet { group_width, .. } => group_width,
            _ => 64,
        };
        [64, 128, 256, 512]
            .iter()
            .map(|planes| planes * group_width / 64)
            .collect()
    }

    /// The architecture's own normalisation, before any override.
    pub fn default_normalization(&self) -> Normalization {
        let (mean, std) = match (self.arch, self.domain) {
            // The pytorch_resnet_cifar10 checkpoints were trained with ImageNet statistics.
            (Arch::CifarResnet { .. }, _) | (_, Domain::Imagenet) => (IMAGENET_MEAN, IMAGENET_STD),
            // RobustBench's WideResNet and PreActResNet take [0,1] images as they are.
            (Arch::WideResnet { .. } | Arch::PreactResnet { .. }, _) => return Normalization::NONE,
            (Arch::DmWideResnet { .. }, _) if self.num_classes == 100 => {
                (DM_CIFAR100_MEAN, DM_CIFAR100_STD)
            }
            (Arch::DmWideResnet { .. }, _) => (DM_CIFAR10_MEAN, DM_CIFAR10_STD),
            (_, Domain::Cifar) => (CIFAR_MEAN, CIFAR_STD),
        };
        Normalization { mean, std }
    }

    /// The normalisation applied inside the model (inputs are in [0,1]).
    pub fn normalization_used(&self) -> Normalization {
        self.normalization_override
            .unwrap_or_else(|| self.default_normalization())
    }

    /// Per-channel mean and std applied inside the model.
    pub fn normalization(&self) -> ([f32; 3], [f32; 3]) {
        let n = self.normalization_used();
        (n.mean, n.std)
    }

    /// Sets the normalisation; the architecture's default is stored as no override.
    pub fn set_normalization(&mut self, normalization: Normalization) {
        self.normalization_override =
            (normalization != self.default_normalization()).then_some(normalization);
    }

    /// Input side length the model is meant for.
    pub fn input_size(&self) -> usize {
        match self.domain {
            Domain::Cifar => 32,
            Domain::Imagenet => 224,
        }
    }
}
