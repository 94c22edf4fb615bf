//! `robust-eval report DIR...`: Markdown, self-contained HTML and SVG plots of results
//! directories.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::report::write_report;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Results directories (of any command, a suite or merged shards).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where report.md, report.html and the plots go (default: DIR/report of the first DIR).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| args.dirs[0].join("report"));
    for file in write_report(&args.dirs, &out_dir)? {
        println!("wrote {}", file.display());
    }
    Ok(())
}
