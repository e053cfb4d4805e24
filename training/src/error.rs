//! Errors of training runs (SFT and RL): each names the file (and line or field), or the
//! episode, it is about.

use std::path::{Path, PathBuf};

use sftvsrl_model::ModelError;

/// Why a training run (SFT or RL) could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An episode could not be played (bad task data, a saved episode that does not replay).
    #[error(transparent)]
    Episode(#[from] crate::engine::EpisodeError),
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(
        "the loss became {loss} at step {step}; stopped without updating the weights (the last good checkpoint is kept)"
    )]
    NonFinite { step: usize, loss: f32 },
    #[error("stopped at step {step} as asked; `--resume` continues from {checkpoint}")]
    Stopped { step: usize, checkpoint: PathBuf },
    #[error("{0}")]
    Invalid(String),
    /// A collective call (named) given up because another worker of the run failed.
    #[error("{0}: stopped, another worker failed")]
    PeerFailed(String),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
