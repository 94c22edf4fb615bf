//! The per-cell journal: `cells/<digest>.csv`, one row per evaluated image, appended and synced
//! after every batch, next to `cells/<digest>.json` (the cell's settings, and its result once
//! finished). Reading a journal back validates every row; a row torn by an interruption is cut
//! off before anything is appended.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::evaluate::sample::{layout_of, SampleRow, SAMPLE_COLUMNS};

fn header() -> String {
    let mut columns: Vec<&str> = SAMPLE_COLUMNS.to_vec();
    columns.push("seconds");
    columns.join(",")
}

/// The rows of a journal by image index; `n` is the cell's image count. A missing or empty file
/// has no rows. A torn last line is ignored (and cut off by the next [`Journal::open`]).
pub fn read_rows(path: &Path, n: usize) -> Result<BTreeMap<usize, SampleRow>> {
    let mut rows = BTreeMap::new();
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(rows),
        Err(e) => return Err(Error::io(path, "cannot read journal", e)),
    };
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(end) => &text[..=end],
        None => return Ok(rows), // empty, or a header cut short
    };
    let text = std::str::from_utf8(complete)
        .map_err(|_| Error::file(path, "journal is not UTF-8 text (damaged)"))?;
    let mut lines = text.lines();
    let first: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    // Journals of earlier layouts lack the last columns (before `seconds`).
    let present = match first.split_last() {
        Some((&"seconds", columns)) => layout_of(columns),
        _ => None,
    }
    .ok_or_else(|| Error::file(path, "not a robust-eval journal (its header differs)"))?;
    let missing = SAMPLE_COLUMNS.len() - present;
    for (number, line) in lines.enumerate() {
        let mut fields: Vec<&str> = line.split(',').collect();
        if missing > 0 && !fields.is_empty() {
            let seconds = fields.pop().expect("not empty");
            fields.extend(std::iter::repeat_n("", missing));
            fields.push(seconds);
        }
        let damaged =
            |why: String| Error::file(path, format!("line {} is damaged ({why})", number + 2));
        let row = SampleRow::parse(&fields).map_err(damaged)?;
        if row.index >= n {
            return Err(damaged(format!("image {} outside 0..{n}", row.index)));
        }
        if rows.insert(row.index, row).is_some() {
            return Err(damaged("a second row for the same image".into()));
        }
    }
    Ok(rows)
}

/// The rows to resume a cell from. A damaged journal is reported and its cell restarted:
/// recomputing is always safe, guessing which of its rows are sound is not.
pub fn resumable_rows(path: &Path, n: usize) -> Result<BTreeMap<usize, SampleRow>> {
    match read_rows(path, n) {
        Err(Error::File { path, message }) => {
            eprintln!(
                "warning: {}: {message}; the cell is recomputed from its first image",
                path.display()
            );
            Ok(BTreeMap::new())
        }
        other => other,
    }
}

/// An open journal that rows are appended to.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Rewrites the journal with exactly `rows` (dropping torn or unwanted rows) and opens it
    /// for appending.
    pub fn open<'a>(path: &Path, rows: impl Iterator<Item = &'a SampleRow>) -> Result<Self> {
        let mut text = header();
        text.push('\n');
        for row in rows {
            push_row(&mut text, row);
        }
        let tmp = path.with_extension("csv.tmp");
        fs::write(&tmp, text).map_err(|e| Error::io(&tmp, "cannot write journal", e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot move journal into place", e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, "cannot open journal for appending", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one batch's rows in a single write and syncs them to disk.
    pub fn append(&mut self, rows: &[SampleRow]) -> Result<()> {
        let mut text = String::new();
        for row in rows {
            push_row(&mut text, row);
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, "cannot append results", e))
    }
}

fn push_row(text: &mut String, row: &SampleRow) {
    text.push_str(&row.fields().join(","));
    text.push(',');
    text.push_str(&row.seconds.to_string());
    text.push('\n');
}
