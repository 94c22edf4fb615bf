//! `robust-eval report`: one or more results directories (single commands, suites, merged
//! shards) → `report.md`, a self-contained `report.html` and each plot as an `.svg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::evaluate::results::{read_results, StoredCell};
use crate::report::document::{Block, Document, Table};
use crate::report::{prepare_output_dir, tables, write_atomic};

/// Reads the directories' finished cells; a cell found in several directories must have the
/// same figures everywhere (it is then counted once).
pub fn read_all(dirs: &[PathBuf]) -> Result<Vec<StoredCell>> {
    let mut cells: Vec<StoredCell> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for dir in dirs {
        for cell in read_results(dir)? {
            match seen.get(cell.key()) {
                Some(&i) if cells[i].result.metrics == cell.result.metrics => {}
                Some(&i) => {
                    return Err(Error::file(
                        dir,
                        format!(
                        "cell {} differs from the one in {}: the same settings gave other figures",
                        cell.key(),
                        cells[i].source.display()
                    ),
                    ))
                }
                None => {
                    seen.insert(cell.key().to_string(), cells.len());
                    cells.push(cell);
                }
            }
        }
    }
    if cells.is_empty() {
        return Err(Error::input(format!(
            "no finished cells in {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(cells)
}

/// Builds the report of `dirs` and writes it into `out_dir`; returns the files written.
pub fn write_report(dirs: &[PathBuf], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let cells = read_all(dirs)?;
    let document = document(dirs, &cells)?;
    prepare_output_dir(out_dir)?;
    let mut files = Vec::new();
    let md = out_dir.join("report.md");
    write_atomic(&md, document.markdown().as_bytes())?;
    files.push(md);
    let html = out_dir.join("report.html");
    write_atomic(&html, document.html().as_bytes())?;
    files.push(html);
    for figure in document.figures() {
        let path = out_dir.join(&figure.file);
        write_atomic(&path, figure.svg.as_bytes())?;
        files.push(path);
    }
    Ok(files)
}

pub fn document(dirs: &[PathBuf], cells: &[StoredCell]) -> Result<Document> {
    let mut doc = Document {
        title: "Robustness report".into(),
        blocks: Vec::new(),
    };
    doc.push(Block::Paragraph(format!(
        "{} cells from {}, by robust-eval {}.",
        cells.len(),
        dirs.iter()
            .map(|d| format!("`{}`", d.display()))
            .collect::<Vec<_>>()
            .join(", "),
        env!("CARGO_PKG_VERSION")
    )));
    doc.blocks.extend(tables::sections(cells)?);
    doc.blocks.extend(warnings(cells));
    doc.blocks.extend(provenance(dirs, cells));
    Ok(doc)
}

fn warnings(cells: &[StoredCell]) -> Vec<Block> {
    let items: Vec<String> = cells
        .iter()
        .flat_map(|c| {
            c.result
                .warnings
                .iter()
                .map(move |w| format!("`{}`: {w}", c.key()))
        })
        .collect();
    if items.is_empty() {
        return Vec::new();
    }
    vec![Block::Heading(2, "Warnings".into()), Block::Bullets(items)]
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// How every number was produced: per directory the commands, suites, backends and versions;
/// per cell its full settings.
fn provenance(dirs: &[PathBuf], cells: &[StoredCell]) -> Vec<Block> {
    let mut blocks = vec![Block::Heading(2, "Provenance".into())];
    let mut items = Vec::new();
    for dir in dirs {
        let mine: Vec<&StoredCell> = cells.iter().filter(|c| &c.source == dir).collect();
        let distinct = |f: &dyn Fn(&StoredCell) -> String| {
            let mut v: Vec<String> = mine
                .iter()
                .map(|c| f(c))
                .filter(|s| !s.is_empty())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let suites = distinct(&|c| {
            let s = &c.record["run"]["suite"];
            if s.is_null() {
                String::new()
            } else {
                format!("{} ({})", text(&s["name"]), text(&s["digest"]))
            }
        });
        let commands = distinct(&|c| match text(&c.record["run"]["command_line"]) {
            line if line.is_empty() => text(&c.record["run"]["command"]),
            line => line,
        });
        let backends = distinct(&|c| {
            format!(
                "{} on {}, batch {}",
                text(&c.record["run"]["backend"]),
                text(&c.record["run"]["device"]),
                text(&c.record["run"]["batch_size"])
            )
        });
        let versions = distinct(&|c| match c.record["run"]["versions"].as_object() {
            Some(v) => v
                .iter()
                .map(|(k, v)| format!("{k} {}", text(v)))
                .collect::<Vec<_>>()
                .join(", "),
            None => String::new(),
        });
        let mut line = format!("`{}`: {} cells", dir.display(), mine.len());
        if !suites.is_empty() {
            line.push_str(&format!("; suite {}", suites.join(", ")));
        }
        line.push_str(&format!(
            "; command {}; {}; versions {}",
            commands
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            backends.join(", "),
            versions.join(", ")
        ));
        items.push(line);
    }
    blocks.push(Block::Bullets(items));
    let rows = cells
        .iter()
        .map(|c| {
            let r = &c.record;
            vec![
                c.key().to_string(),
                format!("`{}`", r["condition"]),
                c.result.n.to_string(),
                text(&r["seed"]),
                text(&r["data"]["fingerprint"]).chars().take(12).collect(),
                format!("{:.1}", c.result.images_per_second),
            ]
        })
        .collect();
    blocks.push(Block::Paragraph(
        "Every cell with its full condition settings (the model and data fields are in \
         `results.jsonl`):"
            .into(),
    ));
    blocks.push(Block::Table(Table {
        header: ["cell", "settings", "n", "seed", "data", "images/s"]
            .map(String::from)
            .to_vec(),
        rows,
        numeric_from: 2,
    }));
    blocks
}
