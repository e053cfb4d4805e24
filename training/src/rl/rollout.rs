//! Rollouts: a vector of environments stepped together. Each step batches the current
//! transcript of every environment through one [`generate`] call, sends each decoded response
//! to its environment (which appends the feedback turn on failure) and resets finished
//! episodes at once, so one batch mixes episodes at different revision stages.

use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sftvsrl_envs::extract::{Field, Key, re_match};
use sftvsrl_envs::gp::{GeneralPoints, GpConfig};
use sftvsrl_envs::{Env, Rng};
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{GenerateConfig, Llama, Tokenizer, generate};

use super::buffer::{Sample, ScoreBatch};
use super::logprob::action_weights;
use super::value_head::ActorCritic;
use crate::error::SftError;

/// Where one environment stands: enough to rebuild it exactly when a run resumes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    /// The number of the current episode (its hand is dealt from this and the group).
    pub episode: u64,
    /// The responses already given in the current episode.
    pub responses: Vec<String>,
}

/// Environments stepped together. Environments `g·group_size .. (g+1)·group_size` form group
/// `g` and play the same sequence of hands.
pub struct EnvPool {
    envs: Vec<Box<dyn Env>>,
    states: Vec<EnvState>,
    seed: u64,
    group_size: usize,
    parsable: fn(&str) -> bool,
}

impl EnvPool {
    /// A pool over `envs`, starting from `states` (one per environment; fresh when `None`).
    /// `parsable` tells whether a response holds an answer the verifier can read.
    pub fn new(
        mut envs: Vec<Box<dyn Env>>,
        seed: u64,
        group_size: usize,
        states: Option<Vec<EnvState>>,
        parsable: fn(&str) -> bool,
    ) -> Result<Self, SftError> {
        let states = states.unwrap_or_else(|| vec![EnvState::default(); envs.len()]);
        if states.len() != envs.len() {
            return Err(SftError::Invalid(format!(
                "the checkpoint holds {} environments, the config asks for {}",
                states.len(),
                envs.len()
            )));
        }
        for (i, (env, state)) in envs.iter_mut().zip(&states).enumerate() {
            env.reset(episode_seed(seed, i / group_size, state.episode));
            for response in &state.responses {
                if env.step(response).done() {
                    return Err(SftError::Invalid(format!(
                        "environment {i}: the saved episode ends before its last response"
                    )));
                }
            }
        }
        Ok(EnvPool {
            envs,
            states,
            seed,
            group_size,
            parsable,
        })
    }

    /// The state of every environment (saved in checkpoints).
    pub fn states(&self) -> &[EnvState] {
        &self.states
    }

    /// The number of environments.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Every environment's next prompt, as token ids.
    pub fn prompts(&self, tokenizer: &Tokenizer) -> Result<Vec<Vec<u32>>, SftError> {
        Ok(self
            .envs
            .iter()
            .map(|e| tokenizer.encode_chat(None, &e.transcript().turns))
            .collect::<Result<_, _>>()?)
    }

    /// Sends `response` to environment `i`; a finished episode is replaced by the next one.
    fn step(&mut self, i: usize, response: &str) -> (sftvsrl_envs::Verdict, Option<Finished>) {
        let verdict = self.envs[i].step(response);
        let state = &mut self.states[i];
        if !verdict.done() {
            state.responses.push(response.to_string());
            return (verdict, None);
        }
        let finished = Finished {
            success: self.envs[i].success(),
            calls: state.responses.len() as u32 + 1,
        };
        state.episode += 1;
        state.responses.clear();
        let seed = episode_seed(self.seed, i / self.group_size, state.episode);
        self.envs[i].reset(seed);
        (verdict, Some(finished))
    }
}

