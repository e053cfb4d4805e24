//! One SFT run, top to bottom: data → model → optimizer steps (micro-batches accumulated) →
//! periodic validation and checkpoints → the final model in Hugging Face layout → GeneralPoints
//! episodes. A run writes `runs/<name>/`: `config.toml` (resolved; kept on resume),
//! `metrics.jsonl`, `checkpoints/step-NNNNNN/` (each with its model in HF layout under `hf/` when
//! `export_checkpoints` is on), `final/` and `eval.json`. Checkpoints fall every
//! `checkpoint_every` steps and where the compute first reaches each of `checkpoint_flops`.
//!
//! The training runs on burn-train's `Learner` through `SupervisedTraining`, with the model's
//! train and validation steps, the schedule, the optimizer and the data loader of
//! [`crate::learner`], and its interrupter for stop requests. Its learning strategy is this
//! module's [`SftStrategy`] (`TrainingStrategy::Custom`): burn-train's own strategies count
//! epochs, checkpoint per epoch and step the optimizer whatever the loss, while a run here
//! checkpoints every `checkpoint_every` optimizer steps and at FLOPs marks, resumes to the exact
//! data order and learning rate of an uninterrupted run, clips the global gradient norm and
//! stops at a non-finite loss before it touches the weights. With several devices the strategy
//! runs each step's micro-batches on them through burn-train's `MultiDevicesTrainStep`.
//!
//! The run folder, resuming, checkpoints and exports are the [`RunFolder`] every run shares.
//! The Learner trains on a thread of its own while the caller's [`RunDisplay`] shows its lines
//! and metrics; after every optimizer step the Learner waits for the display's answer to "stop?",
//! so a stop falls after the same step as it would in a single thread.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_train::train::MultiDevicesTrainStep;
use burn_train::{
    Interrupter, Learner, SupervisedLearningStrategy, SupervisedTraining,
    SupervisedTrainingEventProcessor, TrainLoader, TrainingComponents, TrainingStrategy,
    ValidLoader,
};
use serde_json::json;
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{Backbone, FusedAdamW, ImageProcessor, Tokenizer, VlmConfig};

use crate::answer_match::greedy_answer_match;
use crate::checkpoint::{self, Progress};
use crate::collective::{WorkerSpec, Workers};
use crate::config::{RunConfig, SftConfig};
use crate::data::{Sequence, epoch_order, read_chat_jsonl, split, tokenize_all};
use crate::display::RunDisplay;
use crate::error::TrainError;
use crate::flops::train_flops;
use crate::gp_eval::{GpEvalResult, gp_success};
use crate::grad_clip::clip_global_norm;
use crate::learner::{
    BackboneOptim, PlanLoader, SftComponents, SftData, SftMicro, SftModel, SharedOptim, Silent,
    StepLr, step_grads, sum_over_workers, sum_stats, valid_stats, worker_share,
};
use crate::metrics_log::MetricsLog;
use crate::pixels::PixelCache;
use crate::policy::backbone_policy;
use crate::schedule::SftLr;
use crate::setup::{build_model, ensure_data};
use crate::skeleton::RunFolder;
use crate::step::{SftLoss, StepStats};

/// What a finished run reports.
#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub progress: Progress,
    /// Statistics of the last validation pass (none without a validation split).
    pub valid: Option<StepStats>,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// The trained model with its tokenizer, in Hugging Face layout.
    pub final_dir: PathBuf,
    pub gp_eval: Option<GpEvalResult>,
}

/// Trains as `config` says on `device`; with `resume`, continues from the run's newest
/// checkpoint. `display` hears every logged step (any `FnMut(&str)` closure takes plain lines);
/// when it reports a stop request, the run checkpoints and ends with [`TrainError::Stopped`].
pub fn run_sft<A: AutodiffBackend>(
    config: &SftConfig,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
) -> Result<RunSummary, TrainError> {
    run_sft_on::<A>(config, resume, std::slice::from_ref(device), display)
}

