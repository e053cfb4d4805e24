//! Rollouts: a pool of environments stepped together through the episode engine
//! ([`crate::engine`]); every model call becomes a [`Sample`] with the ids the policy read and
//! sampled, its value estimate and the verifier's reward. Finished episodes are replaced at
//! once, so one batch mixes episodes at different revision stages.

use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use sftvsrl_envs::extract::{Field, Key, re_match};
use sftvsrl_envs::{Env, Rng};
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{Backbone, GenerateConfig, Tokenizer, VlmConfig};

use super::buffer::{Sample, ScoreBatch};
use super::config::{EnvKind, RlConfig};
use super::logprob::action_weights;
use crate::engine::{EnvState, EpisodeError, Policy, Pool, Seeds, gp_envs, nav_envs};
use crate::error::TrainError;
use crate::pixels::PixelCache;

/// Whether a response holds an answer the verifier can read.
pub type Parsable = fn(&str) -> bool;

/// The environments of an RL run (one per `rollout.num_envs`) and the test of whether a
/// response holds an answer their verifier can read.
pub fn rl_envs(config: &RlConfig) -> Result<(Vec<Box<dyn Env>>, Parsable), TrainError> {
    let n = config.rollout.num_envs;
    match config.env {
        EnvKind::GpL => Ok((gp_envs(&config.gp, n)?, gp_parsable)),
        EnvKind::VirlL => {
            let routes = config.routes.as_deref().ok_or_else(|| {
                TrainError::Invalid("`routes` is needed by env = \"virl-l\"".into())
            })?;
            Ok((nav_envs(routes, &config.nav, n)?, nav_parsable))
        }
    }
}

/// A pool of `envs` playing endless episodes, groups of `group_size` environments sharing
/// them, resumed from `states` when given.
pub fn rl_pool(
    envs: Vec<Box<dyn Env>>,
    seed: u64,
    group_size: usize,
    states: Option<Vec<EnvState>>,
    tokenizer: &Tokenizer,
) -> Result<Pool, EpisodeError> {
    rl_pool_from(envs, seed, group_size, 0, states, tokenizer)
}

/// [`rl_pool`] for a worker of a multi-worker run whose environments are the global ones from
/// `first_env` on: they play the episodes those environments play in a one-worker run.
pub fn rl_pool_from(
    envs: Vec<Box<dyn Env>>,
    seed: u64,
    group_size: usize,
    first_env: usize,
    states: Option<Vec<EnvState>>,
    tokenizer: &Tokenizer,
) -> Result<Pool, EpisodeError> {
    let seeds = Seeds::Derived {
        seed,
        group_size,
        first_env,
    };
    Pool::new(envs, seeds, states, tokenizer)
}

/// Whether a GeneralPoints response holds a formula the verifier can read.
pub fn gp_parsable(text: &str) -> bool {
    !matches!(re_match(text, Key::Formula), Field::Str(s) if s == "None")
}

/// Whether a navigation response holds an action the verifier can read.
pub fn nav_parsable(text: &str) -> bool {
    !matches!(re_match(text, Key::Action), Field::Str(s) if s == "None")
}

/// An episode that ended during a collection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finished {
    pub success: bool,
    /// Model calls it took (the step-limit call included).
    pub calls: u32,
}

/// What one collection is run with.
pub struct CollectSettings<'a, B: Backend> {
    /// Steps per environment.
    pub num_steps: usize,
    /// Sampling settings; the seed is replaced per step from `seed`.
    pub generate: GenerateConfig,
    /// Seeds the sampler of every step of this collection.
    pub seed: u64,
    /// The answer key's tokens (thought/action split).
    pub marker: &'a [u32],
    pub thought_coef: f32,
    pub parsable: Parsable,
    /// A frozen reference policy and the KL-penalty coefficient.
    pub kl: Option<(&'a Backbone<B>, f32)>,
}

/// Wall time of a collection.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CollectTiming {
    /// Batched generation and value estimates.
    pub generation: Duration,
    /// Encoding, decoding and environment steps.
    pub environment: Duration,
    /// Reference-model scoring for the KL penalty.
    pub reference: Duration,
}

/// The experience of one collection.
#[derive(Debug)]
pub struct Collected {
    /// `num_steps × num_envs` samples, step-major: sample `t · num_envs + e`.
    pub samples: Vec<Sample>,
    /// The value of each environment's state after the last step (the GAE bootstrap).
    pub next_values: Vec<f64>,
    pub finished: Vec<Finished>,
    pub timing: CollectTiming,
    /// Prompt tokens prefilled and tokens generated.
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
}

