//! Checkpoints: `checkpoints/step-NNNNNN/` holding the model and optimizer records (Burn's named
//! MessagePack, full precision), `state.json` (progress and compute; for RL also the
//! environments' state) and `manifest.json` (each file's size and CRC-32). A checkpoint is
//! written under a `.tmp` name, flushed to disk and renamed ([`crate::durable`]), so a crash
//! never leaves a half-written checkpoint behind; the manifest is checked on load, so a file
//! damaged later is refused by name instead of loaded.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sftvsrl_model::{Backbone, ImageProcessor, Tokenizer, save_backbone};

use crate::config::RunConfig;
use crate::durable;
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
    let tmp = durable::fresh_tmp_dir(&dir)?;
    let rec = Rec::new();
    Recorder::<B>::record(&rec, model.clone().into_record(), tmp.join("model"))
        .map_err(|e| err(&tmp, e))?;
    Recorder::<B>::record(&rec, optim.to_record(), tmp.join("optimizer"))
        .map_err(|e| err(&tmp, e))?;
    let state = serde_json::to_string_pretty(state).expect("the state serialises");
    std::fs::write(tmp.join("state.json"), state).map_err(|e| TrainError::io(&tmp, e))?;
    write_manifest(&tmp)?;
    durable::commit_dir(&tmp, &dir)?;
    Ok(dir)
}

/// The files of a checkpoint, each listed in its manifest.
const FILES: [&str; 3] = ["model.mpk", "optimizer.mpk", "state.json"];
const MANIFEST: &str = "manifest.json";

/// A checkpoint file's size and CRC-32 as the manifest lists them.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSum {
    bytes: u64,
    crc32: u32,
}

fn file_sum(path: &Path) -> Result<FileSum, TrainError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileSum {
        bytes,
        crc32: hasher.finalize(),
    })
}

/// Writes the manifest of the checkpoint folder `dir` from the files it holds now (the last
/// file of a checkpoint to be written).
pub fn write_manifest(dir: &Path) -> Result<(), TrainError> {
    let sums = FILES
        .iter()
        .map(|name| Ok((name.to_string(), file_sum(&dir.join(name))?)))
        .collect::<Result<std::collections::BTreeMap<_, _>, TrainError>>()?;
    let text = serde_json::to_string_pretty(&sums).expect("the manifest serialises");
    let path = dir.join(MANIFEST);
    std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))
}

/// Checks every file of the checkpoint `dir` against its manifest. Checkpoints written before
/// manifests existed (no `manifest.json`) are loaded unchecked, as before.
pub fn verify(dir: &Path) -> Result<(), TrainError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::io(&path, e)),
    };
    let sums: std::collections::BTreeMap<String, FileSum> =
        serde_json::from_str(&text).map_err(|e| err(&path, e))?;
    if let Some(other) = sums.keys().find(|k| !FILES.contains(&k.as_str())) {
        return Err(err(
            &path,
            format!("lists `{other}`, not a file of a checkpoint"),
        ));
    }
    for name in FILES {
        let Some(expected) = sums.get(name) else {
            return Err(err(&path, format!("lists no `{name}`")));
        };
        let file = dir.join(name);
        let found = file_sum(&file)?;
        if found != *expected {
            return Err(err(
                &file,
                format!(
                    "damaged: {} bytes with CRC-32 {:08x}, but the checkpoint was written \
                     with {} bytes and CRC-32 {:08x}; delete {} to resume from the \
                     checkpoint before it",
                    found.bytes,
                    found.crc32,
                    expected.bytes,
                    expected.crc32,
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The Hugging Face export of a checkpoint (written with `export_checkpoints`).
pub fn exported(checkpoint: &Path) -> PathBuf {
    checkpoint.join("hf")
}

/// Writes `model` (with its image `processor`, for a vision-language model) and its tokenizer
/// in Hugging Face layout into `dir`, under a `.tmp` name that is renamed when complete
/// ([`durable::commit_dir`]: a crash never leaves a half-written model behind).
pub fn export_model<B: Backend>(
    model: &Backbone<B>,
    processor: Option<&ImageProcessor>,
    tokenizer: &Tokenizer,
    stop_tokens: &[u32],
    dir: &Path,
) -> Result<PathBuf, TrainError> {
    let tmp = durable::fresh_tmp_dir(dir)?;
    save_backbone(model, processor, Some(tokenizer), stop_tokens, &tmp)?;
    durable::commit_dir(&tmp, dir)?;
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
    verify(dir)?;
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| err(&state_path, e))?;
    let rec = Rec::new();
    let (model, optim) = contained(dir, || -> Result<(M, O), TrainError> {
        let model_record: M::Record =
            Recorder::<B>::load(&rec, dir.join("model.mpk"), device).map_err(|e| err(dir, e))?;
        let optim_record: O::Record = Recorder::<B>::load(&rec, dir.join("optimizer.mpk"), device)
            .map_err(|e| err(dir, e))?;
        Ok((
            model.load_record(model_record),
            optim.load_record(optim_record),
        ))
    })??;
    Ok((model, optim, state))
}

/// Runs Burn's record decoding, which asserts on some malformed records (a parameter id that is
/// not base32, say) instead of returning an error: a panic there becomes an error naming the
/// checkpoint `dir`, and its message is not printed.
fn contained<T>(dir: &Path, decode: impl FnOnce() -> T) -> Result<T, TrainError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    std::panic::set_hook(hook);
    out.map_err(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        err(dir, format!("its records cannot be decoded: {why}"))
    })
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
        durable::write_file(&config_path, text)?;
        return Ok(None);
    };
    let saved =
        std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
    check_resume(&config_path, &saved, config)?;
    if saved != text {
        let path = run_dir.join(format!("config.resume-step-{step:06}.toml"));
        durable::write_file(&path, text)?;
    }
    Ok(Some(checkpoint))
}
