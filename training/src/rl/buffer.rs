//! What a rollout stores per model call, and the right-padded batches that score stored
//! responses with a training forward pass (the policy's log-probs and the value head).

use std::sync::Arc;

use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData, backend::Backend};
use image::RgbImage;
use sftvsrl_model::device::pad_len;
use sftvsrl_model::{Backbone, ImageSpans, ModelError, VlmConfig, token_logprobs};

use super::logprob::ActionWeights;
use super::value_head::ActorCritic;
use crate::pixels::PixelCache;

/// One environment step: a prompt, the sampled response and what came of it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The environment that produced it.
    pub env: usize,
    /// The episode number of that environment (episodes of one group share hands).
    pub episode: u64,
    /// Earlier attempts in the conversation the model saw (its revision depth: 0 for a first
    /// attempt; in navigation, at the current position).
    pub depth: u32,
    pub prompt: Vec<u32>,
    pub response: Vec<u32>,
    /// The decoded response, as the environment read it.
    pub text: String,
    /// Per-token log-probs recorded while sampling (tempered, before top-p).
    pub token_logprobs: Vec<f32>,
    pub weights: ActionWeights,
    /// The action log-prob under the sampling policy.
    pub logprob: f32,
    /// The value estimate at collection time.
    pub value: f32,
    /// The verifier's reward.
    pub reward: f64,
    /// The KL-penalty term subtracted from the reward (0 when the penalty is off).
    pub kl: f64,
    pub terminated: bool,
    pub truncated: bool,
    /// The response holds an answer the verifier could read.
    pub parsable: bool,
    /// The image of a vision task.
    pub image: Option<Arc<RgbImage>>,
}

impl Sample {
    /// The reward PPO optimises: the verifier's minus the KL penalty.
    pub fn shaped_reward(&self) -> f64 {
        self.reward - self.kl
    }
}

/// Prompts and responses, right-padded. Column `j` of the `[batch, seq − 1]` tensors predicts
/// input token `j + 1`, so response token `t` of row `i` sits at column `prompt_len_i + t − 1`.
/// The width and the number of scored slots may be rounded up, and the rows of the model's
/// input too (see [`ScoreBatch::new`] and [`ScoreBatch::with_rows`]); padding changes no score,
/// and [`ScoreBatch::score`] hands back the real rows and tokens only. Only the response
/// positions are scored: the output head and its softmax, the costliest part of a small
/// model's pass, never see the prompt positions (as the SFT loss does not).
#[derive(Clone, Debug)]
pub struct ScoreBatch<B: Backend> {
    /// `[rows, seq]`: prompt + response without its last token; rows past the samples only
    /// round the batch up (they repeat the first sample and are never scored).
    pub input_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2, burn::tensor::Bool>,
    /// `[slots]`: the flat positions (`row · seq + column`) of all response tokens, row by
    /// row, then fillers repeating the first (see `slot_weights`).
    pub response_positions: Tensor<B, 1, Int>,
    /// `[slots]`: the response token predicted at each of those positions.
    pub response_targets: Tensor<B, 1, Int>,
    /// `[slots]`: 1 at the response tokens, 0 at the fillers.
    slot_weights: Tensor<B, 1>,
    /// Response tokens (the real slots).
    tokens: usize,
    /// `[batch, seq]`: the thought/action weights of response tokens, 0 elsewhere.
    pub action_weights: Tensor<B, 2>,
    /// `[batch, seq]`: 1 at every response token.
    pub response_mask: Tensor<B, 2>,
    /// `[batch, seq]`: the log-probs recorded while sampling, at the response tokens.
    pub recorded_logprobs: Tensor<B, 2>,
    /// `[batch]`: the constant log-prob of too-short responses, 0 otherwise.
    pub constants: Tensor<B, 1>,
    /// The pixels of the rows' images and where their placeholders sit.
    pub images: Option<(Tensor<B, 4>, ImageSpans)>,
    /// The position of each row's last prompt token.
    last_prompt: Vec<i64>,
    /// Where each row's response starts (its prompt length).
    pub prompt_lens: Vec<usize>,
    /// Real input tokens (what the forward pass costs).
    pub input_tokens: usize,
    width: usize,
}

