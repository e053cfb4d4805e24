//! Whole episodes played by a model: the transcripts of all live episodes go through one batched
//! `generate` call, each response is graded by its own environment, and an episode goes on
//! (sequential revision, or the next navigation step) until its environment says it is done.

use burn::tensor::backend::Backend;
use image::RgbImage;
use serde::Serialize;
use sftvsrl_envs::{Env, EnvError, Transcript, Turn, Verdict};
use sftvsrl_model::{
    GenerateConfig, Generation, ImageProcessor, Llama, Tokenizer, Vlm, VlmConfig, generate,
    generate_vlm,
};

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

/// The model that plays: a language model, or a vision-language model with the processor that
/// turns the episodes' images into its pixels.
pub enum Policy<'a, B: Backend> {
    Text(&'a Llama<B>),
    Vision {
        model: &'a Vlm<B>,
        processor: &'a ImageProcessor,
    },
}

// Only references inside: copyable whatever the backend (a derive would ask `B: Copy`).
impl<B: Backend> Clone for Policy<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Policy<'_, B> {}

impl<B: Backend> Policy<'_, B> {
    /// Continues each transcript once, with one batched generation.
    fn generate(
        self,
        tokenizer: &Tokenizer,
        transcripts: &[&Transcript],
        generation: &GenerateConfig,
        device: &B::Device,
    ) -> Result<Generation<B>, SftError> {
        let chats = transcripts
            .iter()
            .map(|t| tokenizer.encode_chat(None, &t.turns))
            .collect::<Result<Vec<_>, _>>()?;
        let (model, processor) = match self {
            Policy::Text(model) => return Ok(generate(model, &chats, generation, device)?),
            Policy::Vision { model, processor } => (model, processor),
        };
        let images: Vec<&RgbImage> = transcripts
            .iter()
            .filter_map(|t| t.image.as_deref())
            .collect();
        let prompts = chats
            .into_iter()
            .zip(transcripts)
            .map(|(ids, t)| match t.image {
                Some(_) => vision_prompt(model.config(), ids),
                None => ids,
            })
            .collect::<Vec<_>>();
        let pixels = match images.is_empty() {
            true => None,
            false => Some(processor.pixels(&images, device)?),
        };
        Ok(generate_vlm(model, &prompts, pixels, generation, device)?)
    }
}

/// The prompt of a vision-language model for a chat that comes with an image: the image's
/// placeholder tokens first, then the chat's tokens. Training and evaluation share this layout.
pub fn vision_prompt(config: &VlmConfig, chat: Vec<u32>) -> Vec<u32> {
    let mut ids = vec![config.image_token_id; config.image_tokens()];
    ids.extend(chat);
    ids
}

/// Plays one episode in each of `envs`, reset with the matching seed, `envs.len()` at a time.
pub fn play_episodes<B: Backend, E: Env>(
    policy: Policy<'_, B>,
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
        let turns: Vec<Vec<Turn>> = transcripts.iter().map(|t| t.turns.clone()).collect();
        let out = policy.generate(tokenizer, &transcripts, generation, device)?;
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
