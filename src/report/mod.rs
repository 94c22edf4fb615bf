//! What people read: the files every command writes (`output`), and the report over one or more
//! results directories — Markdown, self-contained HTML and SVG plots (`document`, `tables`,
//! `plots`, `build`).

pub mod build;
pub mod document;
mod output;
pub mod plots;
pub mod robustbench;
pub mod tables;

pub use build::write_report;
pub use output::*;