impl<B: Backend> ScoreBatch<B> {
    /// A batch of `samples` (each with a non-empty prompt and response), its width and its
    /// number of scored slots rounded up to a multiple of `pad_to_multiple_of`. Samples with
    /// images need `vision`: the model's config (where the placeholders are) and the cache of
    /// their pixels.
    pub fn new(
        samples: &[&Sample],
        pad_to_multiple_of: usize,
        vision: Option<(&VlmConfig, &PixelCache)>,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Self::with_rows(samples, samples.len(), pad_to_multiple_of, vision, device)
    }

    /// [`ScoreBatch::new`] with the model's input rounded up to `rows` rows (fewer are not
    /// padded), so that a short last minibatch has the shape of the others. Padding rows
    /// repeat the first sample (and its image) and hold no scored slot; every per-row tensor
    /// of the batch and of [`ScoreBatch::score`] has the samples' rows only.
    pub fn with_rows(
        samples: &[&Sample],
        rows: usize,
        pad_to_multiple_of: usize,
        vision: Option<(&VlmConfig, &PixelCache)>,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let batch = samples.len();
        let mut padded = samples.to_vec();
        if let Some(&first) = samples.first() {
            padded.resize(rows.max(batch), first);
        }
        let longest = samples
            .iter()
            .map(|s| s.prompt.len() + s.response.len() - 1)
            .max()
            .unwrap_or(1);
        let width = pad_len(longest, pad_to_multiple_of);
        let input_rows = padded.len();
        let mut ids = vec![0i64; input_rows * width];
        let mut valid = vec![false; input_rows * width];
        let mut positions = Vec::new();
        let mut response_targets = Vec::new();
        let mut weights = vec![0f32; batch * width];
        let mut response = vec![0f32; batch * width];
        let mut recorded = vec![0f32; batch * width];
        let mut constants = vec![0f32; batch];
        let mut input_tokens = 0;
        for (i, s) in padded.iter().enumerate() {
            let full: Vec<u32> = s.prompt.iter().chain(&s.response).copied().collect();
            let n = full.len() - 1;
            let row = i * width..i * width + n;
            for (id, token) in ids[row.clone()].iter_mut().zip(&full) {
                *id = i64::from(*token);
            }
            valid[row].fill(true);
            if i >= batch {
                continue;
            }
            input_tokens += n;
            let start = i * width + s.prompt.len() - 1;
            for (t, token) in s.response.iter().enumerate() {
                positions.push((start + t) as i64);
                response_targets.push(i64::from(*token));
            }
            for (t, (w, lp)) in s.weights.weights.iter().zip(&s.token_logprobs).enumerate() {
                weights[start + t] = *w;
                response[start + t] = 1.0;
                recorded[start + t] = *lp;
            }
            constants[i] = s.weights.constant.unwrap_or(0.0);
        }
        let tokens = positions.len();
        let slots = pad_len(tokens, pad_to_multiple_of);
        let mut slot_weights = vec![1f32; tokens];
        if let (Some(&position), Some(&target)) = (positions.first(), response_targets.first()) {
            positions.resize(slots, position);
            response_targets.resize(slots, target);
            slot_weights.resize(slots, 0.0);
        }
        let slots = [positions.len()];
        let shape = [batch, width];
        let input_shape = [input_rows, width];
        let images = batch_images(&padded, vision, device)?;
        Ok(ScoreBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, input_shape), device),
            attention_mask: Tensor::from_data(TensorData::new(valid, input_shape), device),
            response_positions: Tensor::from_data(TensorData::new(positions, slots), device),
            response_targets: Tensor::from_data(TensorData::new(response_targets, slots), device),
            slot_weights: Tensor::from_data(TensorData::new(slot_weights, slots), device),
            tokens,
            action_weights: Tensor::from_data(TensorData::new(weights, shape), device),
            response_mask: Tensor::from_data(TensorData::new(response, shape), device),
            recorded_logprobs: Tensor::from_data(TensorData::new(recorded, shape), device),
            constants: Tensor::from_data(TensorData::new(constants, [batch]), device),
            last_prompt: samples.iter().map(|s| s.prompt.len() as i64 - 1).collect(),
            prompt_lens: samples.iter().map(|s| s.prompt.len()).collect(),
            images,
            input_tokens,
            width,
        })
    }

    /// The rows' per-token values of a `[batch, seq]` tensor at their response tokens.
    pub fn response_values(&self, t: Tensor<B, 2>, samples: &[&Sample]) -> Vec<Vec<f32>> {
        let v: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32 data");
        samples
            .iter()
            .zip(&self.prompt_lens)
            .enumerate()
            .map(|(i, (s, p))| {
                let start = i * self.width + p - 1;
                v[start..start + s.response.len()].to_vec()
            })
            .collect()
    }

    /// The final hidden states of `policy` on this batch's samples `[batch, seq, dim]`, the
    /// logits at their response tokens `[tokens, vocab]`, and their log-probs laid out
    /// `[batch, seq]` (0 outside the responses): padding rows and filler slots go through the
    /// model but are cut off here. Errors if the batch's images do not fit the policy
    /// ([`Backbone::forward_hidden`]).
    pub fn score(&self, policy: &Backbone<B>, temperature: f32) -> Result<Scores<B>, ModelError> {
        let images = self.images.as_ref().map(|(p, spans)| (p.clone(), spans));
        let hidden =
            policy.forward_hidden(self.input_ids.clone(), self.attention_mask.clone(), images)?;
        let [rows, seq, dim] = hidden.dims();
        let batch = self.constants.dims()[0];
        let slots = self.response_positions.dims()[0];
        let at_responses = hidden
            .clone()
            .reshape([rows * seq, dim])
            .select(0, self.response_positions.clone());
        let logits = policy.logits(at_responses.reshape([1, slots, dim]));
        let vocab = logits.dims()[2];
        let logits = logits.reshape([slots, vocab]);
        // Fillers add 0 at the first response position.
        let picked = token_logprobs(
            logits.clone().unsqueeze::<3>(),
            self.response_targets.clone().reshape([1, slots]),
            temperature,
        )
        .reshape([slots])
            * self.slot_weights.clone();
        let logprobs = Tensor::<B, 1>::zeros([batch * seq], &hidden.device())
            .select_assign(
                0,
                self.response_positions.clone(),
                picked,
                IndexingUpdateOp::Add,
            )
            .reshape([batch, seq]);
        let (hidden, logits) = if rows == batch && slots == self.tokens {
            (hidden, logits)
        } else {
            (hidden.narrow(0, 0, batch), logits.narrow(0, 0, self.tokens))
        };
        Ok(Scores {
            hidden,
            logits,
            logprobs,
        })
    }

    /// The action log-probs `[batch]`: the weighted sums, or the constants.
    pub fn action_logprobs(&self, logprobs: Tensor<B, 2>) -> Tensor<B, 1> {
        let batch = self.constants.dims()[0];
        (logprobs * self.action_weights.clone())
            .sum_dim(1)
            .reshape([batch])
            + self.constants.clone()
    }

    /// The value head's estimates `[batch]` at each row's last prompt token.
    pub fn values(&self, model: &ActorCritic<B>, hidden: Tensor<B, 3>) -> Tensor<B, 1> {
        let [batch, _, dim] = hidden.dims();
        let device = hidden.device();
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(self.last_prompt.clone(), [batch]),
            &device,
        )
        .reshape([batch, 1, 1])
        .expand([batch, 1, dim]);
        model
            .value_head
            .forward(hidden.gather(1, index).reshape([batch, dim]))
    }
}

