//! GeneralPoints episode success of a model, measured with the environment's own verifier:
//! greedy decoding, sequential revision (the verifier's feedback becomes the next user turn).

use serde::Serialize;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::{GenerateConfig, Sampling, Tokenizer};

use crate::config::GpEvalConfig;
use crate::engine::{Policy, gp_envs, play_episodes};
use crate::error::TrainError;

/// Episode outcomes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GpEvalResult {
    pub episodes: usize,
    /// Episodes solved within the allowed attempts.
    pub successes: usize,
    /// Episodes solved at the first attempt.
    pub first_attempt: usize,
    /// The first episode's first answer, to see what the model writes.
    pub sample: String,
}

impl GpEvalResult {
    /// Fraction of episodes solved.
    pub fn success_rate(&self) -> f64 {
        self.successes as f64 / self.episodes.max(1) as f64
    }
}

/// Plays `config.episodes` GeneralPoints ID episodes (hand `i` dealt from seed
/// `config.seed + i`): GP-VL when the policy sees images, else GP-L; prompts padded as
/// [`GenerateConfig::pad_to_multiple_of`] says.
pub fn gp_success(
    policy: &mut dyn Policy,
    tokenizer: &Tokenizer,
    config: &GpEvalConfig,
    pad_to_multiple_of: Option<usize>,
) -> Result<GpEvalResult, TrainError> {
    let gp = GpConfig {
        verify_iter: config.attempts,
        prompt_layout: config.prompt_layout,
        image_size: config.image_size,
        card_faces: config.card_faces,
        ..GpConfig::variant(Variant::Id, policy.sees_images())
    };
    let generation = GenerateConfig {
        max_new_tokens: config.max_new_tokens,
        sampling: Sampling::GREEDY,
        stop_tokens: tokenizer.stop_tokens(),
        seed: config.seed,
        pad_to_multiple_of,
    };
    let seeds: Vec<u64> = (0..config.episodes as u64)
        .map(|i| config.seed.wrapping_add(i))
        .collect();
    let envs = gp_envs(&gp, config.batch.max(1).min(seeds.len()))?;
    let records = play_episodes(policy, tokenizer, envs, &seeds, &generation, &mut |_| {})?;
    let mut result = GpEvalResult::default();
    for r in &records {
        if result.episodes == 0 {
            result.sample = r.calls[0].response.clone();
        }
        result.episodes += 1;
        result.successes += usize::from(r.success);
        result.first_attempt += usize::from(r.success && r.calls.len() == 1);
    }
    Ok(result)
}
