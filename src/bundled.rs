//! Trained models compiled into the binary, so the default run needs no downloads.

use crate::kernels::ConvBackend;
use std::path::Path;

use crate::checkpoint;
use crate::data::DatasetKind;
use crate::error::Result;
use crate::models::{Domain, ModelSpec, Network};

/// A checkpoint shipped inside the binary.
pub struct BundledModel {
    pub model: &'static str,
    pub dataset: DatasetKind,
    /// Path of the file in the repository.
    pub file: &'static str,
    pub bytes: &'static [u8],
    /// Where the weights come from.
    pub origin: &'static str,
}

pub const BUNDLED_MODELS: &[BundledModel] = &[
    BundledModel {
        model: "resnet20",
        dataset: DatasetKind::Cifar10,
        file: "models/cifar10-resnet-akamaster/resnet20-12fca82f.th",
        bytes: include_bytes!("../models/cifar10-resnet-akamaster/resnet20-12fca82f.th"),
        origin: "pytorch_resnet_cifar10 (Idelbayev), BSD-2-Clause",
    },
    BundledModel {
        model: "resnet32",
        dataset: DatasetKind::Cifar10,
        file: "models/cifar10-resnet-akamaster/resnet32-d509ac18.th",
        bytes: include_bytes!("../models/cifar10-resnet-akamaster/resnet32-d509ac18.th"),
        origin: "pytorch_resnet_cifar10 (Idelbayev), BSD-2-Clause",
    },
];

/// The bundled checkpoint for a model name and data set, if there is one.
pub fn find(model: &str, dataset: DatasetKind) -> Option<&'static BundledModel> {
    BUNDLED_MODELS
        .iter()
        .find(|b| b.model == model && b.dataset == dataset)
}

impl BundledModel {
    pub fn load<B: ConvBackend>(&self, device: &B::Device) -> Result<Network<B>> {
        let spec = ModelSpec::new(self.model, Domain::Cifar, self.dataset.num_classes())?;
        let mut network = Network::new(&spec, 0, device);
        checkpoint::import_pytorch_bytes(&mut network, self.bytes, Path::new(self.file))?;
        Ok(network)
    }
}
