//! Batched generation for rollouts: prompts of different lengths (and, for a vision-language
//! model, their images) are left-padded into one batch, prefilled into a preallocated KV cache, then decoded one token per step for the whole batch.
//! Each step samples on the device and reads the batch's tokens and log-probs back in one
//! transaction: the only host/device synchronisation per generated token.

use std::time::{Duration, Instant};

use burn::tensor::{Bool, Int, Tensor, TensorData, Transaction, backend::Backend};
use sftvsrl_envs::Rng;

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::device::{pad_len, pad_multiple};
use crate::error::ModelError;
use crate::llama::Llama;
use crate::sampling::Sampling;
use crate::vlm::Vlm;

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
    check_request(model.config(), prompts, config)?;
    generate_with(model, prompts, config, device, |ids, _| {
        Ok(model.embed_tokens.forward(ids))
    })
}

/// [`generate`] for a vision-language model: each prompt holds `image_tokens()` placeholders
/// per image (see [`crate::ImageSpans`]), and `pixels` (`[n, channels, height, width]`) holds
/// the images of all prompts in order. Prompts without images may sit beside prompts with
/// them; `pixels` is `None` when no prompt has an image.
pub fn generate_vlm<B: Backend>(
    model: &Vlm<B>,
    prompts: &[Vec<u32>],
    pixels: Option<Tensor<B, 4>>,
    config: &GenerateConfig,
    device: &B::Device,
) -> Result<Generation<B>, ModelError> {
    check_request(&model.config().text_config, prompts, config)?;
    let images = match &pixels {
        Some(p) => model.config().vision_config.check_pixels(p.dims())?,
        None => 0,
    };
    let rows: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let mut spans = model.image_spans(&rows, images)?;
    generate_with(
        model.language_model(),
        prompts,
        config,
        device,
        |ids, padding| {
            for (start, &row) in spans.start.iter_mut().zip(&spans.row) {
                *start += padding[row];
            }
            model.embed(ids, pixels.map(|p| (p, &spans)))
        },
    )
}

