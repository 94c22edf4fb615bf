//! The evaluator: plans of cells (model × defense × condition) run by one loop with per-cell
//! resume, progress over the whole plan, and one results schema.
//!
//! - [`plan`]: what to run ([`Plan`], [`ModelEntry`], [`Defense`], [`Shard`], [`Exports`]);
//! - [`condition`]: clean, corruption or attack, as data;
//! - [`cell`]: keys and settings digests;
//! - [`runner`]: [`run`], the only run loop;
//! - [`executor`]: one batch of one cell → per-sample rows;
//! - [`journal`], [`sample`], [`summary`], [`results`]: rows on disk, figures, results files;
//! - [`lock`]: one run per output directory.

pub mod aggregate;
pub mod cell;
pub mod condition;
pub mod data;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod plan;
pub mod results;
pub mod runner;
pub mod sample;
pub mod summary;

pub use condition::{
    AttackCondition, AttackName, AttackOptions, Condition, CorruptionSource, EnsembleSpec,
};
pub use data::DataConfig;
pub use plan::{Defense, Exports, ModelEntry, Plan, Shard, SuiteOrigin};
pub use runner::{run, CellOutcome, RunOutcome};
pub use summary::CellResult;
