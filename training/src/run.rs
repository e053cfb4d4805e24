//! One SFT run, top to bottom: data → model → optimizer steps (micro-batches accumulated) →
//! periodic validation and checkpoints → the final model in Hugging Face layout → GeneralPoints
//! episodes. A run writes `runs/<name>/`: `config.toml` (resolved; kept on resume),
//! `metrics.jsonl`, `checkpoints/step-NNNNNN/` (each with its model in HF layout under `hf/` when
//! `export_checkpoints` is on), `final/` and `eval.json`. Checkpoints fall every
//! `checkpoint_every` steps and where the compute first reaches each of `checkpoint_flops`.
//!
//! The run folder, resuming, checkpoints and exports are the [`RunFolder`] every run shares.
//! The loop is driven step by step rather than through burn-train's epoch-based `Learner`, so
//! that checkpoints fall every `checkpoint_every` optimizer steps, a resumed run replays the
//! exact data order and learning rate of an uninterrupted one, and a non-finite loss stops the
//! run before it touches the weights. burn-train is used for its terminal dashboard
//! ([`crate::display`]).

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde_json::json;
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{Backbone, FusedAdamW, ImageProcessor, VlmConfig};

use crate::answer_match::greedy_answer_match;
use crate::batch::{SftBatch, batch_rows};
use crate::checkpoint::{self, Progress};
use crate::config::SftConfig;
use crate::data::{Sequence, epoch_order, read_chat_jsonl, split, tokenize_all};
use crate::display::RunDisplay;
use crate::error::TrainError;
use crate::flops::train_flops;
use crate::gp_eval::{GpEvalResult, gp_success};
use crate::grad_clip::clip_global_norm;
use crate::metrics_log::MetricsLog;
use crate::pixels::PixelCache;
use crate::policy::backbone_policy;
use crate::schedule::SftLr;
use crate::setup::{build_model, ensure_data};
use crate::skeleton::RunFolder;
use crate::step::{StepStats, masked_loss};

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

