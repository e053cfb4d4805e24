//! `metrics.jsonl`, shared by the SFT and RL runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::durable;
use crate::error::TrainError;

/// `metrics.jsonl`: one JSON object per line. On resume, lines logged after the checkpoint
/// being resumed are dropped, since those steps run again.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path`, keeping only the lines of steps up to `resumed_step`.
    pub fn open(path: &Path, resumed_step: usize) -> Result<Self, TrainError> {
        let kept: String = match std::fs::read_to_string(path) {
            Ok(text) if resumed_step > 0 => text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s as usize <= resumed_step)
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            _ => String::new(),
        };
        durable::write_file(path, kept)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line.
    pub fn write(&mut self, value: &serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{value}").map_err(|e| TrainError::io(&self.path, e))
    }
}
