//! Advantages over a collected buffer and the PPO update: epochs of shuffled minibatches, the
//! gradients of `samples_per_step` samples averaged, the global norm clipped, one Adam step
//! (RL4VLM `PPO.update` under Accelerate and DeepSpeed's gradient accumulation over 8
//! processes: 1024 samples per step).

use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use sftvsrl_envs::Rng;

use super::buffer::{Sample, ScoreBatch};
use super::config::{AdvantageKind, PpoConfig, RatioKind, Whitening};
use super::distributed::Shard;
use super::gae::{Trajectory, discounted_returns, gae_returns, group_advantages, whiten};
use super::loss::{RatioStats, mean_entropy, policy_loss, value_loss};
use super::value_head::ActorCritic;
use crate::batch::batch_rows;
use crate::error::TrainError;
use crate::grad_clip::clip_global_norm;
use crate::pixels::PixelCache;
use crate::step::scalar;

/// Per-sample advantages and value targets of a step-major buffer
/// (`samples[t · num_envs + e]`), bootstrapped with `next_values`, whitened as
/// `cfg.whiten_advantages` says.
pub fn advantages(
    samples: &[Sample],
    next_values: &[f64],
    cfg: &PpoConfig,
) -> (Vec<f64>, Vec<f64>) {
    let num_envs = next_values.len();
    let steps = samples.len() / num_envs;
    let mut adv = vec![0.0; samples.len()];
    let mut returns = vec![0.0; samples.len()];
    let mut group_keys = vec![(0, 0, 0); samples.len()];
    for (e, next_value) in next_values.iter().enumerate() {
        let idx: Vec<usize> = (0..steps).map(|t| t * num_envs + e).collect();
        let rewards: Vec<f64> = idx.iter().map(|&i| samples[i].shaped_reward()).collect();
        let values: Vec<f64> = idx.iter().map(|&i| f64::from(samples[i].value)).collect();
        let terminated: Vec<bool> = idx.iter().map(|&i| samples[i].terminated).collect();
        let truncated: Vec<bool> = idx.iter().map(|&i| samples[i].truncated).collect();
        let trajectory = Trajectory {
            rewards: &rewards,
            values: &values,
            terminated: &terminated,
            truncated: &truncated,
            next_value: *next_value,
        };
        let r = match cfg.advantage {
            AdvantageKind::Gae => gae_returns(&trajectory, cfg.gamma, cfg.lam, cfg.truncation),
            AdvantageKind::Group => discounted_returns(&trajectory, cfg.gamma),
        };
        for (k, &i) in idx.iter().enumerate() {
            returns[i] = r[k];
            adv[i] = r[k] - values[k];
            let s = &samples[i];
            group_keys[i] = (e / cfg.group_size, s.episode, s.depth);
        }
    }
    if cfg.advantage == AdvantageKind::Group {
        adv = group_advantages(&returns, &group_keys);
    }
    whiten_buffer(&mut adv, num_envs, cfg);
    (adv, returns)
}

/// [`advantages`] of one worker's buffer in a multi-worker run: returns and group advantages
/// are per environment (group sizes divide each worker's environments), and the whitening is
/// that of the global buffer of all workers' samples, so every worker gets its samples' share
/// of what one worker with all environments would compute.
pub fn advantages_across(
    samples: &[Sample],
    next_values: &[f64],
    cfg: &PpoConfig,
    shard: Shard<'_>,
) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let raw = PpoConfig {
        whiten_advantages: Whitening::Off,
        ..cfg.clone()
    };
    let (adv, returns) = advantages(samples, next_values, &raw);
    if cfg.whiten_advantages == Whitening::Off {
        return Ok((adv, returns));
    }
    let positions: Vec<usize> = (0..adv.len()).map(|i| shard.global(i)).collect();
    let global_len = adv.len() * shard.workers.world_size();
    let mut global = shard.workers.gather(&adv, &positions, global_len)?;
    whiten_buffer(&mut global, shard.global_envs(), cfg);
    Ok((positions.iter().map(|&p| global[p]).collect(), returns))
}

/// Whitens a step-major buffer of `num_envs` environments as `cfg.whiten_advantages` says.
fn whiten_buffer(adv: &mut Vec<f64>, num_envs: usize, cfg: &PpoConfig) {
    match cfg.whiten_advantages {
        Whitening::PerGroup => whiten_groups(adv, num_envs, cfg.whiten_group_size),
        Whitening::Buffer => *adv = whiten(adv),
        Whitening::Off => {}
    }
}

