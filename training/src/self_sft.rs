//! Self-SFT (rejection-sampling fine-tuning, "Retaining by Doing"): a model plays episodes of
//! its training task, and only the episodes the environment's verifier counts as solved are
//! kept, each as a chat example (the prompt turns of its last call and the model's answer),
//! to be trained on by an ordinary SFT run.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sftvsrl_envs::{Env, Rng, Role, Turn};
use sftvsrl_model::{GenerateConfig, Sampling, Tokenizer};

use crate::durable;
use crate::engine::{EpisodeRecord, Policy, play_episodes};
use crate::error::TrainError;

/// `self_sft`: how the model's own data is sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfSftConfig {
    /// Episodes played; the solved ones become the data.
    pub episodes: usize,
    /// Episode `i` is dealt from seed `seed + i` (keep it apart from evaluation seeds).
    pub seed: u64,
    /// Sampling temperature (1: the model's own distribution).
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Most tokens per response.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Episodes played together.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_temperature() -> f32 {
    1.0
}
fn default_max_new_tokens() -> usize {
    96
}
fn default_batch() -> usize {
    32
}

impl SelfSftConfig {
    /// Checks the counts and the temperature (messages name the `self_sft.` field).
    pub fn validate(&self) -> Result<(), String> {
        if self.episodes == 0 || self.batch == 0 || self.max_new_tokens == 0 {
            return Err(
                "`self_sft.episodes`, `self_sft.batch` and `self_sft.max_new_tokens` \
                        must be at least 1"
                    .into(),
            );
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err("`self_sft.temperature` must be a finite number >= 0".into());
        }
        Ok(())
    }
}

/// What [`write_self_sft_data`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfSftSummary {
    pub episodes: usize,
    /// Episodes solved, one example each.
    pub kept: usize,
}