/// [`run_sft`] on several devices: the first holds the weights and the optimizer; each
/// optimizer step's micro-batches (`train.grad_accum` of them) are spread over all of them,
/// one per device at a time, and their gradients summed on the first. The global batch, and so
/// the result, is that of a single-device run up to float rounding.
pub fn run_sft_on<A: AutodiffBackend>(
    config: &SftConfig,
    resume: bool,
    devices: &[A::Device],
    display: &mut dyn RunDisplay,
) -> Result<RunSummary, TrainError> {
    train_sft::<A>(config, resume, devices, display, None)
}

/// [`run_sft`] as worker `spec.rank` of `spec.world_size` worker processes, on one node or
/// several, joined through burn-collective's orchestrator (one command per worker, as for RL):
/// each optimizer step's micro-batches (`train.grad_accum` of them, the same plan on every
/// worker) are dealt out in turn, micro-batch `i` to worker `i mod N`, and the gradients and
/// statistics summed over the workers before the norm clip and the one optimizer step, which
/// every worker applies to the same weights: the result is the one-worker run's up to float
/// rounding. Validation is split the same way. Worker 0 writes `<runs_dir>/<name>/` and runs
/// `eval`; worker `r` writes `<runs_dir>/<name>.rank-<r>/`, so that `--resume` works on every
/// worker. Every worker must be given the same config.
pub fn run_sft_across<A: AutodiffBackend>(
    config: &SftConfig,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
    spec: &WorkerSpec,
) -> Result<RunSummary, TrainError> {
    let workers = Arc::new(Workers::join(spec)?);
    let own = config.for_worker(spec.rank);
    let device = std::slice::from_ref(device);
    let summary = train_sft::<A>(&own, resume, device, display, Some(workers.clone()))?;
    workers.finish()?;
    Ok(summary)
}