/// Whitens a step-major buffer of `num_envs` environments in groups of `group_size` samples,
/// taken environment by environment, each in time order (a group of 256 is one of the
/// reference's processes when each environment runs 256 steps). A last, shorter group is
/// whitened on its own.
fn whiten_groups(adv: &mut [f64], num_envs: usize, group_size: usize) {
    let steps = adv.len() / num_envs;
    let env_major: Vec<usize> = (0..num_envs)
        .flat_map(|e| (0..steps).map(move |t| t * num_envs + e))
        .collect();
    for group in env_major.chunks(group_size) {
        let values: Vec<f64> = group.iter().map(|&i| adv[i]).collect();
        for (&i, w) in group.iter().zip(whiten(&values)) {
            adv[i] = w;
        }
    }
}

/// What one PPO update did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateStats {
    /// Means over the minibatches that were trained.
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    /// Fraction of ratios outside the clip range.
    pub clip_fraction: f64,
    /// Mean k3 estimate of KL(old ‖ new) per ratio.
    pub approx_kl: f64,
    /// Mean global gradient norm before clipping.
    pub grad_norm: f64,
    pub optimizer_steps: usize,
    /// Each optimizer step of the update, in order.
    pub steps: Vec<OptimizerStep>,
    /// Minibatches where some ratio exceeded the threshold (clipped surrogate only).
    pub ratio_rule_hits: usize,
    /// Minibatches skipped because a log-prob was NaN.
    pub skipped: usize,
    /// Tokens through forward and backward passes.
    pub trained_tokens: u64,
}

/// One optimizer step of an update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerStep {
    /// The learning rate applied.
    pub lr: f64,
    /// Samples whose gradients were averaged (skipped minibatches not counted).
    pub samples: usize,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// A collected buffer with its advantages and value targets, index for index.
#[derive(Clone, Copy, Debug)]
pub struct Experience<'a> {
    pub samples: &'a [Sample],
    pub advantages: &'a [f64],
    pub returns: &'a [f64],
}

/// Settings of one update beside the PPO config.
#[derive(Clone, Copy, Debug)]
pub struct UpdateSettings {
    pub lr: f64,
    /// The sampling temperature at which log-probs are scored.
    pub temperature: f32,
    /// Seeds the minibatch order.
    pub seed: u64,
    /// Optimizer steps taken before this update (for error messages).
    pub steps_before: usize,
    /// Minibatch widths are rounded up to a multiple of this (see [`ScoreBatch::new`]); above
    /// 1, a short last minibatch of an epoch is padded to `mini_batch_size` rows as well
    /// ([`crate::batch::batch_rows`]).
    pub pad_to_multiple_of: usize,
}

/// Runs `cfg.num_ppo_epochs` passes of clipped PPO over the experience and returns the new
/// model. A vision-language policy reads its samples' images through `pixels`.
#[allow(clippy::too_many_arguments)]
pub fn ppo_update<A, O>(
    model: ActorCritic<A>,
    optim: &mut O,
    experience: Experience<'_>,
    cfg: &PpoConfig,
    settings: UpdateSettings,
    pixels: Option<&PixelCache>,
    device: &A::Device,
) -> Result<(ActorCritic<A>, UpdateStats), TrainError>
where
    A: AutodiffBackend,
    O: Optimizer<ActorCritic<A>, A>,
{
    let context = UpdateContext {
        cfg,
        settings,
        pixels,
        device,
    };
    update(model, optim, experience, &context, None)
}

/// [`ppo_update`] of one worker in a multi-worker run, over its shard of the global buffer
/// (advantages from [`advantages_across`]): the minibatches are cut from one permutation of
/// the global buffer, each worker trains the samples of each minibatch it holds, and every
/// optimizer step's gradients are summed over the workers before the norm clip, so every
/// worker takes the same steps as one worker with all environments (`rl::distributed` states
/// when this is exact). `stats` count this worker's minibatches, except `steps`, which are
/// global.
#[allow(clippy::too_many_arguments)]
pub fn ppo_update_across<A, O>(
    model: ActorCritic<A>,
    optim: &mut O,
    experience: Experience<'_>,
    cfg: &PpoConfig,
    settings: UpdateSettings,
    pixels: Option<&PixelCache>,
    device: &A::Device,
    shard: Shard<'_>,
) -> Result<(ActorCritic<A>, UpdateStats), TrainError>
where
    A: AutodiffBackend,
    O: Optimizer<ActorCritic<A>, A>,
{
    let context = UpdateContext {
        cfg,
        settings,
        pixels,
        device,
    };
    update(model, optim, experience, &context, Some(shard))
}

