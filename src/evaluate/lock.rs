//! One run at a time per output directory: two runs appending to the same journals would mix
//! their rows.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const LOCK_FILE: &str = ".robust-eval.lock";

/// Held while a run writes into a directory; released on drop.
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    write!(file, "{}", std::process::id())
                        .map_err(|e| Error::io(&path, "cannot write lock file", e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    match holder.trim().parse::<u32>() {
                        Ok(pid) if process_alive(pid) => {
                            return Err(Error::input(format!(
                                "{} is in use by another robust-eval run (pid {pid}); wait for it, \
                                 or use another --out-dir",
                                dir.display()
                            )))
                        }
                        _ => {
                            eprintln!(
                                "note: removing the stale lock of an ended run in {}",
                                dir.display()
                            );
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, "cannot create lock file", e)),
            }
        }
        Err(Error::file(
            &path,
            "cannot take the lock of the output directory",
        ))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}