/// The run of [`run_sft_on`], on its own or as one of `workers`.
fn train_sft<A: AutodiffBackend>(
    config: &SftConfig,
    resume: bool,
    devices: &[A::Device],
    display: &mut dyn RunDisplay,
    workers: Option<Arc<Workers>>,
) -> Result<RunSummary, TrainError> {
    let device = devices
        .first()
        .ok_or_else(|| TrainError::Invalid("SFT needs at least one device".into()))?;
    let mut folder = RunFolder::open(config, resume, config.train.export_checkpoints)?;

    // Workers write a missing data file in turn: on a shared disk the first writes it.
    match &workers {
        Some(w) => w.in_turn(|| ensure_data(&config.data))?,
        None => ensure_data(&config.data)?,
    }
    let examples = read_chat_jsonl(&config.data.path)?;
    let built = build_model::<A>(
        &config.model,
        &examples,
        config.data.max_len,
        config.seed,
        device,
    )?;
    let tokenizer = built.tokenizer;
    folder.check_tokenizer(&tokenizer)?;
    let processor = built.processor;
    let sequences = tokenize_all(
        &tokenizer,
        &examples,
        config.data.max_len,
        &config.data.path,
        built.model.vision_config(),
    )?;
    let (train, valid) =
        split(sequences, config.data.valid_fraction, config.seed).map_err(|message| {
            TrainError::Config {
                path: config.data.path.clone(),
                message,
            }
        })?;

    let t = &config.train;
    let multiple = pad_multiple::<A>(config.pad_to_multiple_of, device);
    let global_batch = t.micro_batch * t.grad_accum;
    let steps_per_epoch = train.len().div_ceil(global_batch);
    let total_steps = steps_per_epoch * t.epochs;
    let last_step = t.max_steps.map_or(total_steps, |m| m.min(total_steps));
    let schedule = SftLr::new(
        t.lr_schedule,
        t.lr,
        total_steps,
        t.warmup_ratio,
        t.min_lr_ratio,
    );
    let params = built.model.num_params();
    let model = match &config.lora {
        Some(lora) => built.model.with_lora(lora, config.seed, device),
        None => built.model,
    };
    let trainable = model.lora_trainable_params().unwrap_or(params);
    let vision = model.vision_config().cloned().zip(processor.clone());

    let optim =
        FusedAdamW::new(t.beta1, t.beta2, t.epsilon, t.weight_decay).init::<A, Backbone<A>>();
    let (model, optim, saved) =
        folder.resume::<A, _, _, Progress>(model, optim, device, display)?;
    let progress: Progress = saved.unwrap_or_default();
    let exporter = Exporter {
        stop_tokens: tokenizer.stop_tokens(),
        tokenizer,
        processor,
    };
    folder.repair_export(&|dir| exporter.write(&model, dir))?;
    let metrics = MetricsLog::open(&folder.dir.join("metrics.jsonl"), progress.step)?;
    if let Some(w) = &workers
        && !config.train.grad_accum.is_multiple_of(w.world_size())
    {
        display.line(&format!(
            "warning: train.grad_accum ({}) is not a multiple of the {} workers: some of them \
             idle in every optimizer step",
            config.train.grad_accum,
            w.world_size()
        ));
    }
    display.line(&format!(
        "{} train / {} valid examples, {params} parameters ({trainable} trained){}, \
         {total_steps} steps of {global_batch} ({steps_per_epoch} per epoch){}; {}; {}; chat \
         template {}",
        train.len(),
        valid.len(),
        match &exporter.processor {
            Some(p) => format!(
                ", images {}read at {}×{}",
                p.crop.map_or(String::new(), |[x, y, w, h]| format!(
                    "cut to {w}×{h} at ({x}, {y}) and "
                )),
                p.size[1],
                p.size[0]
            ),
            None => String::new(),
        },
        match (&workers, devices.len()) {
            (Some(w), _) => format!(
                " over {} workers (this is worker {})",
                w.world_size(),
                w.rank()
            ),
            (None, 1) => String::new(),
            (None, n) => format!(" on {n} devices"),
        },
        schedule,
        if t.max_grad_norm > 0.0 {
            format!("global gradient norm clipped to {}", t.max_grad_norm)
        } else {
            "no gradient clipping".to_string()
        },
        exporter.tokenizer.chat_template()
    ));

    // With FLOPs marks the run ends at the last one: estimate that step from the mean tokens
    // per step, for progress displays.
    let planned_steps = match t.checkpoint_flops.last() {
        Some(&mark) => {
            let tokens: usize = train.iter().map(|s| s.ids.len() - 1).sum();
            let per_step = train_flops(params, tokens as u64) / steps_per_epoch as f64;
            last_step.min((mark / per_step).ceil() as usize)
        }
        None => last_step,
    };
    let data = |sequences| {
        Arc::new(SftData {
            sequences,
            vision: vision.clone(),
            micro_batch: t.micro_batch,
            pad_to_multiple_of: multiple,
            loss: t.loss,
        })
    };
    let (train, valid) = (data(train), data(valid));
    let train_loader = PlanLoader(Arc::new(train_plan(
        &train,
        config.seed,
        global_batch,
        steps_per_epoch,
        progress.step..last_step,
    )));
    let valid_loader = PlanLoader(Arc::new(valid_plan(&valid)));

    let optim = SharedOptim::new(optim);
    let learner: Learner<SftComponents<A>> = Learner::new(
        SftModel { backbone: model },
        optim.clone(),
        StepLr {
            schedule,
            step: progress.step,
        },
    );
    let (show, shown) = channel();
    let (ack, acked) = channel();
    let outcome = Arc::new(Mutex::new(None));
    let dir = folder.dir.clone();
    let strategy = SftStrategy {
        run: Mutex::new(Some(SftLoop {
            config: config.clone(),
            folder,
            metrics,
            exporter,
            optim,
            devices: devices.to_vec(),
            workers,
            params,
            steps_per_epoch,
            last_step,
            planned_steps,
            progress,
            valid,
            display: ShowSender { show, acked },
        })),
        outcome: outcome.clone(),
    };
    let interrupter = Interrupter::new();
    let trained = std::thread::scope(|scope| {
        let stop = interrupter.clone();
        let training = scope.spawn(move || {
            SupervisedTraining::new(&dir, Arc::new(train_loader), Arc::new(valid_loader))
                .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
                .with_interrupter(stop)
                .with_application_logger(None)
                .renderer(Silent)
                .launch(learner)
                .model
        });
        for message in shown {
            match message {
                Show::Line(text) => display.line(&text),
                Show::Metrics(valid, step, total, values) => {
                    display.metrics(valid, step, total, &values)
                }
                Show::Stepped => {
                    if display.stop_requested() {
                        interrupter.stop(Some("stop requested"));
                    }
                    // The Learner waits for this; it is gone only if it ended on an error.
                    let _ = ack.send(());
                }
            }
        }
        training
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    let done = outcome
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
        .unwrap_or_else(|| Err(TrainError::Invalid("the Learner returned no result".into())))?;

    let inference = trained.backbone.merged();
    let gp_eval = match &config.eval {
        Some(eval) => {
            let processor = done.exporter.processor.as_ref();
            let pixels = processor.cloned().map(PixelCache::new);
            let mut policy = backbone_policy(&inference, None, pixels.as_ref(), device)?;
            let r = gp_success(
                policy.as_mut(),
                &done.exporter.tokenizer,
                eval,
                Some(multiple),
            )?;
            display.line(&format!(
                "GeneralPoints ID{}: {}/{} episodes solved ({:.1}%), {} at the first attempt; \
                 first answer: {:?}",
                if processor.is_some() { " (GP-VL)" } else { "" },
                r.successes,
                r.episodes,
                100.0 * r.success_rate(),
                r.first_attempt,
                r.sample
            ));
            let path = done.run_dir.join("eval.json");
            let text = serde_json::to_string_pretty(&json!({
                "step": done.progress.step, "flops": done.progress.flops,
                "gp_id": r, "success_rate": r.success_rate(),
            }))
            .expect("JSON serialises");
            crate::durable::write_file(&path, text)?;
            Some(r)
        }
        None => None,
    };
    Ok(RunSummary {
        run_dir: done.run_dir,
        progress: done.progress,
        valid: done.valid,
        checkpoint: done.checkpoint,
        final_dir: done.final_dir,
        gp_eval,
    })
}

/// The micro-batches of optimizer steps `steps`: each step takes the next `global_batch`
/// examples of its epoch's shuffle, in micro-batches of `micro_batch`.
fn train_plan(
    data: &Arc<SftData>,
    seed: u64,
    global_batch: usize,
    steps_per_epoch: usize,
    steps: Range<usize>,
) -> Vec<SftMicro> {
    let n = data.sequences.len();
    let mut order = (usize::MAX, Vec::new());
    let mut plan = Vec::new();
    for step in steps {
        let epoch = step / steps_per_epoch;
        if order.0 != epoch {
            order = (epoch, epoch_order(n, seed, epoch));
        }
        let start = (step % steps_per_epoch) * global_batch;
        let picked = &order.1[start..(start + global_batch).min(n)];
        let normalizer = picked
            .iter()
            .map(|&i| data.sequences[i].ids.len() - data.sequences[i].prompt_len)
            .sum();
        let micros = picked.chunks(data.micro_batch);
        let count = micros.len();
        plan.extend(micros.enumerate().map(|(index, rows)| SftMicro {
            data: data.clone(),
            rows: rows.to_vec(),
            normalizer: Some(normalizer),
            step,
            index,
            last: index + 1 == count,
        }));
    }
    plan
}

/// The validation split in micro-batches, each normalised by its own target tokens.
fn valid_plan(data: &Arc<SftData>) -> Vec<SftMicro> {
    let all: Vec<usize> = (0..data.sequences.len()).collect();
    let count = all.len().div_ceil(data.micro_batch);
    all.chunks(data.micro_batch)
        .enumerate()
        .map(|(index, rows)| SftMicro {
            data: data.clone(),
            rows: rows.to_vec(),
            normalizer: None,
            step: 0,
            index,
            last: index + 1 == count,
        })
        .collect()
}

/// Loss, token accuracy and teacher-forced exact match of `model` on `device` over
/// `sequences`, in batches of `micro_batch` padded to a multiple of `pad_to_multiple_of` (and
/// the last to `micro_batch` rows where that multiple is above 1: see
/// [`crate::batch::batch_rows`]), their images read through `vision`: the run's validation
/// pass ([`valid_stats`] over [`valid_plan`]).
pub fn validate<B: Backend>(
    model: &Backbone<B>,
    vision: Option<(&VlmConfig, &ImageProcessor)>,
    sequences: &[Sequence],
    micro_batch: usize,
    pad_to_multiple_of: usize,
    device: &B::Device,
) -> Result<StepStats, TrainError> {
    let data = Arc::new(SftData {
        sequences: sequences.to_vec(),
        vision: vision.map(|(c, p)| (c.clone(), p.clone())),
        micro_batch,
        pad_to_multiple_of,
        loss: SftLoss::Nll,
    });
    let model = SftModel {
        backbone: model.clone().fork(device),
    };
    valid_stats(&model, valid_plan(&data))
}

/// Writes the model in Hugging Face layout with the run's tokenizer and image processor.
struct Exporter {
    tokenizer: Tokenizer,
    processor: Option<ImageProcessor>,
    stop_tokens: Vec<u32>,
}

impl Exporter {
    fn write<A: AutodiffBackend>(
        &self,
        model: &Backbone<A>,
        dir: &Path,
    ) -> Result<PathBuf, TrainError> {
        let merged = model.valid().merged();
        checkpoint::export_model(
            &merged,
            self.processor.as_ref(),
            &self.tokenizer,
            &self.stop_tokens,
            dir,
        )
    }
}

/// What the Learner's thread sends the caller's display.
enum Show {
    Line(String),
    Metrics(bool, usize, usize, Vec<(&'static str, f64)>),
    /// An optimizer step ended: the display is asked whether to stop, and answers.
    Stepped,
}

/// The Learner's side of the display channel.
struct ShowSender {
    show: Sender<Show>,
    acked: Receiver<()>,
}

impl ShowSender {
    // A closed channel means the caller is gone; the run then goes on to its end unseen.
    fn line(&self, text: String) {
        let _ = self.show.send(Show::Line(text));
    }

    fn metrics(&self, valid: bool, step: usize, total: usize, values: Vec<(&'static str, f64)>) {
        let _ = self.show.send(Show::Metrics(valid, step, total, values));
    }

    /// Waits until the display has been asked whether to stop.
    fn stepped(&self) {
        if self.show.send(Show::Stepped).is_ok() {
            let _ = self.acked.recv();
        }
    }
}

/// How a run that reached its end (or its last FLOPs mark) finished.
struct Finished {
    run_dir: PathBuf,
    progress: Progress,
    valid: Option<StepStats>,
    checkpoint: PathBuf,
    final_dir: PathBuf,
    exporter: Exporter,
}

/// The run's learning strategy for burn-train's `SupervisedTraining`: optimizer steps of
/// accumulated micro-batches, validation and checkpoints every `checkpoint_every` steps, stops
/// at a non-finite loss or a stop request. `fit` hands its outcome back through `outcome`.
struct SftStrategy<A: AutodiffBackend> {
    run: Mutex<Option<SftLoop<A>>>,
    outcome: Arc<Mutex<Option<Result<Finished, TrainError>>>>,
}

impl<A: AutodiffBackend> SupervisedLearningStrategy<SftComponents<A>> for SftStrategy<A> {
    fn fit(
        &self,
        components: TrainingComponents<SftComponents<A>>,
        mut learner: Learner<SftComponents<A>>,
        dataloader_train: TrainLoader<SftComponents<A>>,
        dataloader_valid: ValidLoader<SftComponents<A>>,
        _starting_epoch: usize,
    ) -> (
        SftModel<A>,
        SupervisedTrainingEventProcessor<SftComponents<A>>,
    ) {
        let run = self
            .run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let result = match run {
            Some(run) => run.fit(
                &mut learner,
                &*dataloader_train,
                &*dataloader_valid,
                &components.interrupter,
            ),
            None => Err(TrainError::Invalid("an SFT run is trained once".into())),
        };
        *self
            .outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(result);
        (learner.model(), components.event_processor)
    }
}

/// Everything the training loop keeps between steps.
struct SftLoop<A: AutodiffBackend> {
    config: SftConfig,
    folder: RunFolder,
    metrics: MetricsLog,
    exporter: Exporter,
    optim: SharedOptim<BackboneOptim<A>>,
    devices: Vec<A::Device>,
    /// The other workers of a multi-worker run.
    workers: Option<Arc<Workers>>,
    params: usize,
    steps_per_epoch: usize,
    last_step: usize,
    planned_steps: usize,
    progress: Progress,
    valid: Arc<SftData>,
    display: ShowSender,
}

impl<A: AutodiffBackend> SftLoop<A> {
    fn fit(
        mut self,
        learner: &mut Learner<SftComponents<A>>,
        train: &dyn burn::data::dataloader::DataLoader<A, SftMicro>,
        valid: &dyn burn::data::dataloader::DataLoader<A::InnerBackend, SftMicro>,
        interrupter: &Interrupter,
    ) -> Result<Finished, TrainError> {
        let t = self.config.train.clone();
        let flops_marks = &t.checkpoint_flops;
        let mut marks_passed = flops_marks
            .iter()
            .filter(|&&f| self.progress.flops >= f)
            .count();
        let multi = (self.devices.len() > 1)
            .then(|| MultiDevicesTrainStep::<SftComponents<A>>::new(&self.devices));
        if let Some(w) = &self.workers {
            w.check_agreement(self.config.worker_fingerprint(), self.progress.step)?;
        }
        let mut micros = train.iter();
        let mut valid_stats = None;
        let mut window = StepStats::default();
        while self.progress.step < self.last_step
            && (flops_marks.is_empty() || marks_passed < flops_marks.len())
        {
            let step = self.progress.step;
            let mut batch = Vec::with_capacity(t.grad_accum);
            for micro in micros.by_ref() {
                let last = micro.last;
                batch.push(micro);
                if last {
                    break;
                }
            }
            learner.lr_step();
            let lr = learner.lr_current();
            let model = learner.model();
            let (mut grads, stats, input_tokens) = match &self.workers {
                None => step_grads(
                    &model,
                    batch,
                    multi.as_ref().map(|m| (m, &self.devices[..])),
                )?,
                Some(w) => {
                    let own = worker_share(batch, w.rank(), w.world_size());
                    sum_over_workers(w, &model, step_grads(&model, own, None), step)?
                }
            };
            let grad_norm = clip_global_norm(&model, &mut grads, t.max_grad_norm);
            learner.optimizer_step(grads);
            let p = &mut self.progress;
            p.step += 1;
            p.tokens += input_tokens as u64;
            p.flops = train_flops(self.params, p.tokens);
            let progress = *p;
            window.add(&stats);
            let mark =
                marks_passed < flops_marks.len() && progress.flops >= flops_marks[marks_passed];
            if mark {
                marks_passed = flops_marks.iter().filter(|&&f| progress.flops >= f).count();
            }

            if progress.step.is_multiple_of(t.log_every) || progress.step == self.last_step || mark
            {
                self.metrics.write(&json!({
                    "split": "train", "step": progress.step,
                    "epoch": step / self.steps_per_epoch, "lr": lr,
                    "loss": window.loss(), "token_accuracy": window.token_accuracy(),
                    "grad_norm": grad_norm, "tokens": progress.tokens, "flops": progress.flops,
                }))?;
                self.display.metrics(
                    false,
                    progress.step,
                    self.planned_steps,
                    vec![
                        ("loss", window.loss()),
                        ("token accuracy", window.token_accuracy()),
                        ("learning rate", lr),
                    ],
                );
                window = StepStats::default();
            }
            let model = learner.model().backbone;
            let checkpoint_now = mark || progress.step.is_multiple_of(t.checkpoint_every);
            if checkpoint_now || progress.step == self.last_step {
                if !self.valid.sequences.is_empty() {
                    valid_stats = Some(self.validate(learner, valid, progress)?);
                }
                let optim = self.optim.lock();
                let exporter = &self.exporter;
                self.folder
                    .checkpoint(progress.step, &model, &*optim, &progress, &|dir| {
                        exporter.write(&model, dir)
                    })?;
            }
            self.display.stepped();
            if interrupter.should_stop() {
                let checkpoint = match self.folder.last_checkpoint() {
                    Some(c) if checkpoint_now => c.to_path_buf(),
                    _ => {
                        checkpoint::save(&self.folder.dir, &model, &*self.optim.lock(), &progress)?
                    }
                };
                return Err(TrainError::Stopped {
                    step: progress.step,
                    checkpoint,
                });
            }
        }

        let progress = self.progress;
        if let Some(&mark) = flops_marks.last()
            && progress.flops < mark
        {
            self.display.line(format!(
                "warning: the data ran out at {:.3e} training FLOPs, before the last of \
                 `train.checkpoint_flops` ({mark:.3e}); add examples or epochs to reach it",
                progress.flops
            ));
        }
        let model = learner.model().backbone;
        let optim = self.optim.lock();
        let exporter = &self.exporter;
        let (checkpoint, final_dir) =
            self.folder
                .finish(progress.step, &model, &*optim, &progress, &|dir| {
                    exporter.write(&model, dir)
                })?;
        drop(optim);
        Ok(Finished {
            run_dir: self.folder.dir,
            progress,
            valid: valid_stats,
            checkpoint,
            final_dir,
            exporter: self.exporter,
        })
    }

    /// Loss, token accuracy and teacher-forced exact match over the validation split (its
    /// micro-batches from `valid`), and the greedy answer match of its first
    /// `train.answer_match` examples; logged and shown.
    fn validate(
        &mut self,
        learner: &Learner<SftComponents<A>>,
        valid: &dyn burn::data::dataloader::DataLoader<A::InnerBackend, SftMicro>,
        progress: Progress,
    ) -> Result<StepStats, TrainError> {
        let t = &self.config.train;
        let inference = learner.model().valid();
        let v = match &self.workers {
            None => valid_stats(&inference, valid.iter())?,
            Some(w) => {
                let own = worker_share(valid.iter().collect(), w.rank(), w.world_size());
                sum_stats(w, &valid_stats(&inference, own)?)?
            }
        };
        let sequences = &self.valid.sequences;
        // Greedy answers: worker 0 alone (the others' metrics leave them out).
        let answered = match self.workers.as_ref().map_or(0, |w| w.rank()) {
            0 => t.answer_match.min(sequences.len()),
            _ => 0,
        };
        let answered = &sequences[..answered];
        let longest = answered.iter().map(|s| s.ids.len() - s.prompt_len).max();
        let answer_match = longest
            .map(|longest| {
                greedy_answer_match(
                    &inference.backbone,
                    self.exporter.processor.as_ref(),
                    &self.exporter.tokenizer,
                    answered,
                    longest + 16,
                    t.micro_batch,
                    Some(self.valid.pad_to_multiple_of),
                    &self.devices[0],
                )
            })
            .transpose()?;
        self.metrics.write(&json!({
            "split": "valid", "step": progress.step, "loss": v.loss(),
            "token_accuracy": v.token_accuracy(), "exact_match": v.exact_match(),
            "answer_match": answer_match, "answer_match_examples": answered.len(),
            "tokens": progress.tokens, "flops": progress.flops,
        }))?;
        let mut values = vec![
            ("loss", v.loss()),
            ("token accuracy", v.token_accuracy()),
            ("exact match", v.exact_match()),
        ];
        values.extend(answer_match.map(|m| ("greedy answer match", m)));
        self.display
            .metrics(true, progress.step, self.planned_steps, values);
        Ok(v)
    }
}
