//! Evaluation errors: each names the file or field at fault.

use sftvsrl_model::ModelError;
use sftvsrl_training::SftError;

/// What can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading a config, writing results, playing episodes (the training crate's errors).
    #[error(transparent)]
    Training(#[from] SftError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Invalid(String),
}
