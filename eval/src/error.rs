//! Evaluation errors: each names the file or field at fault.

use std::path::{Path, PathBuf};

use sftvsrl_model::ModelError;
use sftvsrl_training::SftError;

/// What can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Episodes(#[from] SftError),
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