/// Steps every environment of `pool` `settings.num_steps` times with `policy`, which must
/// give value estimates. The reference policy of the KL penalty reads images through `pixels`.
pub fn collect<B: Backend>(
    policy: &mut dyn Policy,
    tokenizer: &Tokenizer,
    pool: &mut Pool,
    settings: &CollectSettings<'_, B>,
    pixels: Option<&PixelCache>,
    device: &B::Device,
) -> Result<Collected, TrainError> {
    let before = pool.timing;
    let mut out = Collected {
        samples: Vec::with_capacity(settings.num_steps * pool.len()),
        next_values: Vec::new(),
        finished: Vec::new(),
        timing: CollectTiming::default(),
        prompt_tokens: 0,
        generated_tokens: 0,
    };
    let no_value = || TrainError::Invalid("the rollout policy gives no value estimates".into());
    for step in 0..settings.num_steps {
        let config = GenerateConfig {
            seed: Rng::derive(settings.seed, step as u64).next_u64(),
            ..settings.generate.clone()
        };
        let first = out.samples.len();
        for s in pool.step(policy, tokenizer, &config, false)? {
            if let Some(success) = s.finished {
                out.finished.push(Finished {
                    success,
                    calls: s.call + 1,
                });
            }
            let tokens = s.response.tokens;
            let weights = action_weights(&tokens, settings.marker, settings.thought_coef);
            out.prompt_tokens += s.prompt.len() as u64;
            out.generated_tokens += tokens.len() as u64;
            out.samples.push(Sample {
                env: s.env,
                episode: s.episode,
                depth: s.depth,
                logprob: weights.logprob(&s.response.logprobs),
                weights,
                prompt: s.prompt,
                response: tokens,
                token_logprobs: s.response.logprobs,
                value: s.value.ok_or_else(no_value)?,
                reward: s.verdict.reward,
                kl: 0.0,
                terminated: s.verdict.terminated,
                truncated: s.verdict.truncated,
                parsable: (settings.parsable)(&s.text),
                text: s.text,
                image: s.image,
            });
        }
        if let Some((reference, coef)) = settings.kl {
            let start = Instant::now();
            let vision = reference.vision_config().zip(pixels);
            penalise_kl(
                reference,
                &mut out.samples[first..],
                coef,
                settings.generate.sampling.temperature,
                pad_multiple::<B>(settings.generate.pad_to_multiple_of, device),
                vision,
                device,
            )?;
            out.timing.reference += start.elapsed();
        }
    }
    out.next_values = pool
        .values(policy, tokenizer, &settings.generate)?
        .into_iter()
        .map(f64::from)
        .collect();
    out.timing.generation = pool.timing.policy - before.policy;
    out.timing.environment = pool.timing.environment - before.environment;
    Ok(out)
}

/// Sets each sample's KL penalty: `coef · Σ_t (log π(y_t) − log π_ref(y_t))` over its response
/// tokens, with the sampling policy's recorded log-probs.
fn penalise_kl<B: Backend>(
    reference: &Backbone<B>,
    samples: &mut [Sample],
    coef: f32,
    temperature: f32,
    pad_to_multiple_of: usize,
    vision: Option<(&VlmConfig, &PixelCache)>,
    device: &B::Device,
) -> Result<(), TrainError> {
    let refs: Vec<&Sample> = samples.iter().collect();
    let batch = ScoreBatch::<B>::new(&refs, pad_to_multiple_of, vision, device)?;
    let scores = batch.score(reference, temperature)?;
    let ref_logprobs = batch.response_values(scores.logprobs, &refs);
    for (s, r) in samples.iter_mut().zip(ref_logprobs) {
        s.kl = kl_penalty(&s.token_logprobs, &r, coef);
    }
    Ok(())
}

/// `coef · Σ (policy − reference)` of per-token log-probs: the penalty subtracted from a reward.
pub fn kl_penalty(policy: &[f32], reference: &[f32], coef: f32) -> f64 {
    f64::from(coef)
        * policy
            .iter()
            .zip(reference)
            .map(|(p, r)| f64::from(p - r))
            .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_penalty_is_the_scaled_log_ratio_sum() {
        assert_eq!(kl_penalty(&[-1.0, -2.0], &[-1.0, -2.0], 0.5), 0.0);
        let k = kl_penalty(&[-1.0, -0.5], &[-2.0, -1.0], 0.1);
        assert!((k - 0.15).abs() < 1e-6);
    }
}
