//! What every training run shares around its own loop: the run folder with its resolved
//! config, resuming from the newest checkpoint, checkpoints with the model exported beside them
//! (`export_checkpoints`), and the final export. [`crate::run_sft`] and [`crate::rl::run_rl`]
//! both read `open → resume → loop { step; checkpoint } → finish`; a loop of another engine
//! (burn-train's Learner) can sit in the middle just as well, calling [`RunFolder::checkpoint`]
//! where it checkpoints.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sftvsrl_model::Tokenizer;

use crate::checkpoint::{self, exported};
use crate::config::RunConfig;
use crate::display::RunDisplay;
use crate::durable;
use crate::error::TrainError;

/// Writes a model in Hugging Face layout into the folder given, and returns it.
pub type Export<'a> = dyn Fn(&Path) -> Result<PathBuf, TrainError> + 'a;

/// A run's folder and checkpoints.
pub struct RunFolder {
    /// `<runs_dir>/<name>/`.
    pub dir: PathBuf,
    /// The checkpoint a resumed run starts from.
    resume_from: Option<PathBuf>,
    /// The newest checkpoint written or loaded.
    last: Option<PathBuf>,
    export_checkpoints: bool,
}

impl RunFolder {
    /// Creates the run folder of `config` and writes its resolved config there. A folder that
    /// already holds checkpoints is only continued with `resume`, and only with a config that
    /// matches the run's own on the checkpoint's shapes ([`checkpoint::prepare_run_dir`]).
    pub fn open(
        config: &impl RunConfig,
        resume: bool,
        export_checkpoints: bool,
    ) -> Result<Self, TrainError> {
        let dir = config.run_dir();
        let resume_from = checkpoint::prepare_run_dir(&dir, resume, config)?;
        Ok(RunFolder {
            dir,
            resume_from,
            last: None,
            export_checkpoints,
        })
    }

    /// Keeps the vocabulary the run trains with in `tokenizer.json`: a fresh run writes it, a
    /// resumed run must build the same one (a from-scratch model's vocabulary comes from its
    /// data file, a pretrained one's from its model folder: if either changed, the checkpoint's
    /// token ids no longer mean the same words).
    pub fn check_tokenizer(&self, tokenizer: &Tokenizer) -> Result<(), TrainError> {
        let path = self.dir.join("tokenizer.json");
        let text = tokenizer
            .inner()
            .to_string(false)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        if self.resume_from.is_some() && path.exists() {
            let saved = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
            if saved != text {
                return Err(TrainError::Config {
                    path,
                    message: "the tokenizer built for `--resume` differs from the one the run \
                              started with: its data file (a model from scratch) or its model \
                              folder changed since; restore it, or start a new run"
                        .into(),
                });
            }
            return Ok(());
        }
        durable::write_file(&path, text)
    }

    /// Loads the newest checkpoint into `model` and `optim` when the run resumes, with the
    /// state it saved; a fresh run gets them back unchanged and no state.
    pub fn resume<B, M, O, S>(
        &mut self,
        model: M,
        optim: O,
        device: &B::Device,
        display: &mut dyn RunDisplay,
    ) -> Result<(M, O, Option<S>), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        S: DeserializeOwned,
    {
        let Some(dir) = self.resume_from.take() else {
            return Ok((model, optim, None));
        };
        let (model, optim, state) =
            checkpoint::load_state::<B, M, O, S>(&dir, model, optim, device)?;
        display.line(&format!("resumed from {}", dir.display()));
        self.last = Some(dir);
        Ok((model, optim, Some(state)))
    }

    /// Exports the checkpoint resumed from when a crash fell between writing it and exporting
    /// it; `export` writes the weights just loaded.
    pub fn repair_export(&self, export: &Export<'_>) -> Result<(), TrainError> {
        if self.export_checkpoints
            && let Some(dir) = &self.last
            && !exported(dir).exists()
        {
            export(&exported(dir))?;
        }
        Ok(())
    }

    /// Saves model, optimizer and `state` as the checkpoint of `step`, with the model exported
    /// beside it when the run asks for that; returns the checkpoint folder.
    pub fn checkpoint<B, M, O, S>(
        &mut self,
        step: usize,
        model: &M,
        optim: &O,
        state: &S,
        export: &Export<'_>,
    ) -> Result<PathBuf, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        S: Serialize,
    {
        let dir = checkpoint::save_state(&self.dir, step, model, optim, state)?;
        if self.export_checkpoints {
            export(&exported(&dir))?;
        }
        self.last = Some(dir.clone());
        Ok(dir)
    }

    /// The newest checkpoint written or resumed from.
    pub fn last_checkpoint(&self) -> Option<&Path> {
        self.last.as_deref()
    }

    /// Ends the run: the last checkpoint (written now if the loop wrote none) and the model
    /// exported to `final/`.
    pub fn finish<B, M, O, S>(
        &mut self,
        step: usize,
        model: &M,
        optim: &O,
        state: &S,
        export: &Export<'_>,
    ) -> Result<(PathBuf, PathBuf), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        S: Serialize,
    {
        let checkpoint = match &self.last {
            Some(c) => c.clone(),
            None => checkpoint::save_state(&self.dir, step, model, optim, state)?,
        };
        let final_dir = export(&self.dir.join("final"))?;
        Ok((checkpoint, final_dir))
    }
}
