//! Evaluation errors: each names the file or field at fault.

use sftvsrl_model::ModelError;
use sftvsrl_training::{EpisodeError, TrainError};

/// What can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading a config, writing results, a training stage of a study.
    #[error(transparent)]
    Training(#[from] TrainError),
    /// An episode could not be played (bad task data).
    #[error(transparent)]
    Episode(#[from] EpisodeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Invalid(String),
}