/// What [`update`] is run with beside the model, the optimizer and the experience.
struct UpdateContext<'a, A: AutodiffBackend> {
    cfg: &'a PpoConfig,
    settings: UpdateSettings,
    pixels: Option<&'a PixelCache>,
    device: &'a A::Device,
}

/// The update of [`ppo_update`] and [`ppo_update_across`].
fn update<A, O>(
    mut model: ActorCritic<A>,
    optim: &mut O,
    experience: Experience<'_>,
    context: &UpdateContext<'_, A>,
    shard: Option<Shard<'_>>,
) -> Result<(ActorCritic<A>, UpdateStats), TrainError>
where
    A: AutodiffBackend,
    O: Optimizer<ActorCritic<A>, A>,
{
    let UpdateContext {
        cfg,
        settings,
        pixels,
        device,
    } = *context;
    let mut stats = UpdateStats::default();
    let (mut ratios, mut clipped, mut kl_sum, mut trained) = (0usize, 0usize, 0.0, 0usize);
    let samples = experience.samples;
    let workers = shard.map_or(1, |s| s.workers.world_size());
    let minibatches = minibatch_order(samples.len() * workers, cfg, settings.seed);
    let per_step = cfg.samples_per_step / cfg.mini_batch_size;
    let mut global_trained = 0;
    for step in minibatches.chunks(per_step) {
        let step_samples: usize = step.iter().map(Vec::len).sum();
        let mut accumulator = GradientsAccumulator::<ActorCritic<A>>::new();
        let mut accumulated = 0;
        for global_chunk in step {
            let chunk: Vec<usize> = match shard {
                Some(shard) => global_chunk
                    .iter()
                    .filter_map(|&g| shard.local(g))
                    .collect(),
                None => global_chunk.clone(),
            };
            if chunk.is_empty() {
                continue;
            }
            let chunk = &chunk;
            let picked: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            let context = MinibatchContext {
                experience,
                cfg,
                settings: &settings,
                device,
            };
            if let Some(loss) =
                minibatch_loss(&model, &picked, chunk, &context, pixels, &mut stats)?
            {
                let (r, c, k) = loss.ratios;
                ratios += r;
                clipped += c;
                kl_sum += k;
                trained += 1;
                accumulated += chunk.len();
                // The minibatch's mean loss, weighted by its share of the step's samples.
                let share = chunk.len() as f32 / step_samples as f32;
                let grads = GradientsParams::from_grads((loss.loss * share).backward(), &model);
                accumulator.accumulate(&model, grads);
            }
        }
        let mut grads = accumulator.grads();
        if let Some(shard) = shard {
            (grads, accumulated) = shard.workers.sum_gradients(&model, grads, accumulated)?;
        }
        global_trained += accumulated;
        if accumulated == 0 {
            continue;
        }
        let grad_norm = clip_global_norm(&model, &mut grads, cfg.max_grad_norm);
        model = optim.step(settings.lr, model, grads);
        stats.grad_norm += grad_norm;
        stats.steps.push(OptimizerStep {
            lr: settings.lr,
            samples: accumulated,
            grad_norm,
        });
    }
    stats.optimizer_steps = stats.steps.len();
    if global_trained == 0 {
        return Err(TrainError::NonFinite {
            step: settings.steps_before + 1,
            loss: f32::NAN,
        });
    }
    let n = trained.max(1) as f64;
    stats.policy_loss /= n;
    stats.value_loss /= n;
    stats.entropy /= n;
    stats.clip_fraction = clipped as f64 / ratios.max(1) as f64;
    stats.approx_kl = kl_sum / ratios.max(1) as f64;
    stats.grad_norm /= stats.optimizer_steps.max(1) as f64;
    Ok((model, stats))
}

