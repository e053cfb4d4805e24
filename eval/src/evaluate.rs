//! The evaluation protocol: every variant × verification setting is a fresh set of episodes
//! played by the model with the environment's own verifier, reported as episode success with
//! the error bar sqrt(p(1−p)/N) (paper-spec §5); navigation adds per-step accuracy.

use serde::{Deserialize, Serialize};
use sftvsrl_envs::Env;
use sftvsrl_envs::gp::verify::reward::INCORRECT_VISION;
use sftvsrl_envs::nav::NavMetrics;
use sftvsrl_model::{GenerateConfig, Tokenizer};
use sftvsrl_training::engine::{gp_envs, nav_envs};
use sftvsrl_training::{EpisodeRecord, Policy, play_episodes};

use crate::config::{EvalConfig, EvalVariant, Task, gp_config};
use crate::error::EvalError;

/// Episode success of one variant at one verification setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantResult {
    pub variant: EvalVariant,
    /// Graded attempts allowed per episode (per position, in navigation).
    pub verify_iter: u32,
    pub episodes: usize,
    /// Episodes that succeeded (GeneralPoints: a +5 step; navigation: the route's success).
    pub successes: usize,
    /// Episodes solved at the first attempt (GeneralPoints).
    pub first_attempt: usize,
    /// Mean reward per model call.
    pub mean_reward: f64,
    /// Fraction of episodes solved.
    pub success_rate: f64,
    /// sqrt(p(1−p)/N).
    pub std_error: f64,
    /// Navigation's per-step accuracy: model calls rewarded +1 over all calls, revisions and
    /// the call past the attempt limit included (paper-spec §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_accuracy: Option<CallRate>,
    /// GP-VL card recognition: episodes whose first call is not rewarded -1.5 ("you recognized
    /// wrong cards"), as the reference's one call per episode without verification (§5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recognition: Option<CallRate>,
}

/// A fraction of model calls, with the binomial error bar sqrt(p(1−p)/N) over calls (an
/// approximation: calls of one episode are not independent).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRate {
    pub count: usize,
    pub calls: usize,
    pub rate: f64,
    pub std_error: f64,
}

impl CallRate {
    fn new(count: usize, calls: usize) -> Self {
        let (rate, std_error) = rate_with_error(count, calls);
        CallRate {
            count,
            calls,
            rate,
            std_error,
        }
    }
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

/// Evaluates `policy` as `config` says; `progress` hears of every finished episode.
pub fn evaluate(
    policy: &mut dyn Policy,
    tokenizer: &Tokenizer,
    config: &EvalConfig,
    progress: &mut dyn FnMut(usize),
) -> Result<EvalReport, EvalError> {
    if let (false, Some(v)) = (
        policy.sees_images(),
        config.variants.iter().find(|v| v.is_vision()),
    ) {
        return Err(EvalError::Invalid(format!(
            "`{}` shows images: it needs a vision-language checkpoint",
            v.name()
        )));
    }
    let mut player = Player {
        policy,
        tokenizer,
        generation: GenerateConfig {
            max_new_tokens: config.max_new_tokens,
            sampling: config.sampling(),
            stop_tokens: tokenizer.stop_tokens(),
            seed: config.seed,
            pad_to_multiple_of: config.pad_to_multiple_of,
        },
        batch: config.batch,
    };
    let mut report = EvalReport {
        results: Vec::new(),
        transcripts: Vec::new(),
    };
    let mut keep = |variant: EvalVariant, records: Vec<EpisodeRecord>| {
        let kept = records.into_iter().take(config.transcripts);
        report.transcripts.extend(kept.map(|r| (variant, r)));
    };
    let mut results = Vec::new();
    for &variant in &config.variants {
        match variant.task() {
            Task::GeneralPoints(rule, vision) => {
                let seeds = seeds(config.seed, config.episodes);
                for (sweep, &verify_iter) in config.verify_iters.iter().enumerate() {
                    let layout = config.prompt_layout;
                    let images = (config.image_size, config.card_faces);
                    let gp = gp_config(rule, vision, verify_iter, layout, images);
                    let envs = gp_envs(&gp, player.batch.min(seeds.len()))?;
                    let records = player.play(envs, &seeds, progress)?;
                    let mut result = summarize(variant, verify_iter, &records);
                    if vision {
                        result.recognition = Some(recognition(&records));
                    }
                    results.push(result);
                    if sweep == 0 {
                        keep(variant, records);
                    }
                }
            }
            Task::Navigation {
                absolute_action,
                vision,
                other_city,
            } => {
                let nav = &config.nav;
                let env = nav.env_config(absolute_action, vision, other_city);
                let dir = nav.routes(other_city).map_err(EvalError::Invalid)?;
                let envs = nav_envs(dir, &env, player.batch.min(nav.episodes))?;
                let records = player.play(envs, &seeds(nav.seed, nav.episodes), progress)?;
                let mut result = summarize(variant, env.verify_iter, &records);
                result.step_accuracy = Some(step_accuracy(&records));
                results.push(result);
                keep(variant, records);
            }
        }
    }
    report.results = results;
    Ok(report)
}

/// Episode `i` of a protocol starting at `seed` is reset with `seed + i`, wrapping modulo
/// 2^64 (a seed near `u64::MAX` continues from 0, as the training's GeneralPoints episodes do).
fn seeds(seed: u64, episodes: usize) -> Vec<u64> {
    (0..episodes as u64).map(|i| seed.wrapping_add(i)).collect()
}

/// What every variant's episodes are played with.
struct Player<'a> {
    policy: &'a mut dyn Policy,
    tokenizer: &'a Tokenizer,
    generation: GenerateConfig,
    batch: usize,
}

