//! One RL run, top to bottom: load the SFT policy and add a value head → (optionally) measure
//! GeneralPoints success → per update: collect rollouts, compute advantages, run the PPO epochs,
//! log a metrics line, checkpoint → export the policy → measure success again.
//!
//! A run writes `runs/<name>/`: `config.toml` (kept when the run resumes), `metrics.jsonl` (one line per update),
//! `checkpoints/step-NNNNNN/` (model + value head, Adam state, progress and every environment's
//! episode so far, so a resumed run continues exactly; with `export_checkpoints`, also the policy
//! in HF layout under `hf/`), `final/` (the policy in HF layout) and `eval.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use burn_collective::reset_collective;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sftvsrl_envs::Rng;
use sftvsrl_model::device::{CpuBackend, pad_multiple};
use sftvsrl_model::{FusedAdamW, GenerateConfig, Sampling, load_backbone};

use super::buffer::Sample;
use super::config::{AdvantageKind, EnvKind, RlConfig};
use super::distill;
use super::distributed::Shard;
use super::gae::{explained_variance, mean};
use super::logprob::answer_marker;
use super::ppo::{
    Experience, OptimizerStep, UpdateSettings, UpdateStats, advantages, advantages_across,
    ppo_update, ppo_update_across,
};
use super::rollout::{CollectSettings, Collected, Finished, collect, rl_envs, rl_pool_from};
use super::value_head::{ActorCritic, ValueHead};
use crate::checkpoint;
use crate::collective::{WorkerSpec, Workers};
use crate::config::RunConfig;
use crate::display::RunDisplay;
use crate::engine::EnvState;
use crate::error::TrainError;
use crate::flops::{inference_flops, train_flops};
use crate::gp_eval::{GpEvalResult, gp_success};
use crate::metrics_log::MetricsLog;
use crate::pixels::PixelCache;
use crate::policy::backbone_policy;
use crate::schedule::cosine_annealing;
use crate::skeleton::RunFolder;

/// Where an RL run stands after an update (saved in each checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RlProgress {
    /// Updates done.
    pub update: usize,
    /// Optimizer steps done.
    pub optimizer_steps: usize,
    /// Tokens through training forward and backward passes.
    pub trained_tokens: u64,
    /// Tokens through inference: prompts prefilled, tokens generated, reference scoring.
    pub inference_tokens: u64,
    /// 6·N·trained + 2·N·inference tokens.
    pub flops: f64,
    /// Every environment's current episode.
    pub envs: Vec<EnvState>,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RlSummary {
    pub run_dir: PathBuf,
    pub progress: RlProgress,
    /// Mean verifier reward of each update run by this call, in order.
    pub mean_rewards: Vec<f64>,
    pub checkpoint: PathBuf,
    /// The trained policy with its tokenizer, in Hugging Face layout.
    pub final_dir: PathBuf,
    /// GeneralPoints success of the starting policy (fresh runs with `eval` only).
    pub eval_before: Option<GpEvalResult>,
    /// GeneralPoints success of the trained policy (with `eval`).
    pub eval_after: Option<GpEvalResult>,
}

/// Trains as `config` says; with `resume`, continues from the run's newest checkpoint.
/// `display` receives one human-readable line per update (any `FnMut(&str)` closure will do).
pub fn run_rl<A: AutodiffBackend>(
    config: &RlConfig,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
) -> Result<RlSummary, TrainError> {
    train::<A>(config, resume, device, display, None)
}

/// [`run_rl`] as worker `spec.rank` of `spec.world_size` worker processes (one command per
/// worker; `rl::distributed` has the semantics): `rollout.num_envs` is each worker's share of
/// the environments, and the run takes the optimizer steps of one worker with all of them.
/// Worker 0 writes `<runs_dir>/<name>/` and runs `eval`; worker `r > 0` writes its own
/// `<runs_dir>/<name>.rank-<r>/` (same weights, its own environments' episodes, which a
/// resumed run replays), so that `--resume` works on every worker. Every worker must be given
/// the same config.
pub fn run_rl_across<A: AutodiffBackend>(
    config: &RlConfig,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
    spec: &WorkerSpec,
) -> Result<RlSummary, TrainError> {
    spec.validate().map_err(TrainError::Invalid)?;
    check_global(config, spec.world_size)?;
    let workers = Workers::join(spec)?;
    let summary = train::<A>(
        &config.for_worker(spec.rank),
        resume,
        device,
        display,
        Some(&workers),
    )?;
    workers.finish()?;
    Ok(summary)
}

