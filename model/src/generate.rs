//! Batched generation for rollouts: prompts of different lengths are left-padded into one batch,
//! prefilled into a preallocated KV cache, then decoded one token per step for the whole batch.
//! Each step samples on the device and reads the batch's tokens and log-probs back in one
//! transaction: the only host/device synchronisation per generated token.

use std::time::{Duration, Instant};

use burn::tensor::{Bool, Int, Tensor, TensorData, Transaction, backend::Backend};
use sftvsrl_envs::Rng;

use crate::cache::KvCache;
use crate::device::{pad_len, pad_multiple};
use crate::error::ModelError;
use crate::llama::Llama;
use crate::sampling::Sampling;

/// The settings of one [`generate`] call.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// The most tokens generated per sequence (stop tokens included).
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// A sequence ends after producing any of these.
    pub stop_tokens: Vec<u32>,
    /// Seeds the sampler; the same seed gives the same tokens on the CPU backends.
    pub seed: u64,
    /// Round the prompt width and the KV cache up to a multiple of this, and attend over the
    /// whole cache at every decoding step (when above 1), so that the GPU backends compile
    /// kernels for few shapes; `None`: the backend's default ([`crate::device::pad_multiple`]).
    /// The padding is masked: tokens and log-probs do not change.
    pub pad_to_multiple_of: Option<usize>,
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced a stop token (the last of its tokens).
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One generated continuation.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedSequence {
    /// The new tokens, ending with the stop token when `finish` is `Stop`.
    pub tokens: Vec<u32>,
    /// The log-probability of each token under the tempered distribution
    /// `softmax(logits / temperature)` (temperature 1 when greedy), before top-p truncation:
    /// what [`crate::token_logprobs`] recomputes from a training forward pass.
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

/// Wall-clock split of a generation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GenerationTiming {
    /// Prefill of the prompts plus sampling of the first token.
    pub first_token: Duration,
    /// The remaining decoding steps.
    pub decode: Duration,
    /// How many decoding steps ran after the first token.
    pub decode_steps: usize,
}

/// The result of [`generate`] for a batch of prompts, in prompt order.
#[derive(Debug)]
pub struct Generation<B: Backend> {
    pub sequences: Vec<GeneratedSequence>,
    /// The final (normalised) hidden state of each prompt's last token, `[batch, hidden]`:
    /// the input of a PPO value head.
    pub prompt_hidden: Tensor<B, 2>,
    pub timing: GenerationTiming,
}

/// Continues every prompt (token ids) with up to `config.max_new_tokens` tokens.
pub fn generate<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    device: &B::Device,
) -> Result<Generation<B>, ModelError> {
    config.sampling.validate()?;
    let vocab = model.config().vocab_size;
    if prompts.is_empty() {
        return Err(ModelError::Generation("no prompts".into()));
    }
    if config.max_new_tokens == 0 {
        return Err(ModelError::Generation(
            "max_new_tokens must be at least 1".into(),
        ));
    }
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(ModelError::Generation(format!("prompt {i} is empty")));
        }
        if let Some(&t) = p.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Generation(format!(
                "prompt {i} holds token {t}, outside the vocabulary of {vocab}"
            )));
        }
    }

    let start = Instant::now();
    let batch = prompts.len();
    let multiple = pad_multiple::<B>(config.pad_to_multiple_of, device);
    let width = pad_len(prompts.iter().map(Vec::len).max().unwrap_or(0), multiple);
    let capacity = pad_len(width + config.max_new_tokens, multiple);
    let padding: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();

    // Left padding: row i's real tokens occupy slots padding[i]..width, then generation.
    let mut ids = Vec::with_capacity(batch * width);
    let mut positions = Vec::with_capacity(batch * width);
    let mut valid = Vec::with_capacity(batch * capacity);
    for (p, &pad) in prompts.iter().zip(&padding) {
        ids.extend(std::iter::repeat_n(0i64, pad).chain(p.iter().map(|&t| t as i64)));
        positions.extend((0..width).map(|j| j.saturating_sub(pad) as i64));
        valid.extend((0..capacity).map(|j| j >= pad));
    }
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, width]), device);
    let positions =
        Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [batch, width]), device);
    let valid = Tensor::<B, 2, Bool>::from_data(TensorData::new(valid, [batch, capacity]), device);
    let prompt_lens: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    let prompt_lens =
        Tensor::<B, 2, Int>::from_data(TensorData::new(prompt_lens, [batch, 1]), device);

    let mut cache = KvCache::new(model.config(), batch, capacity, device);
    let hidden = model.hidden(
        ids,
        positions,
        valid.clone().slice([0..batch, 0..width]),
        Some(&mut cache),
    );
    let hidden_size = hidden.dims()[2];
    let last = hidden.slice([0..batch, width - 1..width, 0..hidden_size]);
    let prompt_hidden = last.clone().reshape([batch, hidden_size]);
    let mut logits = model.logits(last).reshape([batch, vocab]);

    let mut rng = Rng::new(config.seed);
    let mut sequences: Vec<GeneratedSequence> = (0..batch)
        .map(|_| GeneratedSequence {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish: FinishReason::Length,
        })
        .collect();
    let mut done = vec![false; batch];
    let mut timing = GenerationTiming::default();
    for step in 0..config.max_new_tokens {
        let uniforms: Vec<f32> = (0..batch).map(|_| rng.unit_f64() as f32).collect();
        let uniforms = Tensor::<B, 2>::from_data(TensorData::new(uniforms, [batch, 1]), device);
        let (tokens, logprobs) = config.sampling.sample(logits, uniforms);
        let [token_data, logprob_data] = Transaction::default()
            .register(tokens.clone())
            .register(logprobs)
            .execute()
            .try_into()
            .expect("two tensors registered");
        let logprob_values: Vec<f32> = logprob_data.iter::<f32>().collect();
        for ((seq, is_done), (token, logprob)) in sequences
            .iter_mut()
            .zip(done.iter_mut())
            .zip(token_data.iter::<i64>().zip(logprob_values))
        {
            if *is_done {
                continue;
            }
            let token = token as u32;
            seq.tokens.push(token);
            seq.logprobs.push(logprob);
            if config.stop_tokens.contains(&token) {
                seq.finish = FinishReason::Stop;
                *is_done = true;
            }
        }
        if step == 0 {
            timing.first_token = start.elapsed();
        } else {
            timing.decode_steps += 1;
        }
        if step + 1 == config.max_new_tokens || done.iter().all(|&d| d) {
            break;
        }
        let filled = width + step + 1;
        let attended = if multiple > 1 { capacity } else { filled };
        let positions = prompt_lens.clone() + step as i64;
        let hidden = model.hidden(
            tokens.reshape([batch, 1]),
            positions,
            valid.clone().slice([0..batch, 0..attended]),
            Some(&mut cache),
        );
        logits = model.logits(hidden).reshape([batch, vocab]);
    }
    timing.decode = start.elapsed() - timing.first_token;
    Ok(Generation {
        sequences,
        prompt_hidden,
        timing,
    })
}