/// A pool of `num_envs` GeneralPoints environments (see [`EnvPool::new`]).
pub fn gp_pool(
    gp: &GpConfig,
    num_envs: usize,
    seed: u64,
    group_size: usize,
    states: Option<Vec<EnvState>>,
) -> Result<EnvPool, SftError> {
    let envs = (0..num_envs)
        .map(|_| {
            GeneralPoints::new(gp.clone())
                .map(|e| Box::new(e) as Box<dyn Env>)
                .map_err(|e| SftError::Invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    EnvPool::new(envs, seed, group_size, states, gp_parsable)
}

/// Whether a GeneralPoints response holds a formula the verifier can read.
pub fn gp_parsable(text: &str) -> bool {
    !matches!(re_match(text, Key::Formula), Field::Str(s) if s == "None")
}

/// The hand seed of episode `episode` of group `group`.
fn episode_seed(seed: u64, group: usize, episode: u64) -> u64 {
    Rng::derive(seed, ((group as u64) << 32) ^ episode).next_u64()
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
    /// A frozen reference policy and the KL-penalty coefficient.
    pub kl: Option<(&'a Llama<B>, f32)>,
}

/// Wall time of a collection.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CollectTiming {
    /// Batched generation and value estimates.
    pub generation: Duration,
    /// Decoding and environment steps.
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

/// Steps every environment of `pool` `settings.num_steps` times with `model`.
pub fn collect<B: Backend>(
    model: &ActorCritic<B>,
    tokenizer: &Tokenizer,
    pool: &mut EnvPool,
    settings: &CollectSettings<'_, B>,
    device: &B::Device,
) -> Result<Collected, SftError> {
    let mut out = Collected {
        samples: Vec::with_capacity(settings.num_steps * pool.len()),
        next_values: Vec::new(),
        finished: Vec::new(),
        timing: CollectTiming::default(),
        prompt_tokens: 0,
        generated_tokens: 0,
    };
    for step in 0..settings.num_steps {
        let start = Instant::now();
        let prompts = pool.prompts(tokenizer)?;
        let config = GenerateConfig {
            seed: Rng::derive(settings.seed, step as u64).next_u64(),
            ..settings.generate.clone()
        };
        let generation = generate(&model.policy, &prompts, &config, device)?;
        let values: Vec<f32> = model
            .value_head
            .forward(generation.prompt_hidden)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 data");
        out.timing.generation += start.elapsed();

        let start = Instant::now();
        let first = out.samples.len();
        for (i, ((prompt, seq), value)) in prompts
            .into_iter()
            .zip(generation.sequences)
            .zip(values)
            .enumerate()
        {
            let text = tokenizer.decode(&seq.tokens, true)?;
            let depth = pool.states[i].responses.len() as u32;
            let episode = pool.states[i].episode;
            let image = pool.envs[i].transcript().image.clone();
            let (verdict, finished) = pool.step(i, &text);
            out.finished.extend(finished);
            let weights = action_weights(&seq.tokens, settings.marker, settings.thought_coef);
            out.prompt_tokens += prompt.len() as u64;
            out.generated_tokens += seq.tokens.len() as u64;
            out.samples.push(Sample {
                env: i,
                episode,
                depth,
                logprob: weights.logprob(&seq.logprobs),
                weights,
                prompt,
                response: seq.tokens,
                token_logprobs: seq.logprobs,
                value,
                reward: verdict.reward,
                kl: 0.0,
                terminated: verdict.terminated,
                truncated: verdict.truncated,
                parsable: (pool.parsable)(&text),
                text,
                image,
            });
        }
        out.timing.environment += start.elapsed();

        if let Some((reference, coef)) = settings.kl {
            let start = Instant::now();
            penalise_kl(
                reference,
                &mut out.samples[first..],
                coef,
                settings.generate.sampling.temperature,
                pad_multiple::<B>(settings.generate.pad_to_multiple_of, device),
                device,
            );
            out.timing.reference += start.elapsed();
        }
    }
    let start = Instant::now();
    let prompts = pool.prompts(tokenizer)?;
    let bootstrap = GenerateConfig {
        max_new_tokens: 1,
        ..settings.generate.clone()
    };
    let generation = generate(&model.policy, &prompts, &bootstrap, device)?;
    out.next_values = model
        .value_head
        .forward(generation.prompt_hidden)
        .into_data()
        .convert::<f64>()
        .to_vec()
        .expect("f64 data");
    out.timing.generation += start.elapsed();
    Ok(out)
}

/// Sets each sample's KL penalty: `coef · Σ_t (log π(y_t) − log π_ref(y_t))` over its response
/// tokens, with the sampling policy's recorded log-probs.
fn penalise_kl<B: Backend>(
    reference: &Llama<B>,
    samples: &mut [Sample],
    coef: f32,
    temperature: f32,
    pad_to_multiple_of: usize,
    device: &B::Device,
) {
    let refs: Vec<&Sample> = samples.iter().collect();
    let batch = ScoreBatch::<B>::new(&refs, pad_to_multiple_of, device);
    let scores = batch.score(reference, temperature);
    let ref_logprobs = batch.response_values(scores.logprobs, &refs);
    for (s, r) in samples.iter_mut().zip(ref_logprobs) {
        s.kl = kl_penalty(&s.token_logprobs, &r, coef);
    }
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

    #[test]
    fn groups_share_hands_and_episodes_differ() {
        assert_eq!(episode_seed(7, 1, 3), episode_seed(7, 1, 3));
        assert_ne!(episode_seed(7, 1, 3), episode_seed(7, 2, 3));
        assert_ne!(episode_seed(7, 1, 3), episode_seed(7, 1, 4));
    }
}
