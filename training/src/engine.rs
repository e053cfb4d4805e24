//! The episode engine: every task is trained and evaluated through it. A pool of environments
//! (any [`Env`]: GeneralPoints, Navigation) is stepped together: each step encodes the current
//! transcript of every live environment, continues them all with one batched [`Policy`] call,
//! grades each response with its own environment, and starts the next episode where one ended.
//!
//! Transcripts are kept as token ids. Prompts and feedback turns are encoded as text (a
//! special-token string inside them stays text); the policy's sampled ids are kept exactly as
//! sampled and come back as the assistant turns of later prompts (without their stop token: the
//! chat template closes the turn), so nothing the model wrote is decoded and encoded again.
//! The environment is given the decoded text of each response, as the reference does.
//!
//! Bad task data (a route that cannot be placed, a missing panorama) is an error naming the
//! episode's seed and the file, never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use sftvsrl_envs::gp::{GeneralPoints, GpConfig};
use sftvsrl_envs::nav::{NavConfig, NavData, Navigation};
use sftvsrl_envs::{Env, EnvError, Rng, Role, Transcript, Turn, Verdict};
use sftvsrl_model::generate::GeneratedSequence;
use sftvsrl_model::{GenerateConfig, ModelError, Tokenizer, TurnContent};

/// Why an episode could not be played.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    /// The environment could not start or continue the episode (bad task data).
    #[error("the episode of seed {seed}: {message}")]
    Env { seed: u64, message: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The environments could not be built (bad settings or task data).
    #[error("{0}")]
    Setup(String),
    /// A saved episode does not replay (a resumed run's state does not fit its config).
    #[error("{0}")]
    State(String),
}

/// A model (or a script) that continues conversations.
pub trait Policy {
    /// Whether the policy reads the episodes' images (a vision-language model).
    fn sees_images(&self) -> bool {
        false
    }

    /// The ids the model reads for a chat of `chat` ids whose first turn shows `image`: the
    /// chat itself for a language model; a vision-language model puts the image's placeholder
    /// tokens first.
    fn model_prompt(&self, chat: Vec<u32>, _image: Option<&RgbImage>) -> Vec<u32> {
        chat
    }

    /// Continues every prompt once, in one batched call. `transcripts[i]` is the conversation
    /// behind `prompts[i]` (its image, and its text for scripted policies).
    fn respond(
        &mut self,
        prompts: &[Vec<u32>],
        transcripts: &[&Transcript],
        config: &GenerateConfig,
    ) -> Result<Responses, ModelError>;
}

/// What a policy returns for a batch of prompts, in prompt order.
#[derive(Clone, Debug)]
pub struct Responses {
    pub sequences: Vec<GeneratedSequence>,
    /// The value estimate of each prompt, from policies with a value head.
    pub values: Option<Vec<f32>>,
}

/// Where each new episode's seed comes from.
#[derive(Clone, Debug)]
pub enum Seeds {
    /// One episode per listed seed, handed out in order; an environment with none left idles
    /// (evaluation).
    List(Vec<u64>),
    /// Endless episodes: episode `k` of environment `i` is seeded from `(seed, (first_env + i) /
    /// group_size, k)`, so the environments of one group play the same episodes (RL); a worker
    /// of a multi-worker run holds the global environments from `first_env` on.
    Derived {
        seed: u64,
        group_size: usize,
        first_env: usize,
    },
}

/// Where one environment of a [`Seeds::Derived`] pool stands: enough to rebuild it exactly
/// when a run resumes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    /// The number of the current episode.
    pub episode: u64,
    /// The sampled ids of the responses already given in the current episode.
    pub responses: Vec<Vec<u32>>,
}

/// One environment's place in the pool.
#[derive(Clone, Debug)]
struct Slot {
    /// The current episode's seed; `None` when idle.
    seed: Option<u64>,
    episode: u64,
    /// The sampled ids of the current episode's responses so far.
    responses: Vec<Vec<u32>>,
}

/// One model call, graded.
#[derive(Clone, Debug)]
pub struct Step {
    /// The environment that made it.
    pub env: usize,
    /// The seed and number of its episode (in a [`Seeds::List`] pool, the seed's place in
    /// the list).
    pub seed: u64,
    pub episode: u64,
    /// Earlier calls in this episode (0 for the first).
    pub call: u32,
    /// Earlier attempts in the conversation the model saw: its revision depth (0 for a first
    /// attempt; in navigation, counted at the current position).
    pub depth: u32,
    /// The ids the model read.
    pub prompt: Vec<u32>,
    /// The conversation behind the prompt, when the caller asked to keep turns.
    pub turns: Option<Vec<Turn>>,
    /// The image of the episode's first turn.
    pub image: Option<Arc<RgbImage>>,
    /// The sampled ids (stop token included) and their log-probs.
    pub response: GeneratedSequence,
    /// The decoded response, as the environment read it.
    pub text: String,
    pub verdict: Verdict,
    /// The policy's value estimate of the prompt.
    pub value: Option<f32>,
    /// When this call ended the episode: whether it succeeded.
    pub finished: Option<bool>,
}

