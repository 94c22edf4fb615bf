//! Files and bars: JSON and CSV written atomically, `.npy` writers, progress bars.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Creates the output directory and proves it is writable, before any long computation starts.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create output directory", e))?;
    let probe = dir.join(".robust-eval-write-test");
    File::create(&probe).map_err(|e| Error::io(dir, "output directory is not writable", e))?;
    fs::remove_file(&probe).map_err(|e| Error::io(&probe, "cannot remove probe file", e))?;
    Ok(())
}

/// Versions that make a result reproducible.
pub fn versions() -> Value {
    json!({
        "robust-eval": env!("CARGO_PKG_VERSION"),
        "burn": "0.21.0",
    })
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    write_atomic(path, text.as_bytes())
}

/// Writes a CSV table with a header row, atomically.
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::file(path, format!("cannot format CSV: {e}"));
    writer.write_record(header).map_err(fail)?;
    for row in rows {
        writer.write_record(row).map_err(fail)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::file(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes through a temporary file renamed into place, so that a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    refuse_non_regular(path)?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, "cannot write", e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot move into place", e))
}

/// An output path that exists must be a regular file: renaming over a device, a pipe or a
/// directory would replace it.
pub fn refuse_non_regular(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::file(
            path,
            "exists and is not a regular file (a directory, device or pipe): refusing to replace it",
        )),
        _ => Ok(()),
    }
}

/// A progress bar with throughput and ETA (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// One bar over a whole evaluation plan, in cost units (a clean image = 1), with the caller's
/// message (cell, images/s) and the ETA.
pub fn plan_progress_bar(total_cost: u64) -> ProgressBar {
    let bar = ProgressBar::new(total_cost.max(1));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("evaluating");
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// A `.npy` file of known shape written as its rows arrive.
pub struct NpyWriter<T: npyz::Serialize + npyz::AutoSerialize + Copy> {
    path: PathBuf,
    writer: npyz::NpyWriter<T, std::io::BufWriter<File>>,
}

impl<T: npyz::Serialize + npyz::AutoSerialize + Copy> NpyWriter<T> {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        use npyz::WriterBuilder;
        let file = File::create(path).map_err(|e| Error::io(path, "cannot create", e))?;
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let writer = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(&shape)
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .map_err(|e| Error::io(path, "cannot write .npy header", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
        })
    }

    pub fn write(&mut self, values: &[T]) -> Result<()> {
        self.writer
            .extend(values.iter().copied())
            .map_err(|e| Error::io(&self.path, "cannot write .npy data", e))
    }

    pub fn finish(self) -> Result<()> {
        let path = self.path;
        self.writer
            .finish()
            .map_err(|e| Error::io(&path, "cannot finish .npy", e))
    }

    /// Writes a whole array at once.
    pub fn save(path: &Path, values: &[T], shape: &[usize]) -> Result<()> {
        let mut writer = Self::create(path, shape)?;
        writer.write(values)?;
        writer.finish()
    }
}