/// Plays `config.episodes` episodes with `policy` in `envs` (as many at once as there are
/// environments) and writes the solved ones to `path` as chat JSONL; an error if none is
/// solved (there would be nothing to train on).
pub fn write_self_sft_data(
    policy: &mut dyn Policy,
    tokenizer: &Tokenizer,
    envs: Vec<Box<dyn Env>>,
    config: &SelfSftConfig,
    stop_tokens: &[u32],
    path: &Path,
) -> Result<SelfSftSummary, TrainError> {
    let seeds: Vec<u64> = (0..config.episodes as u64)
        .map(|i| config.seed.wrapping_add(i))
        .collect();
    let generation = GenerateConfig {
        max_new_tokens: config.max_new_tokens,
        sampling: Sampling {
            temperature: config.temperature,
            top_p: 1.0,
        },
        stop_tokens: stop_tokens.to_vec(),
        seed: Rng::derive(config.seed, 0).next_u64(),
        pad_to_multiple_of: None,
    };
    let records = play_episodes(policy, tokenizer, envs, &seeds, &generation, &mut |_| {})?;
    let (text, kept) = solved_examples(&records);
    if kept == 0 {
        return Err(TrainError::Invalid(format!(
            "self-SFT: none of the {} episodes played was solved, so there is nothing to \
             train on (play more episodes, or start from a model that solves some)",
            records.len()
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    durable::write_file(path, text)?;
    Ok(SelfSftSummary {
        episodes: records.len(),
        kept,
    })
}

/// The chat JSONL of the solved episodes (each one's last call: its prompt turns and the
/// model's answer), and how many there are.
pub fn solved_examples(records: &[EpisodeRecord]) -> (String, usize) {
    let mut text = String::new();
    let mut kept = 0;
    for record in records.iter().filter(|r| r.success) {
        let Some(call) = record.calls.last() else {
            continue;
        };
        let mut messages = call.prompt.clone();
        messages.push(Turn {
            role: Role::Assistant,
            text: call.response.clone(),
        });
        let _ = writeln!(text, "{}", json!({ "messages": messages }));
        kept += 1;
    }
    (text, kept)
}

#[cfg(test)]
mod tests {
    use sftvsrl_envs::Transcript;
    use sftvsrl_envs::gp::expert::answer_from_prompt;
    use sftvsrl_envs::gp::prompt::PromptLayout;
    use sftvsrl_envs::gp::{GeneralPoints, GpConfig, Variant};

    use super::*;
    use crate::data::read_chat_jsonl;
    use crate::engine::gp_envs;
    use crate::policy::ScriptedPolicy;

    /// A word-level tokenizer over the compact prompts and both kinds of answer.
    fn tokenizer(gp: &GpConfig) -> Tokenizer {
        let mut corpus = Vec::new();
        for seed in 0..64 {
            let prompt = first_prompt(gp, seed);
            corpus.push(answer_from_prompt(&prompt, gp).unwrap());
            corpus.push(prompt);
        }
        corpus.push("{\"formula\": \"1\"}".into());
        sftvsrl_model::word_level_tokenizer(corpus.iter().map(String::as_str), 1).unwrap()
    }

    /// The first prompt of the episode dealt from `seed`.
    fn first_prompt(gp: &GpConfig, seed: u64) -> String {
        let mut env = GeneralPoints::new(gp.clone()).unwrap();
        env.reset(seed).turns[0].text.clone()
    }

    /// A script that solves the hands whose prompt has an even length and answers the others
    /// wrongly: only the solved episodes are written, each ending with the right answer.
    #[test]
    fn only_verified_episodes_are_kept() {
        let gp = GpConfig {
            prompt_layout: PromptLayout::Compact,
            verify_iter: 1,
            ..GpConfig::variant(Variant::Id, false)
        };
        let tokenizer = tokenizer(&gp);
        let rule = gp.clone();
        let solves = |t: &Transcript| t.turns[0].text.len().is_multiple_of(2);
        let mut policy = ScriptedPolicy {
            tokenizer: tokenizer.clone(),
            answer: move |t: &Transcript| match solves(t) {
                true => answer_from_prompt(&t.turns[0].text, &rule).unwrap(),
                false => "{\"formula\": \"1\"}".to_string(),
            },
            sees_images: false,
        };
        let config = SelfSftConfig {
            episodes: 40,
            seed: 5,
            temperature: 1.0,
            max_new_tokens: 64,
            batch: 8,
        };
        let dir = std::env::temp_dir().join(format!("sftvsrl-self-sft-{}", std::process::id()));
        let path = dir.join("data.jsonl");
        let stop = tokenizer.stop_tokens();
        let envs = gp_envs(&gp, config.batch).unwrap();
        let summary =
            write_self_sft_data(&mut policy, &tokenizer, envs, &config, &stop, &path).unwrap();
        // The same hands, played again by the script, say which were solvable.
        let expected = (0..40u64)
            .filter(|i| first_prompt(&gp, 5 + i).len().is_multiple_of(2))
            .count();
        assert!(expected > 0 && expected < 40, "{expected}");
        assert_eq!(
            summary,
            SelfSftSummary {
                episodes: 40,
                kept: expected
            }
        );
        let examples = read_chat_jsonl(&path).unwrap();
        assert_eq!(examples.len(), expected);
        for e in &examples {
            let prompt = &e.prompt.last().unwrap().text;
            assert!(prompt.len().is_multiple_of(2), "an unsolved hand was kept");
            assert_eq!(e.response, answer_from_prompt(prompt, &gp).unwrap());
        }
        // A policy that solves nothing leaves nothing to train on: an error, no file.
        let mut wrong = ScriptedPolicy {
            tokenizer: tokenizer.clone(),
            answer: |_: &Transcript| "{\"formula\": \"1\"}".to_string(),
            sees_images: false,
        };
        let empty = dir.join("empty.jsonl");
        let envs = gp_envs(&gp, config.batch).unwrap();
        let e =
            write_self_sft_data(&mut wrong, &tokenizer, envs, &config, &stop, &empty).unwrap_err();
        assert!(e.to_string().contains("none of the 40 episodes"), "{e}");
        assert!(!empty.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