/// Wall time of the engine's work.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    /// Policy calls (generation and value estimates).
    pub policy: Duration,
    /// Encoding prompts, decoding responses and environment steps.
    pub environment: Duration,
}

/// Environments stepped together (see the module docs).
pub struct Pool {
    envs: Vec<Box<dyn Env>>,
    slots: Vec<Slot>,
    seeds: Seeds,
    next_listed: usize,
    pub timing: Timing,
}

impl Pool {
    /// A pool over `envs`, each starting its first episode (`Seeds::List`: the first seeds in
    /// order; `Seeds::Derived`: episode 0, or the episode in `states` when a run resumes, its
    /// responses replayed through the environment).
    pub fn new(
        envs: Vec<Box<dyn Env>>,
        seeds: Seeds,
        states: Option<Vec<EnvState>>,
        tokenizer: &Tokenizer,
    ) -> Result<Self, EpisodeError> {
        if let Seeds::Derived { group_size: 0, .. } = seeds {
            return Err(EpisodeError::State(
                "the group size must be at least 1".into(),
            ));
        }
        let n = envs.len();
        let states = states.unwrap_or_else(|| vec![EnvState::default(); n]);
        if states.len() != n {
            return Err(EpisodeError::State(format!(
                "the checkpoint holds {} environments, the config asks for {n}",
                states.len()
            )));
        }
        let mut pool = Pool {
            envs,
            slots: Vec::with_capacity(n),
            seeds,
            next_listed: 0,
            timing: Timing::default(),
        };
        for (i, state) in states.into_iter().enumerate() {
            pool.slots.push(Slot {
                seed: None,
                episode: state.episode,
                responses: Vec::new(),
            });
            pool.start_episode(i)?;
            for ids in state.responses {
                let text = tokenizer.decode(&ids, true)?;
                let verdict = pool.env_step(i, &text)?;
                if verdict.done() {
                    return Err(EpisodeError::State(format!(
                        "environment {i}: the saved episode ends before its last response"
                    )));
                }
                pool.slots[i].responses.push(ids);
            }
        }
        Ok(pool)
    }

    /// The number of environments.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether the pool has no environments.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Whether any environment is playing an episode.
    pub fn is_live(&self) -> bool {
        self.slots.iter().any(|s| s.seed.is_some())
    }

    /// Every environment's state (saved in RL checkpoints).
    pub fn states(&self) -> Vec<EnvState> {
        self.slots
            .iter()
            .map(|s| EnvState {
                episode: s.episode,
                responses: s.responses.clone(),
            })
            .collect()
    }

    /// Resets environment `i` for its next episode, or idles it when the seed list is spent.
    fn start_episode(&mut self, i: usize) -> Result<(), EpisodeError> {
        let slot = &mut self.slots[i];
        slot.responses.clear();
        slot.seed = match &self.seeds {
            Seeds::List(list) => {
                slot.episode = self.next_listed as u64;
                let seed = list.get(self.next_listed).copied();
                self.next_listed += usize::from(seed.is_some());
                seed
            }
            Seeds::Derived {
                seed,
                group_size,
                first_env,
            } => Some(episode_seed(
                *seed,
                (first_env + i) / group_size,
                slot.episode,
            )),
        };
        if let Some(seed) = slot.seed {
            self.envs[i]
                .checked_reset(seed)
                .map_err(|e| env_error(seed, e))?;
        }
        Ok(())
    }

    fn env_step(&mut self, i: usize, text: &str) -> Result<Verdict, EpisodeError> {
        let seed = self.slots[i].seed.unwrap_or_default();
        self.envs[i]
            .checked_step(text)
            .map_err(|e| env_error(seed, e))
    }