/// [`run_rl_across`] with one worker per device of `devices`, each a thread of this process and
/// a local peer of burn-collective (no orchestrator): worker 0 on `devices[0]` reports to
/// `display`, writes `<runs_dir>/<name>/` and runs `eval`; worker `r` writes
/// `<runs_dir>/<name>.rank-<r>/`. When one worker fails the others stop, and the error is the
/// failed worker's. The CPU backends' one device may be listed more than once.
pub fn run_rl_local<A: AutodiffBackend>(
    config: &RlConfig,
    resume: bool,
    devices: &[A::Device],
    display: &mut dyn RunDisplay,
    timeout: Duration,
) -> Result<RlSummary, TrainError> {
    let n = devices.len();
    if n < 2 {
        return Err(TrainError::Invalid(
            "local workers need at least 2 devices".into(),
        ));
    }
    check_global(config, n)?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = |rank: usize, display: &mut dyn RunDisplay| {
        let result = Workers::join_local(rank, n, timeout, stop.clone()).and_then(|workers| {
            let own = config.for_worker(rank);
            let summary = train::<A>(&own, resume, &devices[rank], display, Some(&workers))?;
            workers.finish()?;
            Ok(summary)
        });
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result.map_err(|e| (rank, e))
    };
    let results: Vec<Result<RlSummary, (usize, TrainError)>> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..n)
            .map(|rank| scope.spawn(move || worker(rank, &mut |_: &str| {})))
            .collect();
        let mut results = vec![worker(0, display)];
        results.extend(others.into_iter().enumerate().map(|(i, handle)| {
            handle.join().unwrap_or_else(|_| {
                stop.store(true, Ordering::Relaxed);
                Err((
                    i + 1,
                    TrainError::Invalid("the worker thread panicked".into()),
                ))
            })
        }));
        results
    });
    if stop.load(Ordering::Relaxed) {
        // Peers that never finished stay registered: forget them, so that the process can run
        // another collective.
        reset_collective::<CpuBackend>();
    }
    let mut results = results.into_iter();
    let first = results.next().expect("worker 0");
    let mut errors: Vec<(usize, TrainError)> = results.filter_map(Result::err).collect();
    let summary = first.map_err(|e| errors.insert(0, e)).ok();
    // The failed worker's own error, before the others' "stopped" ones.
    errors.sort_by_key(|(_, e)| matches!(e, TrainError::PeerFailed(_)));
    match (errors.into_iter().next(), summary) {
        (Some((rank, e)), _) => Err(TrainError::Invalid(format!("local worker {rank}: {e}"))),
        (None, summary) => Ok(summary.expect("worker 0 succeeded")),
    }
}

/// Checks that `world_size` workers' environments together form a valid run.
fn check_global(config: &RlConfig, world_size: usize) -> Result<(), TrainError> {
    let mut global = config.clone();
    global.rollout.num_envs *= world_size;
    global.validate().map_err(|e| {
        TrainError::Invalid(format!(
            "{world_size} workers × rollout.num_envs = {} environments: {e}",
            config.rollout.num_envs
        ))
    })
}