/// The sample indices of every minibatch of an update, in training order: each epoch a fresh
/// permutation of the buffer (drawn from `seed` and the epoch), cut into `mini_batch_size`
/// chunks.
fn minibatch_order(len: usize, cfg: &PpoConfig, seed: u64) -> Vec<Vec<usize>> {
    (0..cfg.num_ppo_epochs)
        .flat_map(|epoch| {
            let mut order: Vec<usize> = (0..len).collect();
            Rng::derive(seed, epoch as u64).shuffle(&mut order);
            order
                .chunks(cfg.mini_batch_size)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The mean loss of one minibatch and its ratio counts.
struct MinibatchLoss<A: AutodiffBackend> {
    loss: Tensor<A, 1>,
    /// Ratios, clipped ratios, Σ k3.
    ratios: (usize, usize, f64),
}

/// What every minibatch of an update shares.
struct MinibatchContext<'a, A: AutodiffBackend> {
    experience: Experience<'a>,
    cfg: &'a PpoConfig,
    settings: &'a UpdateSettings,
    device: &'a A::Device,
}

/// The minibatch's loss, or `None` when a log-prob is NaN (the reference skips those).
fn minibatch_loss<A: AutodiffBackend>(
    model: &ActorCritic<A>,
    picked: &[&Sample],
    indices: &[usize],
    context: &MinibatchContext<'_, A>,
    pixels: Option<&PixelCache>,
    stats: &mut UpdateStats,
) -> Result<Option<MinibatchLoss<A>>, TrainError> {
    let MinibatchContext {
        experience,
        cfg,
        settings,
        device,
    } = context;
    let device: &A::Device = device;
    let b = picked.len();
    let vision = model.policy.vision_config().zip(pixels);
    let multiple = settings.pad_to_multiple_of;
    let rows = batch_rows(b, cfg.mini_batch_size, multiple);
    let batch = ScoreBatch::<A>::with_rows(picked, rows, multiple, vision, device)?;
    stats.trained_tokens += batch.input_tokens as u64;
    let scores = batch.score(&model.policy, settings.temperature)?;
    let vector = |v: Vec<f32>, shape: [usize; 2]| {
        Tensor::<A, 2>::from_data(TensorData::new(v, shape), device)
    };
    let (new_logp, old_logp, mask) = match cfg.ratio {
        RatioKind::Action => (
            batch
                .action_logprobs(scores.logprobs.clone())
                .reshape([b, 1]),
            vector(picked.iter().map(|s| s.logprob).collect(), [b, 1]),
            vector(vec![1.0; b], [b, 1]),
        ),
        RatioKind::Token => (
            scores.logprobs.clone(),
            batch.recorded_logprobs.clone(),
            batch.response_mask.clone(),
        ),
    };
    let host = |t: Tensor<A, 2>| -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32 data")
    };
    let (new_h, old_h, mask_h) = (
        host(new_logp.clone().detach()),
        host(old_logp.clone()),
        host(mask.clone()),
    );
    if new_h
        .iter()
        .zip(&mask_h)
        .any(|(v, m)| *m != 0.0 && v.is_nan())
    {
        stats.skipped += 1;
        return Ok(None);
    }
    let ratio = RatioStats::new(&new_h, &old_h, &mask_h, cfg.cliprange);
    let clipped_only = ratio.max > cfg.ratio_threshold;
    stats.ratio_rule_hits += usize::from(clipped_only);
    let adv: Vec<f32> = indices
        .iter()
        .map(|&i| experience.advantages[i] as f32)
        .collect();
    let policy = policy_loss(
        new_logp,
        old_logp,
        mask,
        vector(adv, [b, 1]),
        cfg.cliprange,
        clipped_only,
    );
    let policy_value = scalar(policy.clone());
    let mut loss = policy;
    stats.policy_loss += f64::from(policy_value);
    let mut value_value = 0.0;
    if cfg.advantage == AdvantageKind::Gae {
        let one = |v: Vec<f32>| Tensor::<A, 1>::from_data(TensorData::new(v, [b]), device);
        let values = batch.values(model, scores.hidden);
        let old: Vec<f32> = picked.iter().map(|s| s.value).collect();
        let targets: Vec<f32> = indices
            .iter()
            .map(|&i| experience.returns[i] as f32)
            .collect();
        let v = value_loss(values, one(old), one(targets), cfg.cliprange_value);
        value_value = scalar(v.clone());
        stats.value_loss += f64::from(value_value);
        loss = loss + v * cfg.vf_coef;
    }
    if cfg.entropy_coef > 0.0 {
        let entropy = mean_entropy(scores.logits, settings.temperature);
        stats.entropy += f64::from(scalar(entropy.clone()));
        loss = loss - entropy * cfg.entropy_coef;
    }
    let total = policy_value + cfg.vf_coef * value_value;
    if !total.is_finite() {
        return Err(TrainError::NonFinite {
            step: settings.steps_before + stats.steps.len() + 1,
            loss: total,
        });
    }
    Ok(Some(MinibatchLoss {
        loss,
        ratios: (ratio.count, ratio.clipped, ratio.kl_sum),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::gae::mean;
    use crate::rl::logprob::ActionWeights;

    /// A sample of environment `env` with the fields the advantages read.
    fn sample(env: usize, episode: u64, reward: f64, value: f32, terminated: bool) -> Sample {
        Sample {
            env,
            episode,
            depth: 0,
            prompt: vec![],
            response: vec![],
            text: String::new(),
            token_logprobs: vec![],
            weights: ActionWeights {
                weights: vec![],
                constant: None,
            },
            logprob: 0.0,
            value,
            reward,
            kl: 0.0,
            terminated,
            truncated: false,
            parsable: true,
            image: None,
        }
    }

    /// A step-major buffer of `envs` environments over `steps` steps whose rewards and values
    /// differ per environment; episodes end at the last step.
    fn buffer(envs: usize, steps: usize) -> Vec<Sample> {
        (0..steps)
            .flat_map(|t| {
                (0..envs).map(move |e| {
                    let reward = (e * 10 + t) as f64;
                    sample(e, 0, reward, 0.5 * e as f32, t + 1 == steps)
                })
            })
            .collect()
    }

    fn unwhitened(advantage: AdvantageKind) -> PpoConfig {
        PpoConfig {
            advantage,
            group_size: 2,
            whiten_advantages: Whitening::Off,
            ..PpoConfig::default()
        }
    }

    #[test]
    fn each_environment_gets_the_returns_of_its_own_column() {
        let (envs, steps) = (3, 4);
        let samples = buffer(envs, steps);
        let next_values = [1.0, 2.0, 3.0];
        let cfg = unwhitened(AdvantageKind::Gae);
        let (adv, returns) = advantages(&samples, &next_values, &cfg);
        for (e, &next_value) in next_values.iter().enumerate() {
            let rewards: Vec<f64> = (0..steps).map(|t| (e * 10 + t) as f64).collect();
            let values = vec![0.5 * e as f64; steps];
            let terminated: Vec<bool> = (0..steps).map(|t| t + 1 == steps).collect();
            let trajectory = Trajectory {
                rewards: &rewards,
                values: &values,
                terminated: &terminated,
                truncated: &[false; 4],
                next_value,
            };
            let want = gae_returns(&trajectory, cfg.gamma, cfg.lam, cfg.truncation);
            for t in 0..steps {
                let i = t * envs + e;
                assert_eq!(returns[i], want[t], "return of env {e} at step {t}");
                assert_eq!(
                    adv[i],
                    want[t] - values[t],
                    "advantage of env {e} at step {t}"
                );
            }
        }
    }

    #[test]
    fn group_advantages_compare_environments_of_one_group_and_episode() {
        // Four environments in groups of two, one step each: returns are the rewards.
        let samples: Vec<Sample> = [1.0, 3.0, 10.0, 30.0]
            .iter()
            .enumerate()
            .map(|(e, &r)| sample(e, 0, r, 0.0, true))
            .collect();
        let (adv, _) = advantages(&samples, &[0.0; 4], &unwhitened(AdvantageKind::Group));
        // Group {0, 1} has mean 2, group {2, 3} mean 20; std-normalised or not, the signs and
        // the symmetry within each group hold, and the groups do not mix.
        assert!(adv[0] < 0.0 && adv[1] > 0.0, "{adv:?}");
        assert!(adv[2] < 0.0 && adv[3] > 0.0, "{adv:?}");
        assert!((adv[0] + adv[1]).abs() < 1e-12 && (adv[2] + adv[3]).abs() < 1e-12);
        // Another episode of the same environments is another group.
        let mut later = samples.clone();
        later[1].episode = 1;
        let (adv, _) = advantages(&later, &[0.0; 4], &unwhitened(AdvantageKind::Group));
        assert_eq!((adv[0], adv[1]), (0.0, 0.0), "alone in its group: {adv:?}");
    }

    #[test]
    fn groups_are_whitened_environment_by_environment() {
        // Two environments, four steps, groups of four samples: each group is one environment.
        let mut adv: Vec<f64> = (0..8)
            .map(|i| {
                if i % 2 == 0 {
                    i as f64
                } else {
                    100.0 * i as f64
                }
            })
            .collect();
        whiten_groups(&mut adv, 2, 4);
        for e in 0..2 {
            let column: Vec<f64> = (0..4).map(|t| adv[t * 2 + e]).collect();
            assert!(mean(&column).abs() < 1e-9, "env {e} is centred: {column:?}");
            assert!(
                column.windows(2).all(|w| w[0] < w[1]),
                "order kept: {column:?}"
            );
        }
    }

    #[test]
    fn every_epoch_visits_each_sample_once() {
        let cfg = PpoConfig {
            num_ppo_epochs: 3,
            mini_batch_size: 4,
            ..PpoConfig::default()
        };
        let order = minibatch_order(10, &cfg, 7);
        assert_eq!(order.len(), 3 * 3, "three minibatches of ≤ 4 per epoch");
        for epoch in order.chunks(3) {
            let mut seen: Vec<usize> = epoch.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(order[0], order[3], "each epoch draws its own permutation");
    }
}