    /// The prompt ids of every live environment, with their indices.
    fn prompts(
        &self,
        policy: &dyn Policy,
        tokenizer: &Tokenizer,
    ) -> Result<(Vec<usize>, Vec<Vec<u32>>), EpisodeError> {
        let stops = tokenizer.stop_tokens();
        let mut live = Vec::new();
        let mut prompts = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.seed.is_none() {
                continue;
            }
            let transcript = self.envs[i].transcript();
            let chat = encode_transcript(tokenizer, &stops, transcript, &slot.responses)?;
            prompts.push(policy.model_prompt(chat, transcript.image.as_deref()));
            live.push(i);
        }
        Ok((live, prompts))
    }

    /// One model call for every live environment: generate, decode, grade; an episode that
    /// ends is followed by the next. With `keep_turns`, each step holds the conversation's
    /// text turns too.
    pub fn step(
        &mut self,
        policy: &mut dyn Policy,
        tokenizer: &Tokenizer,
        config: &GenerateConfig,
        keep_turns: bool,
    ) -> Result<Vec<Step>, EpisodeError> {
        let start = Instant::now();
        let (live, prompts) = self.prompts(policy, tokenizer)?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let transcripts: Vec<&Transcript> =
            live.iter().map(|&i| self.envs[i].transcript()).collect();
        let turns: Vec<Option<Vec<Turn>>> = transcripts
            .iter()
            .map(|t| keep_turns.then(|| t.turns.clone()))
            .collect();
        let images: Vec<Option<Arc<RgbImage>>> =
            transcripts.iter().map(|t| t.image.clone()).collect();
        let depths: Vec<u32> = transcripts
            .iter()
            .map(|t| t.turns.iter().filter(|x| x.role == Role::Assistant).count() as u32)
            .collect();
        self.timing.environment += start.elapsed();

        let start = Instant::now();
        let out = policy.respond(&prompts, &transcripts, config)?;
        self.timing.policy += start.elapsed();
        if out.sequences.len() != live.len() {
            return Err(EpisodeError::State(format!(
                "the policy answered {} of {} prompts",
                out.sequences.len(),
                live.len()
            )));
        }

        let start = Instant::now();
        let mut steps = Vec::with_capacity(live.len());
        let values = out
            .values
            .map(|v| v.into_iter().map(Some).collect::<Vec<_>>());
        let values = values.unwrap_or_else(|| vec![None; live.len()]);
        let parts = prompts.into_iter().zip(turns).zip(images).zip(values);
        for (((&i, response), (((prompt, turns), image), value)), depth) in
            live.iter().zip(out.sequences).zip(parts).zip(depths)
        {
            let text = tokenizer.decode(&response.tokens, true)?;
            let seed = self.slots[i].seed.unwrap_or_default();
            let call = self.slots[i].responses.len() as u32;
            let episode = self.slots[i].episode;
            let verdict = self.env_step(i, &text)?;
            let finished = verdict.done().then(|| self.envs[i].success());
            if finished.is_some() {
                self.slots[i].episode += 1; // Seeds::List numbers it anew
                self.start_episode(i)?;
            } else {
                self.slots[i].responses.push(response.tokens.clone());
            }
            steps.push(Step {
                env: i,
                seed,
                episode,
                call,
                depth,
                prompt,
                turns,
                image,
                response,
                text,
                verdict,
                value,
                finished,
            });
        }
        self.timing.environment += start.elapsed();
        Ok(steps)
    }

    /// The policy's value estimate of every environment's current prompt (the GAE bootstrap):
    /// one call that generates a single token.
    pub fn values(
        &mut self,
        policy: &mut dyn Policy,
        tokenizer: &Tokenizer,
        config: &GenerateConfig,
    ) -> Result<Vec<f32>, EpisodeError> {
        let start = Instant::now();
        let (live, prompts) = self.prompts(policy, tokenizer)?;
        if live.len() != self.len() {
            return Err(EpisodeError::State("an environment has no episode".into()));
        }
        let transcripts: Vec<&Transcript> =
            live.iter().map(|&i| self.envs[i].transcript()).collect();
        let one = GenerateConfig {
            max_new_tokens: 1,
            ..config.clone()
        };
        let out = policy.respond(&prompts, &transcripts, &one)?;
        self.timing.policy += start.elapsed();
        out.values
            .ok_or_else(|| EpisodeError::State("the policy has no value head".into()))
    }
}

