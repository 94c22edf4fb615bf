//! How our parameter paths are named in the PyTorch checkpoints users already have.
//!
//! Internal paths look like `stem.conv.weight`, `stages.1.0.shortcut.bn.running_var`,
//! `linear.bias`. Each [`Layout`] renames them the way one PyTorch code base does.

use crate::models::{Arch, ModelSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The official SDNet repository (`layer0.0.dn.weight`, `layer1.0.shortcut.0.weight`,
    /// `layer1.layers.0.conv1.dn.weight` for the -all variants, `linear.*`).
    Official,
    /// torchvision ResNets (`conv1`, `bn1`, `layer1.0.downsample.0`, `fc`).
    Torchvision,
    /// pytorch_resnet_cifar10 (`conv1`, `bn1`, `layer1.0.conv1`, `linear`).
    CifarResnet,
    /// RobustBench's WideResNet (`conv1`, `block1.layer.0.bn1`, `convShortcut`, `bn1`, `fc`).
    RobustbenchWrn,
    /// DeepMind's WideResNet (`init_conv`, `layer.0.block.0.batchnorm_0`, `conv_0`,
    /// `shortcut`, `batchnorm`, `logits`).
    Deepmind,
    /// RobustBench's PreActResNet (`conv1`, `layer1.0.bn1`, `shortcut.0`, `linear`).
    RobustbenchPreact,
}

impl Layout {
    /// The layouts a checkpoint for this model may come in, most likely first.
    pub fn candidates(spec: &ModelSpec) -> Vec<Layout> {
        match spec.arch {
            Arch::CifarResnet { .. } => vec![Layout::CifarResnet],
            Arch::Resnet { .. } => vec![Layout::Official, Layout::Torchvision],
            Arch::Sdnet { .. } | Arch::SdnetAll { .. } => vec![Layout::Official],
            Arch::BottleneckResnet { .. } => vec![Layout::Torchvision],
            Arch::WideResnet { .. } => vec![Layout::RobustbenchWrn],
            Arch::DmWideResnet { .. } => vec![Layout::Deepmind],
            Arch::PreactResnet { .. } => vec![Layout::RobustbenchPreact],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Layout::Official => "official SDNet",
            Layout::Torchvision => "torchvision",
            Layout::CifarResnet => "pytorch_resnet_cifar10",
            Layout::RobustbenchWrn => "RobustBench WideResNet",
            Layout::Deepmind => "DeepMind WideResNet",
            Layout::RobustbenchPreact => "RobustBench PreActResNet",
        }
    }

    /// The PyTorch key for an internal path. `is_csc` marks dictionary weights of CSC layers.
    pub fn pytorch_key(&self, spec: &ModelSpec, path: &str, is_csc: bool) -> String {
        if let Some(key) = self.preact_key(path) {
            return key;
        }
        let parts: Vec<&str> = path.split('.').collect();
        let mut out: Vec<String> = Vec::new();
        let mut rest: &[&str] = &parts;
        match parts.as_slice() {
            ["stem", module, tail @ ..] => {
                out.push(self.stem_name(module));
                rest = tail;
            }
            ["stages", stage, block, tail @ ..] => {
                let stage: usize = stage.parse().unwrap_or(0);
                out.push(format!("layer{}", stage + 1));
                if *self == Layout::Official && matches!(spec.arch, Arch::SdnetAll { .. }) {
                    out.push("layers".into());
                }
                out.push(block.to_string());
                rest = tail;
            }
            ["linear", tail @ ..] => {
                out.push(
                    if *self == Layout::Torchvision {
                        "fc"
                    } else {
                        "linear"
                    }
                    .into(),
                );
                rest = tail;
            }
            _ => {}
        }
        let mut i = 0;
        while i < rest.len() {
            match (rest[i], rest.get(i + 1)) {
                ("shortcut", Some(&sub)) => {
                    out.push(self.shortcut_name().into());
                    out.push(if sub == "conv" { "0" } else { "1" }.into());
                    i += 2;
                    continue;
                }
                (last, None) if is_csc && last == "weight" && *self == Layout::Official => {
                    out.push("dn".into());
                    out.push("weight".into());
                }
                (other, _) => out.push(other.to_string()),
            }
            i += 1;
        }
        out.join(".")
    }

    /// Keys of the pre-activation layouts (`None` for the others).
    fn preact_key(&self, path: &str) -> Option<String> {
        let (stem, head, linear) = match self {
            Layout::RobustbenchWrn => ("conv1", "bn1", "fc"),
            Layout::Deepmind => ("init_conv", "batchnorm", "logits"),
            Layout::RobustbenchPreact => ("conv1", "bn", "linear"),
            _ => return None,
        };
        let parts: Vec<&str> = path.split('.').collect();
        let key = match parts.as_slice() {
            ["stem", "conv", tensor] => format!("{stem}.{tensor}"),
            ["head", tensor] => format!("{head}.{tensor}"),
            ["linear", tensor] => format!("{linear}.{tensor}"),
            ["stages", stage, block, module, tensor] => {
                let stage: usize = stage.parse().unwrap_or(0);
                let (prefix, module) = match self {
                    Layout::RobustbenchWrn => (
                        format!("block{}.layer.{block}", stage + 1),
                        match *module {
                            "shortcut" => "convShortcut".to_string(),
                            other => other.to_string(),
                        },
                    ),
                    Layout::Deepmind => (
                        format!("layer.{stage}.block.{block}"),
                        match *module {
                            "bn1" => "batchnorm_0",
                            "conv1" => "conv_0",
                            "bn2" => "batchnorm_1",
                            "conv2" => "conv_1",
                            other => other,
                        }
                        .to_string(),
                    ),
                    _ => (
                        format!("layer{}.{block}", stage + 1),
                        match *module {
                            "shortcut" => "shortcut.0".to_string(),
                            other => other.to_string(),
                        },
                    ),
                };
                format!("{prefix}.{module}.{tensor}")
            }
            _ => path.to_string(),
        };
        Some(key)
    }

    /// Keys of modules the original code defines but never runs: RobustBench's WideResNet
    /// built with `sub_block1=True` (Carmon 2019 and other checkpoints) holds a copy of the first
    /// block group that its forward pass skips, and loads it only to satisfy strict loading.
    pub fn is_unused(&self, key: &str) -> bool {
        *self == Layout::RobustbenchWrn && key.starts_with("sub_block1.")
    }

    fn stem_name(&self, module: &str) -> String {
        match (self, module) {
            (Layout::Official, "conv") => "layer0.0".into(),
            (Layout::Official, "bn") => "layer0.1".into(),
            (Layout::Official, "pool_csc") => "layer0.2".into(),
            (_, "conv") => "conv1".into(),
            (_, "bn") => "bn1".into(),
            (_, other) => other.into(),
        }
    }

    fn shortcut_name(&self) -> &'static str {
        match self {
            Layout::Torchvision => "downsample",
            _ => "shortcut",
        }
    }
}

/// Keys that PyTorch checkpoints carry but that hold no model weights we use.
pub fn is_ignored_key(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
        || key.ends_with(".step_size")
        || key.ends_with("running_c_loss")
}

/// Strips the `module.` prefix of DataParallel-wrapped models.
pub fn strip_wrapper(key: &str) -> &str {
    key.strip_prefix("module.").unwrap_or(key)
}
