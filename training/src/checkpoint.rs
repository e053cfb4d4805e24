//! Checkpoints: `checkpoints/step-NNNNNN/` holding the model and optimizer records (Burn's named
//! MessagePack, full precision) and `state.json` (progress and compute; for RL also the
//! environments' state). Each is written under a `.tmp` name and renamed, so a crash never
//! leaves a half-written checkpoint behind.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sftvsrl_model::{Backbone, ImageProcessor, Tokenizer, save_backbone};

use crate::config::RunConfig;
use crate::error::TrainError;
use crate::resume_check::check_resume;

/// Where training stands after an optimizer step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    /// Real input tokens processed (prompt and answer).
    pub tokens: u64,
    /// Training compute so far, 6·N·tokens.
    pub flops: f64,
}

type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

fn err(path: &Path, message: impl ToString) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The folder of the checkpoint after `step` optimizer steps.
pub fn checkpoint_dir(run_dir: &Path, step: usize) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:06}"))
}

/// Saves model, optimizer and progress; returns the checkpoint folder.
pub fn save<B, M, O>(
    run_dir: &Path,
    model: &M,
    optim: &O,
    progress: &Progress,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    save_state(run_dir, progress.step, model, optim, progress)
}

/// Saves model, optimizer and any serialisable `state` as the checkpoint of `step`; returns
/// the checkpoint folder.
pub fn save_state<B, M, O, S>(
    run_dir: &Path,
    step: usize,
    model: &M,
    optim: &O,
    state: &S,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    S: Serialize,
{
    let dir = checkpoint_dir(run_dir, step);
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let rec = Rec::new();
    Recorder::<B>::record(&rec, model.clone().into_record(), tmp.join("model"))
        .map_err(|e| err(&tmp, e))?;
    Recorder::<B>::record(&rec, optim.to_record(), tmp.join("optimizer"))
        .map_err(|e| err(&tmp, e))?;
    let state = serde_json::to_string_pretty(state).expect("the state serialises");
    std::fs::write(tmp.join("state.json"), state).map_err(|e| TrainError::io(&tmp, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
    Ok(dir)
}

/// The Hugging Face export of a checkpoint (written with `export_checkpoints`).
pub fn exported(checkpoint: &Path) -> PathBuf {
    checkpoint.join("hf")
}

/// Writes `model` (with its image `processor`, for a vision-language model) and its tokenizer
/// in Hugging Face layout into `dir`, under a `.tmp` name that is renamed when complete (a
/// crash never leaves a half-written model behind).
pub fn export_model<B: Backend>(
    model: &Backbone<B>,
    processor: Option<&ImageProcessor>,
    tokenizer: &Tokenizer,
    stop_tokens: &[u32],
    dir: &Path,
) -> Result<PathBuf, TrainError> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    save_backbone(model, processor, Some(tokenizer), stop_tokens, &tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))?;
    Ok(dir.to_path_buf())
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    Ok(all(run_dir)?.pop().map(|(_, dir)| dir))
}

/// Every complete checkpoint of a run with its step, oldest first.
pub fn all(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>, TrainError> {
    let root = run_dir.join("checkpoints");
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| TrainError::io(&root, e))? {
        let path = entry.map_err(|e| TrainError::io(&root, e))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(step) = step {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Loads a checkpoint into `model` and `optim` (which must have the checkpoint's shapes), with
/// the state [`save_state`] wrote (e.g. [`Progress`]).
pub fn load_state<B, M, O, S>(
    dir: &Path,
    model: M,
    optim: O,
    device: &B::Device,
) -> Result<(M, O, S), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    S: DeserializeOwned,
{
    let rec = Rec::new();
    let model_record =
        Recorder::<B>::load(&rec, dir.join("model.mpk"), device).map_err(|e| err(dir, e))?;
    let optim_record =
        Recorder::<B>::load(&rec, dir.join("optimizer.mpk"), device).map_err(|e| err(dir, e))?;
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| err(&state_path, e))?;
    Ok((
        model.load_record(model_record),
        optim.load_record(optim_record),
        state,
    ))
}

/// Creates `run_dir` and writes the resolved config there as `config.toml`; returns the
/// checkpoint to resume from. A run that already holds checkpoints is only continued with
/// `resume`, and then keeps the `config.toml` it started with: `config` must agree with it on
/// the fields that fix the checkpoint's tensors ([`check_resume`]), and, when it differs in
/// others, is written beside it as `config.resume-step-NNNNNN.toml` (the step resumed from).
pub fn prepare_run_dir(
    run_dir: &Path,
    resume: bool,
    config: &impl RunConfig,
) -> Result<Option<PathBuf>, TrainError> {
    let existing = all(run_dir)?.pop();
    if existing.is_some() && !resume {
        return Err(TrainError::Invalid(format!(
            "{} already holds checkpoints: pass --resume to continue it, or change `name`",
            run_dir.display()
        )));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
    let config_path = run_dir.join("config.toml");
    let text = config.to_toml();
    let Some((step, checkpoint)) = existing else {
        std::fs::write(&config_path, text).map_err(|e| TrainError::io(&config_path, e))?;
        return Ok(None);
    };
    let saved =
        std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
    check_resume(&config_path, &saved, config)?;
    if saved != text {
        let path = run_dir.join(format!("config.resume-step-{step:06}.toml"));
        std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))?;
    }
    Ok(Some(checkpoint))
}
