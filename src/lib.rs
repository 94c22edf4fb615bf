//! robust-eval: robustness evaluation of image classifiers, built around SDNet.
//!
//! Layout: [`csc`] (the sparse-coding layer), [`defense`] (λ schedules, BatchNorm adaptation), [`nn`] (PyTorch-layout layers), [`models`] (the zoo),
//! [`data`] (CIFAR binaries, ImageNet folders), [`checkpoint`] (native format, PyTorch import),
//! [`eval`] (clean predictions), [`adversarial`] and [`corrupted`] (attacked and corrupted images),
//! [`evaluate`] (plans of cells and the one run loop), [`suite`] (benchmark suites, shards),
//! [`report`] (CSV/JSON writers, Markdown/HTML reports, plots), [`stats`] (intervals and tests), [`device`] (backend selection), [`cli`] (the commands).

pub mod adversarial;
pub mod bundled;
pub mod checkpoint;
pub mod cli;
pub mod corrupted;
pub mod csc;
pub mod data;
pub mod defense;
pub mod device;
pub mod error;
pub mod eval;
pub mod evaluate;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod report;
pub mod stats;
pub mod suite;
pub mod train;

pub use error::{Error, Result};
