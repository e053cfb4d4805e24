//! The errors of loading, saving and running models. Each names the file (and the tensor or
//! field) it is about, so a bad checkpoint is diagnosed from one line.

use std::path::{Path, PathBuf};

/// Anything that can go wrong reading or writing model files, or running a model on bad input.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: missing (expected {what})")]
    MissingFile { path: PathBuf, what: &'static str },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: not a valid GGUF file: {message}")]
    Gguf { path: PathBuf, message: String },
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// A checkpoint holds tensors the model has no place for (another architecture, or parts
    /// this one lacks): loading it would silently drop weights.
    #[error(
        "{path}: {} tensor(s) the model does not use, e.g. {}; is it another architecture?",
        names.len(),
        names.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ")
    )]
    UnusedTensors { path: PathBuf, names: Vec<String> },
    /// A settings file (e.g. CubeCL's `cubecl.toml`) that cannot be parsed.
    #[error("{path}: {message}")]
    Settings { path: PathBuf, message: String },
    #[error("invalid model input: {0}")]
    Input(String),
    #[error("invalid generation request: {0}")]
    Generation(String),
    #[error("tokenizer: {0}")]
    Tokenize(String),
}

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A configuration field of `path` that is missing or out of range.
    pub fn config(path: &Path, field: &str, message: impl Into<String>) -> Self {
        ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A tensor of `path` that cannot be used as stored.
    pub fn tensor(path: &Path, tensor: &str, message: impl Into<String>) -> Self {
        ModelError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|e| ModelError::io(path, e))
}

/// Reads and parses a JSON file, naming it in the error.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, ModelError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}
