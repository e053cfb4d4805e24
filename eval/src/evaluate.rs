//! The evaluation protocol: every variant × verification setting is a fresh set of episodes
//! played by the model with the environment's own verifier, reported as episode success with
//! the error bar sqrt(p(1−p)/N) (paper-spec §5).

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sftvsrl_envs::gp::GeneralPoints;
use sftvsrl_model::{GenerateConfig, Llama, Tokenizer};
use sftvsrl_training::{EpisodeRecord, play_episodes};

use crate::config::{EvalConfig, EvalVariant};
use crate::error::EvalError;

/// Episode success of one variant at one verification setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantResult {
    pub variant: EvalVariant,
    /// Graded attempts allowed per episode.
    pub verify_iter: u32,
    pub episodes: usize,
    /// Episodes with a +5 step.
    pub successes: usize,
    /// Episodes solved at the first attempt.
    pub first_attempt: usize,
    /// Mean reward per model call.
    pub mean_reward: f64,
    /// Fraction of episodes solved.
    pub success_rate: f64,
    /// sqrt(p(1−p)/N).
    pub std_error: f64,
}

/// Everything one evaluation measured.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub results: Vec<VariantResult>,
    /// The first `transcripts` episodes of each variant (at the first verification setting).
    pub transcripts: Vec<(EvalVariant, EpisodeRecord)>,
}

impl EvalReport {
    /// The result of `variant` at `verify_iter`, if it was evaluated.
    pub fn get(&self, variant: EvalVariant, verify_iter: u32) -> Option<&VariantResult> {
        self.results
            .iter()
            .find(|r| r.variant == variant && r.verify_iter == verify_iter)
    }
}

/// Success rate and its standard error for `successes` out of `n`.
pub fn rate_with_error(successes: usize, n: usize) -> (f64, f64) {
    let p = successes as f64 / n.max(1) as f64;
    (p, (p * (1.0 - p) / n.max(1) as f64).sqrt())
}

/// Evaluates `model` as `config` says; `progress` hears after every batch of episodes.
pub fn evaluate<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    config: &EvalConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<EvalReport, EvalError> {
    let generation = GenerateConfig {
        max_new_tokens: config.max_new_tokens,
        sampling: config.sampling(),
        stop_tokens: tokenizer.stop_tokens(),
        seed: config.seed,
        pad_to_multiple_of: config.pad_to_multiple_of,
    };
    let mut report = EvalReport {
        results: Vec::new(),
        transcripts: Vec::new(),
    };
    let seeds: Vec<u64> = (0..config.episodes as u64)
        .map(|i| config.seed + i)
        .collect();
    for &variant in &config.variants {
        for (sweep, &verify_iter) in config.verify_iters.iter().enumerate() {
            let gp = variant.gp_config(verify_iter, config.prompt_layout);
            let mut records = Vec::with_capacity(seeds.len());
            for chunk in seeds.chunks(config.batch) {
                let mut envs = chunk
                    .iter()
                    .map(|_| GeneralPoints::new(gp.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| EvalError::Invalid(e.to_string()))?;
                records.extend(play_episodes(
                    model,
                    tokenizer,
                    &mut envs,
                    chunk,
                    &generation,
                    device,
                )?);
                progress(chunk.len());
            }
            report
                .results
                .push(summarize(variant, verify_iter, &records));
            if sweep == 0 {
                let kept = records.into_iter().take(config.transcripts);
                report.transcripts.extend(kept.map(|r| (variant, r)));
            }
        }
    }
    Ok(report)
}

/// The metrics of a set of episodes.
fn summarize(variant: EvalVariant, verify_iter: u32, records: &[EpisodeRecord]) -> VariantResult {
    let successes = records.iter().filter(|r| r.success).count();
    let first_attempt = records
        .iter()
        .filter(|r| r.success && r.calls.len() == 1)
        .count();
    let calls: Vec<f64> = records
        .iter()
        .flat_map(|r| r.calls.iter().map(|c| c.verdict.reward))
        .collect();
    let (success_rate, std_error) = rate_with_error(successes, records.len());
    VariantResult {
        variant,
        verify_iter,
        episodes: records.len(),
        successes,
        first_attempt,
        mean_reward: calls.iter().sum::<f64>() / calls.len().max(1) as f64,
        success_rate,
        std_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bars_follow_the_binomial_formula() {
        let (p, e) = rate_with_error(30, 120);
        assert!((p - 0.25).abs() < 1e-12);
        assert!((e - (0.25f64 * 0.75 / 120.0).sqrt()).abs() < 1e-12);
        assert_eq!(rate_with_error(0, 0), (0.0, 0.0));
    }
}