impl Player<'_> {
    /// Plays one episode per seed in `envs` (`batch` of them), as many at once.
    fn play(
        &mut self,
        envs: Vec<Box<dyn Env>>,
        seeds: &[u64],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<EpisodeRecord>, EvalError> {
        Ok(play_episodes(
            self.policy,
            self.tokenizer,
            envs,
            seeds,
            &self.generation,
            progress,
        )?)
    }
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
        step_accuracy: None,
        recognition: None,
    }
}

/// GP-VL recognition accuracy as the reference measures it: one call per episode with
/// verification off (`enable_verification=False`), so `1 - #(-1.5) / #episodes` over each
/// episode's first call (the same prompt that run sees). Revisions and the step-limit call
/// are left out.
fn recognition(records: &[EpisodeRecord]) -> CallRate {
    let first: Vec<f64> = records
        .iter()
        .filter_map(|r| r.calls.first().map(|c| c.verdict.reward))
        .collect();
    let misread = first.iter().filter(|&&r| r == INCORRECT_VISION).count();
    CallRate::new(first.len() - misread, first.len())
}

/// Navigation's per-step accuracy over every call of `records`, counted by the environment's
/// own metric.
fn step_accuracy(records: &[EpisodeRecord]) -> CallRate {
    let mut metrics = NavMetrics::default();
    for call in records.iter().flat_map(|r| &r.calls) {
        metrics.record_call(&call.verdict);
    }
    CallRate::new(metrics.correct as usize, metrics.calls as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    use sftvsrl_envs::Verdict;
    use sftvsrl_training::Call;

    /// A first seed near `u64::MAX` wraps to 0 (it overflowed, a panic in debug builds).
    #[test]
    fn episode_seeds_wrap_at_the_top_of_the_range() {
        assert_eq!(seeds(u64::MAX - 1, 3), [u64::MAX - 1, u64::MAX, 0]);
        assert_eq!(seeds(7, 2), [7, 8]);
    }

    fn record(success: bool, rewards: &[f64]) -> EpisodeRecord {
        let calls = rewards.iter().map(|&reward| Call {
            prompt: Vec::new(),
            response: String::new(),
            verdict: Verdict {
                reward,
                message: String::new(),
                terminated: false,
                truncated: false,
            },
        });
        EpisodeRecord {
            seed: 0,
            success,
            calls: calls.collect(),
        }
    }

    #[test]
    fn per_step_accuracy_counts_every_call_rewarded_one() {
        // A route solved after one revision, and one that exhausted its attempts.
        let records = [
            record(true, &[1.0, -1.0, 1.0, 1.0]),
            record(false, &[1.0, -1.5, -1.0, -1.0]),
        ];
        let step = step_accuracy(&records);
        assert_eq!((step.count, step.calls), (4, 8));
        assert!((step.rate - 0.5).abs() < 1e-12);
        assert!((step.std_error - (0.25f64 / 8.0).sqrt()).abs() < 1e-12);
        let r = summarize(EvalVariant::VirlLId, 2, &records);
        assert_eq!((r.successes, r.episodes), (1, 2));
        assert!((r.mean_reward - (2.0 - 2.5) / 8.0).abs() < 1e-12);
    }

    #[test]
    fn recognition_counts_first_calls_not_graded_as_misread_cards() {
        // Half the hands misread: revisions and the step-limit call do not dilute it.
        let records = [
            record(false, &[-1.5, -1.5, -1.0]),
            record(true, &[-3.0, 5.0]),
            record(false, &[-1.5, -1.0]),
            record(true, &[5.0]),
        ];
        let r = recognition(&records);
        assert_eq!((r.count, r.calls), (2, 4));
        assert!((r.rate - 0.5).abs() < 1e-12);
    }

    #[test]
    fn error_bars_follow_the_binomial_formula() {
        let (p, e) = rate_with_error(30, 120);
        assert!((p - 0.25).abs() < 1e-12);
        assert!((e - (0.25f64 * 0.75 / 120.0).sqrt()).abs() < 1e-12);
        assert_eq!(rate_with_error(0, 0), (0.0, 0.0));
    }
}