/// The run of [`run_rl`], on its own or as one of `workers`.
fn train<A: AutodiffBackend>(
    config: &RlConfig,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
    workers: Option<&Workers>,
) -> Result<RlSummary, TrainError> {
    let mut folder = RunFolder::open(config, resume, config.export_checkpoints)?;
    let loaded = load_backbone::<A>(&config.policy, device)?;
    let mut tokenizer = loaded.tokenizer.ok_or_else(|| TrainError::Config {
        path: config.policy.clone(),
        message: "the policy checkpoint has no tokenizer.json".into(),
    })?;
    if let Some(date) = &config.chat_date {
        tokenizer
            .set_chat_date(date)
            .map_err(|e| TrainError::Invalid(format!("`chat_date`: {e}")))?;
    }
    folder.check_tokenizer(&tokenizer)?;
    let (r, p, o) = (&config.rollout, &config.ppo, &config.optim);
    let marker = answer_marker(&tokenizer, &p.answer_key)?;
    let shows_images = match config.env {
        EnvKind::GpL => config.gp.vision,
        EnvKind::VirlL => config.nav.vision,
    };
    if shows_images && loaded.model.vision_config().is_none() {
        return Err(TrainError::Config {
            path: config.policy.clone(),
            message: "the task shows images (`gp.vision` / `nav.vision`), but this policy is \
                      a language model: start from a vision-language checkpoint"
                .into(),
        });
    }
    let hidden = loaded.model.hidden_size();
    let reference = (p.kl_coef > 0.0).then(|| loaded.model.valid());
    let vocab = loaded.model.language_model().config().vocab_size;
    let teacher = config
        .distill
        .as_ref()
        .map(|d| distill::load_teacher::<A::InnerBackend>(d, vocab, device));
    let teacher = teacher.transpose()?;
    let policy = match &config.lora {
        Some(lora) => loaded.model.with_lora(lora, config.seed, device),
        None => loaded.model,
    };
    let processor = loaded.processor;
    // Pixels of the rollouts' images, computed once per observation for generation, the KL
    // reference and every PPO epoch.
    let pixels = processor.clone().map(PixelCache::new);
    let model = ActorCritic {
        value_head: ValueHead::new(hidden, &config.value_head.hidden, config.seed, device),
        policy,
    };
    // Adam: AdamW without weight decay.
    let optim = FusedAdamW::new(o.beta1, o.beta2, o.epsilon, 0.0).init::<A, ActorCritic<A>>();
    let params = model.num_params();
    let trained = match model.policy.lora_trainable_params() {
        Some(n) => n + model.value_head.num_params(),
        None => params,
    };
    let (mut model, mut optim, saved) =
        folder.resume::<A, _, _, RlProgress>(model, optim, device, display)?;
    let mut progress = saved.unwrap_or_default();
    if let Some(workers) = workers {
        workers.check_agreement(config.worker_fingerprint(), progress.update)?;
    }
    let shard = workers.map(|workers| Shard {
        workers,
        num_envs: r.num_envs,
    });
    let export = |model: &ActorCritic<A>, dir: &Path| {
        let policy = model.policy.valid().merged();
        checkpoint::export_model(
            &policy,
            processor.as_ref(),
            &tokenizer,
            &loaded.stop_tokens,
            dir,
        )
    };
    folder.repair_export(&|dir| export(&model, dir))?;
    let mut metrics = MetricsLog::open(&folder.dir.join("metrics.jsonl"), progress.update)?;
    let group_size = match p.advantage {
        AdvantageKind::Gae => 1,
        AdvantageKind::Group => p.group_size,
    };
    let saved = (progress.update > 0).then(|| progress.envs.clone());
    let (envs, parsable) = rl_envs(config)?;
    let first_env = shard.map_or(0, |s| s.workers.rank() * r.num_envs);
    let mut pool = rl_pool_from(envs, config.seed, group_size, first_env, saved, &tokenizer)?;
    let schedule_steps = o.schedule_stepping.steps_per_update();
    let multiple = pad_multiple::<A>(config.pad_to_multiple_of, device);
    let generate = GenerateConfig {
        max_new_tokens: r.max_new_tokens,
        sampling: Sampling {
            temperature: r.temperature,
            top_p: r.top_p,
        },
        stop_tokens: loaded.stop_tokens.clone(),
        seed: 0,
        pad_to_multiple_of: Some(multiple),
    };
    display.line(&format!(
        "{params} parameters ({trained} trained); {} updates of {} environments × {} steps; {} samples per \
         optimizer step; cosine lr {:.3e} → {:.3e} over {} scheduler steps, {schedule_steps} \
         per update; chat template {}",
        p.num_updates,
        r.num_envs,
        r.num_steps,
        p.samples_per_step,
        o.lr,
        o.min_lr,
        o.t_max,
        tokenizer.chat_template()
    ));

    let evaluate = |model: &ActorCritic<A>, when: &str, display: &mut dyn RunDisplay| {
        config
            .eval
            .as_ref()
            .map(|eval| {
                let inference = model.policy.valid();
                let mut policy = backbone_policy(&inference, None, pixels.as_ref(), device)?;
                let result = gp_success(policy.as_mut(), &tokenizer, eval, Some(multiple))?;
                display.line(&format!(
                    "GeneralPoints ID {when}: {}/{} episodes solved ({:.1}% ± {:.1}%)",
                    result.successes,
                    result.episodes,
                    100.0 * result.success_rate(),
                    100.0 * standard_error(&result)
                ));
                Ok::<_, TrainError>(result)
            })
            .transpose()
    };
    let eval_before = if progress.update == 0 {
        evaluate(&model, "before RL", display)?
    } else {
        None
    };

    let mut mean_rewards = Vec::new();
    while progress.update < p.num_updates {
        let update = progress.update;
        let lr = cosine_annealing(o.lr, o.min_lr, o.t_max, schedule_steps * update);
        let inference = model.valid();
        let mut policy = backbone_policy(
            &inference.policy,
            Some(&inference.value_head),
            pixels.as_ref(),
            device,
        )?;
        let mut collected = collect(
            policy.as_mut(),
            &tokenizer,
            &mut pool,
            &CollectSettings {
                num_steps: r.num_steps,
                generate: generate.clone(),
                seed: sampler_seed(config.seed, update, shard),
                marker: &marker,
                thought_coef: p.thought_prob_coef,
                parsable,
                kl: reference.as_ref().map(|m| (m, p.kl_coef)),
            },
            pixels.as_ref(),
            device,
        )?;
        drop(policy);
        let distill_tokens = match (&config.distill, &teacher) {
            (Some(d), Some(teacher)) => distill::reward_by_teacher(
                &inference.policy,
                teacher,
                d.coef,
                &mut collected.samples,
                r.temperature,
                multiple,
                pixels.as_ref(),
                device,
            )?,
            _ => 0,
        };
        let samples = &collected.samples;
        check_samples(samples, &progress, display)?;
        let (adv, returns) = match shard {
            Some(shard) => advantages_across(samples, &collected.next_values, p, shard)?,
            None => advantages(samples, &collected.next_values, p),
        };
        let start = Instant::now();
        let experience = Experience {
            samples,
            advantages: &adv,
            returns: &returns,
        };
        let settings = UpdateSettings {
            lr,
            temperature: r.temperature,
            seed: Rng::derive(config.seed, 2 * update as u64 + 1).next_u64(),
            steps_before: progress.optimizer_steps,
            pad_to_multiple_of: multiple,
        };
        let cache = pixels.as_ref();
        let (next, stats) = match shard {
            Some(shard) => ppo_update_across(
                model, &mut optim, experience, p, settings, cache, device, shard,
            )?,
            None => ppo_update(model, &mut optim, experience, p, settings, cache, device)?,
        };
        model = next;
        let update_time = start.elapsed();

        let reference_tokens: u64 = match reference {
            Some(_) => samples
                .iter()
                .map(|s| (s.prompt.len() + s.response.len()) as u64)
                .sum(),
            None => 0,
        };
        progress.update += 1;
        progress.optimizer_steps += stats.optimizer_steps;
        progress.trained_tokens += stats.trained_tokens;
        progress.inference_tokens += collected.prompt_tokens
            + collected.generated_tokens
            + reference_tokens
            + distill_tokens;
        progress.flops = train_flops(params, progress.trained_tokens)
            + inference_flops(params, progress.inference_tokens);
        progress.envs = pool.states();
        let ev = (p.advantage == AdvantageKind::Gae)
            .then(|| {
                let values: Vec<f64> = samples.iter().map(|s| f64::from(s.value)).collect();
                explained_variance(&values, &returns)
            })
            .flatten();
        let all_workers = workers
            .map(|w| AllWorkers::sum(&collected, w))
            .transpose()?;
        let report = UpdateReport {
            progress: &progress,
            num_updates: p.num_updates,
            lr,
            collected: &collected,
            stats: &stats,
            explained_variance: ev,
            update_time,
            all_workers,
        };
        mean_rewards.push(report.log(&mut metrics, display)?);
        display.progress(progress.update, p.num_updates);
        if progress.update % config.checkpoint_every == 0 || progress.update == p.num_updates {
            folder.checkpoint(progress.update, &model, &optim, &progress, &|dir| {
                export(&model, dir)
            })?;
        }
    }

    let (checkpoint, final_dir) =
        folder.finish(progress.update, &model, &optim, &progress, &|dir| {
            export(&model, dir)
        })?;
    let run_dir = folder.dir;
    let eval_after = evaluate(&model, "after RL", display)?;
    if let Some(after) = &eval_after {
        let path = run_dir.join("eval.json");
        let text = serde_json::to_string_pretty(&json!({
            "update": progress.update, "flops": progress.flops,
            "before": eval_before, "after": after,
            "success_before": eval_before.as_ref().map(GpEvalResult::success_rate),
            "success_after": after.success_rate(),
        }))
        .expect("JSON serialises");
        crate::durable::write_file(&path, text)?;
    }
    Ok(RlSummary {
        run_dir,
        progress,
        mean_rewards,
        checkpoint,
        final_dir,
        eval_before,
        eval_after,
    })
}