/// The prompt ids of `transcript`: its text turns encoded as text, its assistant turns replaced
/// by the sampled ids of the episode's latest responses (their stop token, one of `stops`, left
/// to the template).
fn encode_transcript(
    tokenizer: &Tokenizer,
    stops: &[u32],
    transcript: &Transcript,
    responses: &[Vec<u32>],
) -> Result<Vec<u32>, ModelError> {
    let replies = transcript
        .turns
        .iter()
        .filter(|t| t.role == Role::Assistant)
        .count();
    let mut latest = responses[responses.len().saturating_sub(replies)..]
        .iter()
        .map(|ids| match ids.split_last() {
            Some((last, rest)) if stops.contains(last) => rest,
            _ => ids.as_slice(),
        });
    let turns: Vec<(Role, TurnContent)> = transcript
        .turns
        .iter()
        .map(|t| match t.role {
            Role::Assistant => match latest.next() {
                Some(ids) => (t.role, TurnContent::Ids(ids)),
                None => (t.role, TurnContent::Text(&t.text)),
            },
            Role::User => (t.role, TurnContent::Text(&t.text)),
        })
        .collect();
    tokenizer.encode_conversation(None, &turns)
}

/// `n` GeneralPoints environments.
pub fn gp_envs(gp: &GpConfig, n: usize) -> Result<Vec<Box<dyn Env>>, EpisodeError> {
    (0..n)
        .map(|_| {
            GeneralPoints::new(gp.clone())
                .map(|e| Box::new(e) as Box<dyn Env>)
                .map_err(|e| EpisodeError::Setup(e.to_string()))
        })
        .collect()
}

/// `n` navigation environments over the routes in `dir` (loaded once).
pub fn nav_envs(
    dir: &std::path::Path,
    nav: &NavConfig,
    n: usize,
) -> Result<Vec<Box<dyn Env>>, EpisodeError> {
    let data = Arc::new(NavData::load(dir, nav).map_err(|e| EpisodeError::Setup(e.to_string()))?);
    (0..n)
        .map(|_| {
            Navigation::new(data.clone(), nav.clone())
                .map(|e| Box::new(e) as Box<dyn Env>)
                .map_err(|e| EpisodeError::Setup(e.to_string()))
        })
        .collect()
}

/// The seed of episode `episode` of group `group`.
pub fn episode_seed(seed: u64, group: usize, episode: u64) -> u64 {
    Rng::derive(seed, ((group as u64) << 32) ^ episode).next_u64()
}

fn env_error(seed: u64, e: EnvError) -> EpisodeError {
    EpisodeError::Env {
        seed,
        message: e.to_string(),
    }
}

/// One model call of a finished episode, as reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct Call {
    /// The prompt turns the model saw.
    pub prompt: Vec<Turn>,
    /// The decoded response.
    pub response: String,
    pub verdict: Verdict,
}

/// What happened in one episode.
#[derive(Clone, Debug, Serialize)]
pub struct EpisodeRecord {
    /// The seed the environment was reset with.
    pub seed: u64,
    /// The environment's own success flag at the end.
    pub success: bool,
    pub calls: Vec<Call>,
}

/// Plays one episode per seed of `seeds` in `envs` (as many at once as there are
/// environments; one that finishes takes the next seed), and returns the episodes in seed
/// order. `progress` hears of each finished episode.
pub fn play_episodes(
    policy: &mut dyn Policy,
    tokenizer: &Tokenizer,
    mut envs: Vec<Box<dyn Env>>,
    seeds: &[u64],
    generation: &GenerateConfig,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<EpisodeRecord>, EpisodeError> {
    if envs.is_empty() && !seeds.is_empty() {
        return Err(EpisodeError::State(
            "no environment to play the episodes in".into(),
        ));
    }
    envs.truncate(seeds.len());
    let mut pool = Pool::new(envs, Seeds::List(seeds.to_vec()), None, tokenizer)?;
    let mut records: Vec<EpisodeRecord> = seeds
        .iter()
        .map(|&seed| EpisodeRecord {
            seed,
            success: false,
            calls: Vec::new(),
        })
        .collect();
    let mut config = generation.clone();
    let mut round = 0;
    while pool.is_live() {
        config.seed = Rng::derive(generation.seed, round).next_u64();
        round += 1;
        for step in pool.step(policy, tokenizer, &config, true)? {
            // In a listed pool, an episode's number is its seed's place in the list.
            let record = &mut records[step.episode as usize];
            record.calls.push(Call {
                prompt: step.turns.unwrap_or_default(),
                response: step.text,
                verdict: step.verdict,
            });
            if let Some(success) = step.finished {
                record.success = success;
                progress(1);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_share_episodes_and_episodes_differ() {
        assert_eq!(episode_seed(7, 1, 3), episode_seed(7, 1, 3));
        assert_ne!(episode_seed(7, 1, 3), episode_seed(7, 2, 3));
        assert_ne!(episode_seed(7, 1, 3), episode_seed(7, 1, 4));
    }
}