/// Trains as `config` says; with `resume`, continues from the run's newest checkpoint.
/// `display` hears every logged step (any `FnMut(&str)` closure takes plain lines); when it
/// reports a stop request, the run checkpoints and ends with [`TrainError::Stopped`].
pub fn run_sft<A: AutodiffBackend>(
    config: &SftConfig,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
) -> Result<RunSummary, TrainError> {
    let mut folder = RunFolder::open(config, resume, config.train.export_checkpoints)?;

    ensure_data(&config.data)?;
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
    let stop_tokens = tokenizer.stop_tokens();
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
    let vlm_config = model.vision_config().cloned();
    let vision = vlm_config.as_ref().zip(processor.as_ref());

    let optim =
        FusedAdamW::new(t.beta1, t.beta2, t.epsilon, t.weight_decay).init::<A, Backbone<A>>();
    let (mut model, mut optim, saved) =
        folder.resume::<A, _, _, Progress>(model, optim, device, display)?;
    let mut progress = saved.unwrap_or_default();
    let export = |model: &Backbone<A>, dir: &Path| {
        let merged = model.valid().merged();
        checkpoint::export_model(&merged, processor.as_ref(), &tokenizer, &stop_tokens, dir)
    };
    folder.repair_export(&|dir| export(&model, dir))?;
    let metrics_path = folder.dir.join("metrics.jsonl");
    let mut metrics = MetricsLog::open(&metrics_path, progress.step)?;
    display.line(&format!(
        "{} train / {} valid examples, {params} parameters ({trainable} trained){}, \
         {total_steps} steps of {global_batch} ({steps_per_epoch} per epoch); {}; {}; chat \
         template {}",
        train.len(),
        valid.len(),
        match &processor {
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
        schedule,
        if t.max_grad_norm > 0.0 {
            format!("global gradient norm clipped to {}", t.max_grad_norm)
        } else {
            "no gradient clipping".to_string()
        },
        tokenizer.chat_template()
    ));

    let flops_marks = &t.checkpoint_flops;
    // With FLOPs marks the run ends at the last one: estimate that step from the mean tokens
    // per step, for progress displays.
    let planned_steps = match flops_marks.last() {
        Some(&mark) => {
            let tokens: usize = train.iter().map(|s| s.ids.len() - 1).sum();
            let per_step = train_flops(params, tokens as u64) / steps_per_epoch as f64;
            last_step.min((mark / per_step).ceil() as usize)
        }
        None => last_step,
    };
    let mut marks_passed = flops_marks.iter().filter(|&&f| progress.flops >= f).count();

    let mut valid_stats = None;
    let mut window = StepStats::default();
    let mut order = (usize::MAX, Vec::new());
    while progress.step < last_step && (flops_marks.is_empty() || marks_passed < flops_marks.len())
    {
        let step = progress.step;
        let epoch = step / steps_per_epoch;
        if order.0 != epoch {
            order = (epoch, epoch_order(train.len(), config.seed, epoch));
        }
        let start = (step % steps_per_epoch) * global_batch;
        let picked: Vec<&Sequence> = order.1[start..(start + global_batch).min(train.len())]
            .iter()
            .map(|&i| &train[i])
            .collect();
        let normalizer: usize = picked.iter().map(|s| s.ids.len() - s.prompt_len).sum();

        let mut accumulator = GradientsAccumulator::<Backbone<A>>::new();
        let mut stats = StepStats::default();
        let mut input_tokens = 0;
        for micro in picked.chunks(t.micro_batch) {
            let rows = batch_rows(micro.len(), t.micro_batch, multiple);
            let batch = SftBatch::<A>::with_rows(micro, rows, multiple, vision, device)?;
            input_tokens += batch.input_tokens;
            let out = masked_loss(&model, &batch, normalizer)?;
            if !out.stats.nll_sum.is_finite() {
                return Err(TrainError::NonFinite {
                    step: step + 1,
                    loss: out.stats.nll_sum as f32,
                });
            }
            stats.add(&batch.real_stats(out.stats));
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let lr = schedule.lr(step);
        let mut grads = accumulator.grads();
        let grad_norm = clip_global_norm(&model, &mut grads, t.max_grad_norm);
        model = optim.step(lr, model, grads);
        progress.step += 1;
        progress.tokens += input_tokens as u64;
        progress.flops = train_flops(params, progress.tokens);
        window.add(&stats);
        let mark = marks_passed < flops_marks.len() && progress.flops >= flops_marks[marks_passed];
        if mark {
            marks_passed = flops_marks.iter().filter(|&&f| progress.flops >= f).count();
        }

        if progress.step % t.log_every == 0 || progress.step == last_step || mark {
            metrics.write(&json!({
                "split": "train", "step": progress.step, "epoch": epoch, "lr": lr,
                "loss": window.loss(), "token_accuracy": window.token_accuracy(),
                "grad_norm": grad_norm, "tokens": progress.tokens, "flops": progress.flops,
            }))?;
            display.metrics(
                false,
                progress.step,
                planned_steps,
                &[
                    ("loss", window.loss()),
                    ("token accuracy", window.token_accuracy()),
                    ("learning rate", lr),
                ],
            );
            window = StepStats::default();
        }
        let checkpoint_now = mark || progress.step % t.checkpoint_every == 0;
        if checkpoint_now || progress.step == last_step {
            if !valid.is_empty() {
                let inference = model.valid();
                let v = validate(&inference, vision, &valid, t.micro_batch, multiple, device)?;
                let answered = &valid[..t.answer_match.min(valid.len())];
                let longest = answered.iter().map(|s| s.ids.len() - s.prompt_len).max();
                let answer_match = longest
                    .map(|longest| {
                        greedy_answer_match(
                            &inference,
                            processor.as_ref(),
                            &tokenizer,
                            answered,
                            longest + 16,
                            t.micro_batch,
                            Some(multiple),
                            device,
                        )
                    })
                    .transpose()?;
                metrics.write(&json!({
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
                display.metrics(true, progress.step, planned_steps, &values);
                valid_stats = Some(v);
            }
            folder.checkpoint(progress.step, &model, &optim, &progress, &|dir| {
                export(&model, dir)
            })?;
        }
        if display.stop_requested() {
            let checkpoint = match folder.last_checkpoint() {
                Some(c) if checkpoint_now => c.to_path_buf(),
                _ => checkpoint::save(&folder.dir, &model, &optim, &progress)?,
            };
            return Err(TrainError::Stopped {
                step: progress.step,
                checkpoint,
            });
        }
    }

    if let Some(&mark) = flops_marks.last()
        && progress.flops < mark
    {
        display.line(&format!(
            "warning: the data ran out at {:.3e} training FLOPs, before the last of \
             `train.checkpoint_flops` ({mark:.3e}); add examples or epochs to reach it",
            progress.flops
        ));
    }
    let (checkpoint, final_dir) =
        folder.finish(progress.step, &model, &optim, &progress, &|dir| {
            export(&model, dir)
        })?;
    let run_dir = folder.dir;
    let inference = model.valid().merged();
    let gp_eval = match &config.eval {
        Some(eval) => {
            let pixels = processor.clone().map(PixelCache::new);
            let mut policy = backbone_policy(&inference, None, pixels.as_ref(), device)?;
            let r = gp_success(policy.as_mut(), &tokenizer, eval, Some(multiple))?;
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
            let path = run_dir.join("eval.json");
            let text = serde_json::to_string_pretty(&json!({
                "step": progress.step, "flops": progress.flops,
                "gp_id": r, "success_rate": r.success_rate(),
            }))
            .expect("JSON serialises");
            crate::durable::write_file(&path, text)?;
            Some(r)
        }
        None => None,
    };
    Ok(RunSummary {
        run_dir,
        progress,
        valid: valid_stats,
        checkpoint,
        final_dir,
        gp_eval,
    })
}

/// Loss, token accuracy and teacher-forced exact match over `sequences`, in batches of
/// `micro_batch` padded to a multiple of `pad_to_multiple_of` (and the last to `micro_batch`
/// rows where that multiple is above 1: see [`batch_rows`]), their images read through
/// `vision`.
pub fn validate<B: Backend>(
    model: &Backbone<B>,
    vision: Option<(&VlmConfig, &ImageProcessor)>,
    sequences: &[Sequence],
    micro_batch: usize,
    pad_to_multiple_of: usize,
    device: &B::Device,
) -> Result<StepStats, TrainError> {
    let mut stats = StepStats::default();
    let refs: Vec<&Sequence> = sequences.iter().collect();
    for micro in refs.chunks(micro_batch) {
        let rows = batch_rows(micro.len(), micro_batch, pad_to_multiple_of);
        let batch = SftBatch::<B>::with_rows(micro, rows, pad_to_multiple_of, vision, device)?;
        let out = masked_loss(model, &batch, batch.target_tokens)?;
        stats.add(&batch.real_stats(out.stats));
    }
    Ok(stats)
}
