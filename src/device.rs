//! Backend selection: burn-flex on the CPU everywhere, CUDA with the `cuda` feature.
//!
//! Commands are written once, generic over a burn backend, and handed to [`dispatch`].

use crate::kernels::ConvBackend;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The CPU backend.
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (only with the `cuda` feature).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    Error::input(format!(
                        "unknown device '{other}' (expected cpu, cuda or cuda:N)"
                    ))
                }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A computation that can run on any backend.
pub trait Job {
    type Output;
    fn run<B: ConvBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the chosen device.
pub fn dispatch<J: Job>(choice: DeviceChoice, job: J) -> Result<J::Output> {
    match choice {
        DeviceChoice::Cpu => job.run::<Cpu>(Default::default()),
        DeviceChoice::Cuda(index) => run_cuda(index, job),
    }
}

#[cfg(feature = "cuda")]
fn run_cuda<J: Job>(index: usize, job: J) -> Result<J::Output> {
    use burn::tensor::Tensor;
    let device = burn::backend::cuda::CudaDevice::new(index);
    // burn-cuda panics when no driver or device is present; turn that into an error.
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<Gpu, 1>::ones([1], &device);
        t.into_scalar()
    });
    std::panic::set_hook(std::panic::take_hook());
    if probe.is_err() {
        return Err(Error::Device(format!(
            "CUDA device {index} is not usable on this machine (no NVIDIA driver, no such device, \
             or libnvrtc not on LD_LIBRARY_PATH); use --device cpu"
        )));
    }
    job.run::<Gpu>(device)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<J: Job>(index: usize, _job: J) -> Result<J::Output> {
    Err(Error::Device(format!(
        "--device cuda:{index} needs a build with CUDA support: \
         cargo build --release --features cuda (this build is CPU-only)"
    )))
}

/// Describes the backend for reports.
pub fn backend_name(choice: DeviceChoice) -> String {
    match choice {
        DeviceChoice::Cpu => "burn-flex (CPU)".into(),
        DeviceChoice::Cuda(i) => format!("burn-cuda (GPU {i})"),
    }
}