/// The seed of an update's sampling: worker `r > 0` of a multi-worker run draws its own stream
/// (one worker's sampler draws row by row over its batch, so the streams of N workers and of
/// one worker with all environments differ anyway).
fn sampler_seed(seed: u64, update: usize, shard: Option<Shard<'_>>) -> u64 {
    let base = Rng::derive(seed, 2 * update as u64).next_u64();
    match shard.map_or(0, |s| s.workers.rank()) {
        0 => base,
        rank => Rng::derive(base, rank as u64).next_u64(),
    }
}

/// Stops the run on a non-finite value or log-prob (before it reaches the weights), and warns
/// when the first rollout holds no parsable answer.
fn check_samples(
    samples: &[Sample],
    progress: &RlProgress,
    display: &mut dyn RunDisplay,
) -> Result<(), TrainError> {
    if let Some(s) = samples
        .iter()
        .find(|s| !(s.value.is_finite() && s.logprob.is_finite()))
    {
        return Err(TrainError::NonFinite {
            step: progress.optimizer_steps + 1,
            loss: if s.value.is_finite() {
                s.logprob
            } else {
                s.value
            },
        });
    }
    if progress.update == 0 && !samples.iter().any(|s| s.parsable) {
        display.line(&format!(
            "warning: the initial policy produced no parsable answer in {} responses; RL from a \
             policy that cannot answer in the expected format gets no signal (start from an SFT \
             checkpoint)",
            samples.len()
        ));
    }
    Ok(())
}

