//! GeneralPoints episode success of a model, measured with the environment's own verifier:
//! greedy decoding, sequential revision (the verifier's feedback becomes the next user turn).

use burn::tensor::backend::Backend;
use serde::Serialize;
use sftvsrl_envs::Env;
use sftvsrl_envs::gp::{GeneralPoints, GpConfig, Variant};
use sftvsrl_model::{GenerateConfig, Llama, Sampling, Tokenizer, generate};

use crate::config::GpEvalConfig;
use crate::error::SftError;

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

/// Plays `config.episodes` GP-L ID episodes (hand `i` dealt from seed `config.seed + i`).
pub fn gp_success<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    config: &GpEvalConfig,
    device: &B::Device,
) -> Result<GpEvalResult, SftError> {
    let gp = GpConfig {
        verify_iter: config.attempts,
        ..GpConfig::variant(Variant::Id, false)
    };
    let mut result = GpEvalResult::default();
    let seeds: Vec<u64> = (0..config.episodes as u64)
        .map(|i| config.seed + i)
        .collect();
    for chunk in seeds.chunks(config.batch) {
        let mut envs = chunk
            .iter()
            .map(|&seed| {
                let mut env =
                    GeneralPoints::new(gp.clone()).map_err(|e| SftError::Invalid(e.to_string()))?;
                env.reset(seed);
                Ok(env)
            })
            .collect::<Result<Vec<_>, SftError>>()?;
        let mut active: Vec<usize> = (0..envs.len()).collect();
        for attempt in 0..config.attempts {
            if active.is_empty() {
                break;
            }
            let prompts = active
                .iter()
                .map(|&i| tokenizer.encode_chat(None, &envs[i].transcript().turns))
                .collect::<Result<Vec<_>, _>>()?;
            let generation = generate(
                model,
                &prompts,
                &GenerateConfig {
                    max_new_tokens: config.max_new_tokens,
                    sampling: Sampling::GREEDY,
                    stop_tokens: tokenizer.stop_tokens(),
                    seed: config.seed,
                },
                device,
            )?;
            let mut still = Vec::new();
            for (&i, seq) in active.iter().zip(&generation.sequences) {
                let text = tokenizer.decode(&seq.tokens, true)?;
                if result.episodes == 0 && i == 0 && attempt == 0 {
                    result.sample = text.clone();
                }
                let verdict = envs[i].step(&text);
                if envs[i].success() {
                    result.successes += 1;
                    if attempt == 0 {
                        result.first_attempt += 1;
                    }
                } else if !verdict.done() {
                    still.push(i);
                }
            }
            active = still;
        }
        result.episodes += envs.len();
    }
    Ok(result)
}
