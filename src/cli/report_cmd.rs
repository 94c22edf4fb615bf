//! `robust-eval report DIR...`: Markdown, self-contained HTML and SVG plots of results
//! directories.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::report::robustbench::write_robustbench;
use crate::report::write_report;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Results directories (of any command, a suite or merged shards).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where report.md, report.html and the plots go (default: DIR/report of the first DIR).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// html (report.md, report.html and SVG plots) or robustbench (each model's leaderboard
    /// entry in RobustBench's JSON fields, under <out-dir>/robustbench/<dataset>/<threat>/).
    #[arg(long, default_value = "html")]
    pub format: String,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| args.dirs[0].join("report"));
    let files = match args.format.as_str() {
        "html" => write_report(&args.dirs, &out_dir)?,
        "robustbench" => {
            let cells = crate::report::build::read_all(&args.dirs)?;
            write_robustbench(&cells, &out_dir.join("robustbench"))?
        }
        other => {
            return Err(Error::input(format!(
                "--format '{other}': expected html or robustbench"
            )))
        }
    };
    for file in files {
        println!("wrote {}", file.display());
    }
    Ok(())
}