/// What one update did, for its metrics line and its log line.
struct UpdateReport<'a> {
    progress: &'a RlProgress,
    num_updates: usize,
    lr: f64,
    collected: &'a Collected,
    stats: &'a UpdateStats,
    explained_variance: Option<f64>,
    update_time: std::time::Duration,
    /// The rollouts of every worker, in a multi-worker run.
    all_workers: Option<AllWorkers>,
}

/// The rollouts of an update over every worker of a multi-worker run: each worker's metrics
/// line holds them beside its own, so that any one worker's `metrics.jsonl` shows the run.
#[derive(Clone, Copy, Debug)]
struct AllWorkers {
    mean_reward: f64,
    parsable: f64,
    episodes: usize,
    episode_success: Option<f64>,
}

impl AllWorkers {
    /// Sums this worker's rollouts with every other worker's (one collective call, which every
    /// worker makes at the same point of each update).
    fn sum(collected: &Collected, workers: &Workers) -> Result<Self, TrainError> {
        let (samples, finished) = (&collected.samples, &collected.finished);
        let sum = |values: &mut dyn Iterator<Item = f64>| values.sum::<f64>() as f32;
        let own = vec![
            samples.len() as f32,
            sum(&mut samples.iter().map(|s| s.reward)),
            sum(&mut samples.iter().map(|s| f64::from(u8::from(s.parsable)))),
            finished.len() as f32,
            sum(&mut finished.iter().map(|f| f64::from(u8::from(f.success)))),
        ];
        let t: Vec<f64> = workers.sum(own)?.into_iter().map(f64::from).collect();
        Ok(AllWorkers {
            mean_reward: t[1] / t[0],
            parsable: t[2] / t[0],
            episodes: t[3] as usize,
            episode_success: (t[3] > 0.0).then(|| t[4] / t[3]),
        })
    }
}

