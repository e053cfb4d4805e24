//! Whole episodes played by a model: the transcripts of all live episodes go through one batched
//! `generate` call, each response is graded by its own environment, and an episode goes on
//! (sequential revision, or the next navigation step) until its environment says it is done.

use burn::tensor::backend::Backend;
use serde::Serialize;
use sftvsrl_envs::{Env, EnvError, Transcript, Turn, Verdict};
use sftvsrl_model::{GenerateConfig, Llama, Tokenizer, generate};

use crate::error::SftError;

/// One model call of an episode.
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

/// Plays one episode in each of `envs`, reset with the matching seed, `envs.len()` at a time.
pub fn play_episodes<B: Backend, E: Env>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    envs: &mut [E],
    seeds: &[u64],
    generation: &GenerateConfig,
    device: &B::Device,
) -> Result<Vec<EpisodeRecord>, SftError> {
    let mut records = Vec::with_capacity(envs.len());
    for (env, &seed) in envs.iter_mut().zip(seeds) {
        env.checked_reset(seed).map_err(|e| env_error(seed, e))?;
        records.push(EpisodeRecord {
            seed,
            success: false,
            calls: Vec::new(),
        });
    }
    let mut live: Vec<usize> = (0..records.len()).collect();
    while !live.is_empty() {
        let transcripts: Vec<&Transcript> = live.iter().map(|&i| envs[i].transcript()).collect();
        let prompts = transcripts
            .iter()
            .map(|t| tokenizer.encode_chat(None, &t.turns))
            .collect::<Result<Vec<_>, _>>()?;
        let turns: Vec<Vec<Turn>> = transcripts.iter().map(|t| t.turns.clone()).collect();
        let out = generate(model, &prompts, generation, device)?;
        let mut still = Vec::new();
        for ((&i, seq), prompt) in live.iter().zip(&out.sequences).zip(turns) {
            let response = tokenizer.decode(&seq.tokens, true)?;
            let verdict = envs[i]
                .checked_step(&response)
                .map_err(|e| env_error(records[i].seed, e))?;
            let done = verdict.done();
            records[i].calls.push(Call {
                prompt,
                response,
                verdict,
            });
            if done {
                records[i].success = envs[i].success();
            } else {
                still.push(i);
            }
        }
        live = still;
    }
    Ok(records)
}

/// An environment failure in the episode of `seed`, as an error that names the episode.
fn env_error(seed: u64, e: EnvError) -> SftError {
    SftError::Invalid(format!("the episode of seed {seed}: {e}"))
}
