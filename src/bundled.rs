//! Trained models compiled into the binary, so the default run needs no downloads.

use std::path::Path;

use crate::checkpoint;
use crate::data::DatasetKind;
use crate::error::Result;
use crate::kernels::ConvBackend;
use crate::models::{Domain, ModelSpec, Network};

/// How a bundled checkpoint is stored.
pub enum Weights {
    /// A PyTorch (legacy `torch.save`) file of the pytorch_resnet_cifar10 layout.
    Pytorch(&'static [u8]),
    /// A robust-eval checkpoint (carries its own specification).
    Native(&'static [u8]),
}

/// A checkpoint shipped inside the binary.
pub struct BundledModel {
    pub model: &'static str,
    pub dataset: DatasetKind,
    pub width: f64,
    /// Path of the file in the repository.
    pub file: &'static str,
    pub weights: Weights,
    /// Where the weights come from.
    pub origin: &'static str,
}

pub const BUNDLED_MODELS: &[BundledModel] = &[
    BundledModel {
        model: "sdnet18",
        dataset: DatasetKind::Cifar10,
        width: 0.25,
        file: "models/cifar10-reference/sdnet18-w025.bpk",
        weights: Weights::Native(include_bytes!(
            "../models/cifar10-reference/sdnet18-w025.bpk"
        )),
        origin: "trained by robust-eval on 9000 CIFAR-10 images (README, Reference models)",
    },
    BundledModel {
        model: "resnet18",
        dataset: DatasetKind::Cifar10,
        width: 0.25,
        file: "models/cifar10-reference/resnet18-w025.bpk",
        weights: Weights::Native(include_bytes!(
            "../models/cifar10-reference/resnet18-w025.bpk"
        )),
        origin: "trained by robust-eval on 9000 CIFAR-10 images (README, Reference models)",
    },
    BundledModel {
        model: "resnet20",
        dataset: DatasetKind::Cifar10,
        width: 1.0,
        file: "models/cifar10-resnet-akamaster/resnet20-12fca82f.th",
        weights: Weights::Pytorch(include_bytes!(
            "../models/cifar10-resnet-akamaster/resnet20-12fca82f.th"
        )),
        origin: "pytorch_resnet_cifar10 (Idelbayev), BSD-2-Clause",
    },
    BundledModel {
        model: "resnet32",
        dataset: DatasetKind::Cifar10,
        width: 1.0,
        file: "models/cifar10-resnet-akamaster/resnet32-d509ac18.th",
        weights: Weights::Pytorch(include_bytes!(
            "../models/cifar10-resnet-akamaster/resnet32-d509ac18.th"
        )),
        origin: "pytorch_resnet_cifar10 (Idelbayev), BSD-2-Clause",
    },
];

/// The bundled checkpoint for a model name and data set (and width, when one is asked for).
pub fn find(
    model: &str,
    dataset: DatasetKind,
    width: Option<f64>,
) -> Option<&'static BundledModel> {
    BUNDLED_MODELS
        .iter()
        .find(|b| b.model == model && b.dataset == dataset && width.is_none_or(|w| w == b.width))
}

impl BundledModel {
    pub fn load<B: ConvBackend>(&self, device: &B::Device) -> Result<Network<B>> {
        match self.weights {
            Weights::Native(bytes) => {
                checkpoint::load_native_bytes(bytes, Path::new(self.file), device)
            }
            Weights::Pytorch(bytes) => {
                let spec = ModelSpec::new(self.model, Domain::Cifar, self.dataset.num_classes())?;
                let mut network = Network::for_loading(&spec, device);
                checkpoint::import_pytorch_bytes(&mut network, bytes, Path::new(self.file))?;
                Ok(network)
            }
        }
    }
}