/// Checks a generation request against the model's vocabulary and context: at most
/// `max_position_embeddings` new tokens (the cache for them is allocated up front).
fn check_request(
    model: &LlamaConfig,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
) -> Result<(), ModelError> {
    let vocab = model.vocab_size;
    config.sampling.validate()?;
    if prompts.is_empty() {
        return Err(ModelError::Generation("no prompts".into()));
    }
    if config.max_new_tokens == 0 {
        return Err(ModelError::Generation(
            "max_new_tokens must be at least 1".into(),
        ));
    }
    if config.max_new_tokens > model.max_position_embeddings {
        return Err(ModelError::Generation(format!(
            "max_new_tokens {} is more than the model's {} positions",
            config.max_new_tokens, model.max_position_embeddings
        )));
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
    Ok(())
}

/// The generation loop of a checked request. `embed_prompts` gives the input embeddings
/// `[batch, width, hidden]` of the left-padded prompt ids, knowing each row's padding.
fn generate_with<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    device: &B::Device,
    embed_prompts: impl FnOnce(Tensor<B, 2, Int>, &[usize]) -> Result<Tensor<B, 3>, ModelError>,
) -> Result<Generation<B>, ModelError> {
    let vocab = model.config().vocab_size;
    let start = Instant::now();
    let multiple = pad_multiple::<B>(config.pad_to_multiple_of, device);
    // Rows past the real ones keep the batch to a few sizes where lengths are rounded (the GPU
    // backends): one-token prompts whose outputs are dropped and whose sampling draws are not
    // taken from the seed's stream, so the real rows' tokens do not change.
    let real = prompts.len();
    let batch = batch_rows(real, multiple);
    let filler = [0u32];
    let prompts: Vec<&[u32]> = (prompts.iter().map(Vec::as_slice))
        .chain(std::iter::repeat_n(&filler[..], batch - real))
        .collect();
    let width = pad_len(prompts.iter().map(|p| p.len()).max().unwrap_or(0), multiple);
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

    let embeds = embed_prompts(ids, &padding)?;
    let mut cache = KvCache::new(model.config(), batch, capacity, device);
    cache.check_append(batch, width, width)?;
    let hidden = model.hidden_from_embeds(
        embeds,
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
    let mut done: Vec<bool> = (0..batch).map(|row| row >= real).collect();
    let mut timing = GenerationTiming::default();
    for step in 0..config.max_new_tokens {
        let uniforms: Vec<f32> = (0..batch)
            .map(|row| match row < real {
                true => rng.unit_f64() as f32,
                false => 0.5,
            })
            .collect();
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
        cache.check_append(batch, 1, attended)?;
        let hidden = model.hidden(
            tokens.reshape([batch, 1]),
            positions,
            valid.clone().slice([0..batch, 0..attended]),
            Some(&mut cache),
        );
        logits = model.logits(hidden).reshape([batch, vocab]);
    }
    timing.decode = start.elapsed() - timing.first_token;
    sequences.truncate(real);
    Ok(Generation {
        sequences,
        prompt_hidden: prompt_hidden.slice([0..real, 0..hidden_size]),
        timing,
    })
}

/// The rows a batch of `real` prompts is generated in: `real` itself with exact lengths
/// (`multiple` 1); otherwise the next power of two up to `multiple`, and multiples of it above.
pub fn batch_rows(real: usize, multiple: usize) -> usize {
    match multiple {
        0 | 1 => real,
        m if real <= m => real.next_power_of_two(),
        m => pad_len(real, m),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::log_softmax;

    use super::*;
    use crate::device::CpuBackend;
    use crate::vision::tests::pixels;
    use crate::vlm::tests::{left_padded, prompts};
    use crate::vlm_config::tests::tiny_vlm;

    type B = CpuBackend;

    fn greedy(max_new_tokens: usize) -> GenerateConfig {
        GenerateConfig {
            max_new_tokens,
            sampling: Sampling::GREEDY,
            stop_tokens: vec![],
            seed: 0,
            pad_to_multiple_of: None,
        }
    }

    /// Greedy continuation of one prompt by a full forward pass per token (no cache).
    fn argmax_decode(
        model: &Vlm<B>,
        prompt: &[u32],
        images: Tensor<B, 4>,
        n: usize,
    ) -> (Vec<u32>, Vec<f32>) {
        let (mut row, mut logprobs) = (prompt.to_vec(), Vec::new());
        for _ in 0..n {
            let (_, ids, mask) = left_padded::<B>(std::slice::from_ref(&row));
            let spans = model.image_spans(&[&row], images.dims()[0]).unwrap();
            let logits = model
                .forward(ids, mask, Some((images.clone(), &spans)))
                .unwrap();
            let [_, seq, vocab] = logits.dims();
            let last = log_softmax(logits.slice([0..1, seq - 1..seq, 0..vocab]), 2);
            let lp: Vec<f32> = last.into_data().to_vec().unwrap();
            let best = (0..vocab).fold(0, |b, i| if lp[i] > lp[b] { i } else { b });
            row.push(best as u32);
            logprobs.push(lp[best]);
        }
        (row[prompt.len()..].to_vec(), logprobs)
    }

    #[test]
    fn greedy_vlm_generation_matches_full_forward_decoding() {
        let device = Default::default();
        let model = Vlm::<B>::init(&tiny_vlm(), 4, &device);
        let vision = &model.config().vision_config;
        let all = pixels::<B>(vision, 3, 0);
        let prompts = prompts();
        let out = generate_vlm(&model, &prompts, Some(all.clone()), &greedy(6), &device).unwrap();
        let images = [0..1, 0..0, 1..3];
        for ((prompt, seq), range) in prompts.iter().zip(&out.sequences).zip(images) {
            let (tokens, logprobs) = argmax_decode(&model, prompt, all.clone().slice([range]), 6);
            assert_eq!(seq.tokens, tokens);
            for (a, b) in seq.logprobs.iter().zip(&logprobs) {
                assert!((a - b).abs() < 1e-4, "recorded {a}, recomputed {b}");
            }
        }
        // A batch without images needs no pixels, and gives the same tokens.
        let text = generate_vlm(&model, &prompts[1..2], None, &greedy(6), &device).unwrap();
        assert_eq!(text.sequences[0], out.sequences[1]);
        // Lengths rounded up for the GPU backends (more left padding, fixed-shape decoding)
        // leave the image tokens in place: the same tokens.
        let bucketed = GenerateConfig {
            pad_to_multiple_of: Some(8),
            ..greedy(6)
        };
        let padded = generate_vlm(&model, &prompts, Some(all), &bucketed, &device).unwrap();
        for (a, b) in padded.sequences.iter().zip(&out.sequences) {
            assert_eq!(a.tokens, b.tokens);
        }
    }

    #[test]
    fn rounded_batches_keep_the_real_rows_tokens() {
        assert_eq!(
            [1, 3, 5, 9, 32, 33, 70].map(|n| batch_rows(n, 32)),
            [1, 4, 8, 16, 32, 64, 96]
        );
        assert_eq!(batch_rows(7, 1), 7);
        let device = Default::default();
        let model = Vlm::<B>::init(&tiny_vlm(), 4, &device);
        let text = model.language_model();
        let prompts = vec![vec![5, 6, 7], vec![8], vec![9, 10, 11, 12, 13]];
        let sampled = |pad| GenerateConfig {
            sampling: Sampling {
                temperature: 1.0,
                top_p: 1.0,
            },
            seed: 11,
            pad_to_multiple_of: pad,
            ..greedy(5)
        };
        let exact = generate(text, &prompts, &sampled(None), &device).unwrap();
        let rounded = generate(text, &prompts, &sampled(Some(8)), &device).unwrap();
        assert_eq!(rounded.sequences.len(), 3);
        assert_eq!(rounded.prompt_hidden.dims()[0], 3);
        for (a, b) in rounded.sequences.iter().zip(&exact.sequences) {
            assert_eq!(a.tokens, b.tokens);
            for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn vlm_generation_checks_the_images() {
        let device = Default::default();
        let model = Vlm::<B>::init(&tiny_vlm(), 4, &device);
        let vision = &model.config().vision_config;
        let err = |prompts: &[Vec<u32>], pixels: Option<Tensor<B, 4>>| {
            generate_vlm(&model, prompts, pixels, &greedy(2), &device)
                .unwrap_err()
                .to_string()
        };
        let e = err(&prompts(), None);
        assert!(e.contains("hold 3 images, but 0 were given"), "{e}");
        let e = err(&prompts()[..1], Some(pixels::<B>(vision, 2, 0)));
        assert!(e.contains("hold 1 images, but 2 were given"), "{e}");
        let e = err(
            &prompts()[..1],
            Some(Tensor::zeros([1, 3, 16, 16], &device)),
        );
        assert!(e.contains("the vision encoder takes [n, 3, 16, 24]"), "{e}");
        let e = err(&[vec![1, 5, 5, 2]], None);
        assert!(e.contains("row 0: 2 image placeholders"), "{e}");
    }
}
