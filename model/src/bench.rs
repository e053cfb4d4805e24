//! Generation speed: batched sampling on a model with random weights (SmolLM2-135M's shape by
//! default), split into prefill and decoding, with the share of time the linear layers take.
//! `benches/generate.rs` runs it beside the transformers reference and reports the ratio.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use serde::Serialize;
use sftvsrl_envs::Rng;

use crate::config::LlamaConfig;
use crate::error::ModelError;
use crate::generate::{GenerateConfig, generate};
use crate::layers::apply;
use crate::llama::Llama;
use crate::sampling::Sampling;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerateBenchConfig {
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    /// See [`GenerateConfig::pad_to_multiple_of`].
    pub pad_to_multiple_of: Option<usize>,
}

impl Default for GenerateBenchConfig {
    /// Batch 16, 128-token prompts, 64 new tokens, sampling at temperature 1.
    fn default() -> Self {
        GenerateBenchConfig {
            batch: 16,
            prompt_len: 128,
            new_tokens: 64,
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
            pad_to_multiple_of: None,
        }
    }
}

/// The measurements of one [`bench_generate`] run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerateBenchReport {
    pub device: String,
    pub config: GenerateBenchConfig,
    pub parameters: usize,
    /// Prefill plus the first sampled token.
    pub prefill_seconds: f64,
    /// Prompt tokens per second of the prefill.
    pub prefill_tokens_per_s: f64,
    /// The remaining decoding steps.
    pub decode_seconds: f64,
    /// Generated tokens per second while decoding (whole batch).
    pub decode_tokens_per_s: f64,
    pub total_seconds: f64,
    /// Generated tokens per second over the whole call (whole batch).
    pub tokens_per_s: f64,
    /// Time of the linear layers (projections, MLP, LM head) run alone at the same shapes,
    /// as a share of the whole generation.
    pub matmul_share: f64,
}

/// Times one batched generation with random weights of shape `model` on `device` (after a
/// short warm-up run), and the linear layers alone at the same shapes.
pub fn bench_generate<B: Backend>(
    model: &LlamaConfig,
    bench: &GenerateBenchConfig,
    device: &B::Device,
) -> Result<GenerateBenchReport, ModelError> {
    let llama = Llama::<B>::init(model, bench.seed, device);
    let mut rng = Rng::new(bench.seed);
    let prompts: Vec<Vec<u32>> = (0..bench.batch)
        .map(|_| {
            (0..bench.prompt_len)
                .map(|_| rng.below(model.vocab_size as u64) as u32)
                .collect()
        })
        .collect();
    let config = GenerateConfig {
        max_new_tokens: bench.new_tokens,
        sampling: Sampling {
            temperature: bench.temperature,
            top_p: bench.top_p,
        },
        stop_tokens: Vec::new(),
        seed: bench.seed,
        pad_to_multiple_of: bench.pad_to_multiple_of,
    };
    let warm_up = GenerateConfig {
        max_new_tokens: 2,
        ..config.clone()
    };
    generate(&llama, &prompts[..2.min(prompts.len())], &warm_up, device)?;

    let start = Instant::now();
    let out = generate(&llama, &prompts, &config, device)?;
    let total = start.elapsed();
    let timing = out.timing;
    let matmul = time_linear_layers(&llama, bench, timing.decode_steps, device);

    let secs = |d: Duration| d.as_secs_f64();
    let generated = (bench.batch * bench.new_tokens) as f64;
    Ok(GenerateBenchReport {
        device: format!("{device:?}"),
        config: bench.clone(),
        parameters: llama.num_params(),
        prefill_seconds: secs(timing.first_token),
        prefill_tokens_per_s: (bench.batch * bench.prompt_len) as f64 / secs(timing.first_token),
        decode_seconds: secs(timing.decode),
        decode_tokens_per_s: (bench.batch * timing.decode_steps) as f64 / secs(timing.decode),
        total_seconds: secs(total),
        tokens_per_s: generated / secs(total),
        matmul_share: secs(matmul) / secs(total),
    })
}

/// Runs every linear layer of `llama` once on prefill-shaped input and `decode_steps` times on
/// one-token input (as generation does), waiting for the device after each run.
fn time_linear_layers<B: Backend>(
    llama: &Llama<B>,
    bench: &GenerateBenchConfig,
    decode_steps: usize,
    device: &B::Device,
) -> Duration {
    let c = llama.config();
    let run = |seq: usize| {
        let x = Tensor::<B, 3>::ones([bench.batch, seq, c.hidden_size], device);
        let inner = Tensor::<B, 3>::ones([bench.batch, seq, c.intermediate_size], device);
        let attn = Tensor::<B, 3>::ones(
            [bench.batch, seq, c.num_attention_heads * c.head_dim],
            device,
        );
        let mut acc = Tensor::<B, 1>::zeros([1], device);
        for layer in &llama.layers {
            let a = &layer.self_attn;
            let m = &layer.mlp;
            let outs = [
                apply(&a.q_proj, None, x.clone()),
                apply(&a.k_proj, None, x.clone()),
                apply(&a.v_proj, None, x.clone()),
                apply(&a.o_proj, None, attn.clone()),
                apply(&m.gate_proj, None, x.clone()),
                apply(&m.up_proj, None, x.clone()),
                apply(&m.down_proj, None, inner.clone()),
            ];
            for o in outs {
                acc = acc + o.slice([0..1, 0..1, 0..1]).reshape([1]);
            }
        }
        let last = x.slice([0..bench.batch, seq - 1..seq, 0..c.hidden_size]);
        acc = acc + llama.logits(last).slice([0..1, 0..1, 0..1]).reshape([1]);
        acc.into_data();
    };
    let start = Instant::now();
    run(bench.prompt_len);
    for _ in 0..decode_steps {
        run(1);
    }
    start.elapsed()
}