impl UpdateReport<'_> {
    /// Writes the update's line of `metrics.jsonl` and its log line; returns the mean reward
    /// (over every worker's samples in a multi-worker run).
    fn log(
        &self,
        metrics: &mut MetricsLog,
        display: &mut dyn RunDisplay,
    ) -> Result<f64, TrainError> {
        let (progress, stats, samples) = (self.progress, self.stats, &self.collected.samples);
        let mean_of = |f: &dyn Fn(&Sample) -> f64| mean(&samples.iter().map(f).collect::<Vec<_>>());
        let reward = mean_of(&|s| s.reward);
        let parsable = mean_of(&|s| f64::from(u8::from(s.parsable)));
        let finished = &self.collected.finished;
        let per_episode = |f: &dyn Fn(&Finished) -> f64| {
            (!finished.is_empty())
                .then(|| finished.iter().map(f).sum::<f64>() / finished.len() as f64)
        };
        let success = per_episode(&|f| f64::from(u8::from(f.success)));
        let t = &self.collected.timing;
        let mut line = json!({
            "step": progress.update, "lr": self.lr, "mean_reward": reward,
            "episodes": finished.len(), "episode_success": success,
            "calls_per_episode": per_episode(&|f| f64::from(f.calls)),
            "revision_depth": mean_of(&|s| f64::from(s.depth)),
            "response_length": mean_of(&|s| s.response.len() as f64),
            "parsable": parsable, "kl_penalty": mean_of(&|s| s.kl),
            "approx_kl": stats.approx_kl, "clip_fraction": stats.clip_fraction,
            "policy_loss": stats.policy_loss, "value_loss": stats.value_loss,
            "entropy": stats.entropy, "explained_variance": self.explained_variance,
            "grad_norm": stats.grad_norm, "ratio_rule_hits": stats.ratio_rule_hits,
            "skipped_minibatches": stats.skipped,
            "optimizer_steps": progress.optimizer_steps,
            "update_optimizer_steps": stats.steps.len(),
            "step_lrs": stats.steps.iter().map(|s| s.lr).collect::<Vec<_>>(),
            "step_samples": stats.steps.iter().map(|s| s.samples).collect::<Vec<_>>(),
            "step_grad_norms": stats.steps.iter().map(|s| s.grad_norm).collect::<Vec<_>>(),
            "trained_tokens": progress.trained_tokens,
            "inference_tokens": progress.inference_tokens, "flops": progress.flops,
            "time_generation_s": t.generation.as_secs_f64(),
            "time_environment_s": t.environment.as_secs_f64(),
            "time_reference_s": t.reference.as_secs_f64(),
            "time_update_s": self.update_time.as_secs_f64(),
            "sample_response": samples[0].text,
        });
        if let Some(a) = self.all_workers {
            line["all_workers"] = json!({
                "mean_reward": a.mean_reward, "parsable": a.parsable,
                "episodes": a.episodes, "episode_success": a.episode_success,
            });
        }
        metrics.write(&line)?;
        display.line(&format!(
            "update {}/{} reward {reward:.3} success {} parsable {parsable:.2} \
             value loss {:.4} clip {:.3} kl {:.4} | {} | gen {:.1}s env {:.2}s update {:.1}s",
            progress.update,
            self.num_updates,
            success.map_or("-".into(), |s| format!("{s:.3}")),
            stats.value_loss,
            stats.clip_fraction,
            stats.approx_kl,
            steps_line(&stats.steps),
            t.generation.as_secs_f64(),
            t.environment.as_secs_f64(),
            self.update_time.as_secs_f64(),
        ));
        let Some(all) = self.all_workers else {
            return Ok(reward);
        };
        display.line(&format!(
            "update {}/{} all workers: reward {:.3} success {} parsable {:.2} ({} episodes)",
            progress.update,
            self.num_updates,
            all.mean_reward,
            all.episode_success
                .map_or("-".into(), |s| format!("{s:.3}")),
            all.parsable,
            all.episodes,
        ));
        Ok(all.mean_reward)
    }
}

/// The optimizer steps of an update as a log reads them: `8 steps (1024 samples each) at lr
/// 1.000e-6`, or each step's samples and rate when they differ.
fn steps_line(steps: &[OptimizerStep]) -> String {
    let Some(first) = steps.first() else {
        return "no optimizer step".into();
    };
    let n = steps.len();
    let plural = if n == 1 { "" } else { "s" };
    if steps
        .iter()
        .all(|s| (s.lr, s.samples) == (first.lr, first.samples))
    {
        return format!(
            "{n} optimizer step{plural} ({} samples each) at lr {:.3e}",
            first.samples, first.lr
        );
    }
    let each: Vec<String> = steps
        .iter()
        .map(|s| format!("{}@{:.3e}", s.samples, s.lr))
        .collect();
    format!(
        "{n} optimizer step{plural} (samples@lr: {})",
        each.join(" ")
    )
}

/// The binomial standard error of a success rate.
pub fn standard_error(r: &GpEvalResult) -> f64 {
    let p = r.success_rate();
    (p * (1.0 - p) / r.episodes.max(1) as f64).sqrt()
}