/// The pixels and placeholder spans of the samples' images (each prompt shows at most one,
/// at its first turn); `None` when no sample has one.
fn batch_images<B: Backend>(
    samples: &[&Sample],
    vision: Option<(&VlmConfig, &PixelCache)>,
    device: &B::Device,
) -> Result<Option<(Tensor<B, 4>, ImageSpans)>, ModelError> {
    let images: Vec<&Arc<RgbImage>> = samples.iter().filter_map(|s| s.image.as_ref()).collect();
    if images.is_empty() {
        return Ok(None);
    }
    let Some((config, pixels)) = vision else {
        return Err(ModelError::Input(format!(
            "{} samples show an image, but the policy is a language model",
            images.len()
        )));
    };
    let rows: Vec<&[u32]> = samples.iter().map(|s| s.prompt.as_slice()).collect();
    let spans = config.image_spans(&rows, images.len())?;
    Ok(Some((pixels.tensor(&images, device)?, spans)))
}

/// A forward pass over a [`ScoreBatch`].
#[derive(Debug)]
pub struct Scores<B: Backend> {
    pub hidden: Tensor<B, 3>,
    /// `[tokens, vocab]`: the logits at the response tokens (see
    /// [`ScoreBatch::response_positions`]).
    pub logits: Tensor<B, 2>,
    /// `[batch, seq]`: the log-prob of each response token at the sampling temperature, 0 at
    /// the other positions.
    pub logprobs: Tensor<B, 2>,
}
