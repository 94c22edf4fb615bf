//! The model zoo: ResNet-18/34, SDNet-18/34 (CSC stem), SDNet-18/34-all (CSC everywhere) and the
//! He et al. CIFAR ResNets, for CIFAR (3×3 stem) and ImageNet (7×7 stem) inputs.

pub mod blocks;
pub mod load;
pub mod network;
pub mod spec;

pub use load::{LoadedModel, ModelConfig, WeightsSource, DEFAULT_MODEL};
pub use network::{LambdaTarget, Network};
pub use spec::{Activation, Arch, CscSettings, Domain, ModelSpec, Normalization, MODEL_NAMES};
