//! Errors that name what went wrong and where.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument or setting.
    #[error("{0}")]
    Input(String),
    /// A file that exists but whose content is wrong.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// An operating-system error while touching a path.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A checkpoint whose tensors do not fit the model.
    #[error("checkpoint {} does not fit model {model}:\n{details}", path.display())]
    CheckpointMismatch {
        path: PathBuf,
        model: String,
        details: String,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn input(message: impl Into<String>) -> Self {
        Self::Input(message.into())
    }

    pub fn file(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self::File {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn io(path: impl AsRef<Path>, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            action,
            source,
        }
    }
}
