//! Training speed: SFT optimizer steps (forward with the masked loss, backward, AdamW) on random
//! weights of a given shape (SmolLM2-135M's by default), timed phase by phase, beside the
//! device's measured matrix-product peak to give the model FLOP utilisation (MFU). `sftvsrl
//! bench train` prints the report; `benches/train.rs` runs it beside PyTorch with the ratio.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;
use sftvsrl_envs::Rng;
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{FusedAdamW, Llama, LlamaConfig};

use crate::batch::SftBatch;
use crate::data::Sequence;
use crate::error::TrainError;
use crate::flops::train_flops;
use crate::step::masked_loss;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainBenchConfig {
    /// Sequences per step.
    pub batch: usize,
    /// Input tokens per sequence (no padding).
    pub seq_len: usize,
    /// Leading tokens of each sequence left out of the loss (the prompt).
    pub prompt_len: usize,
    /// Timed optimizer steps, after one untimed warm-up step.
    pub steps: usize,
    /// Side of the square f32 matrices whose product measures the peak.
    pub matmul_size: usize,
    /// Seeds the weights and the token ids.
    pub seed: u64,
}

impl Default for TrainBenchConfig {
    /// Batch 4 × 256 tokens, the first 128 of each a prompt; 3 timed steps; 2048² matrices.
    fn default() -> Self {
        TrainBenchConfig {
            batch: 4,
            seq_len: 256,
            prompt_len: 128,
            steps: 3,
            matmul_size: 2048,
            seed: 0,
        }
    }
}

/// The model shapes the training benchmarks measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchModel {
    /// The tiny study's model (`LlamaConfig::tiny_study`, a [`TINY_BENCH_VOCAB`]-token
    /// vocabulary), at batch 32 × 96 tokens.
    Tiny,
    /// SmolLM2-135M's shape, at batch 4 × 256 tokens.
    Smollm2,
}

/// The tiny shape's vocabulary: about the size of the study's word-level tokenizer.
pub const TINY_BENCH_VOCAB: usize = 512;

impl BenchModel {
    /// The name `--model` takes and the reference script's `--model` expects.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Smollm2 => "smollm2-135m",
        }
    }

    /// The model's shape (all its layers).
    pub fn shape(self) -> LlamaConfig {
        match self {
            Self::Tiny => LlamaConfig::tiny_study(TINY_BENCH_VOCAB),
            Self::Smollm2 => LlamaConfig::smollm2_135m(),
        }
    }

    /// The default measurement for this shape: its batch and sequence length, the first half of
    /// each sequence a prompt.
    pub fn train_config(self) -> TrainBenchConfig {
        let (batch, seq_len) = match self {
            Self::Tiny => (32, 96),
            Self::Smollm2 => (4, 256),
        };
        TrainBenchConfig {
            batch,
            seq_len,
            prompt_len: seq_len / 2,
            ..TrainBenchConfig::default()
        }
    }
}

/// The measurements of one [`bench_train`] run (times are means over the timed steps).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainBenchReport {
    /// The Burn device it ran on.
    pub device: String,
    /// Worker threads of the CPU backends (`RAYON_NUM_THREADS`, else every core).
    pub threads: usize,
    /// What was measured.
    pub config: TrainBenchConfig,
    /// The model's parameter count N.
    pub parameters: usize,
    /// Forward pass with the masked loss and its statistics.
    pub forward_seconds: f64,
    /// Backward pass, gradients collected per parameter.
    pub backward_seconds: f64,
    /// The AdamW update.
    pub optimizer_seconds: f64,
    /// The three phases together.
    pub step_seconds: f64,
    /// Input tokens per second of whole steps.
    pub tokens_per_s: f64,
    /// Model FLOP/s, 6·N·tokens/s, in GFLOP/s.
    pub model_gflops: f64,
    /// The best rate of a large f32 matrix product on the device, in GFLOP/s.
    pub matmul_peak_gflops: f64,
    /// `model_gflops / matmul_peak_gflops`.
    pub mfu: f64,
}

/// Times `bench.steps` SFT steps of a model of shape `model` with random weights on `device`
/// (after one warm-up step), and the device's matrix-product peak.
pub fn bench_train<A: AutodiffBackend>(
    model: &LlamaConfig,
    bench: &TrainBenchConfig,
    device: &A::Device,
) -> Result<TrainBenchReport, TrainError> {
    if bench.batch == 0 || bench.steps == 0 || bench.prompt_len >= bench.seq_len {
        return Err(TrainError::Invalid(
            "the benchmark needs batch ≥ 1, steps ≥ 1 and prompt_len < seq_len".into(),
        ));
    }
    let mut llama = Llama::<A>::init(model, bench.seed, device);
    let parameters = llama.num_params();
    let mut rng = Rng::new(bench.seed);
    let sequences: Vec<Sequence> = (0..bench.batch)
        .map(|_| {
            let ids = (0..=bench.seq_len)
                .map(|_| rng.below(model.vocab_size as u64) as u32)
                .collect();
            Sequence::text(ids, bench.prompt_len)
        })
        .collect();
    let multiple = pad_multiple::<A>(None, device);
    let batch = SftBatch::<A>::new(&sequences.iter().collect::<Vec<_>>(), multiple, device);
    let mut optim = FusedAdamW::new(0.9, 0.98, 1e-7, 0.0).init::<A, Llama<A>>();

    let sync = || A::sync(device).map_err(|e| TrainError::Invalid(format!("device error: {e:?}")));
    let mut times = [0.0f64; 3];
    for step in 0..=bench.steps {
        let start = Instant::now();
        let out = masked_loss(&llama, &batch, batch.target_tokens)?;
        sync()?;
        let forward = start.elapsed().as_secs_f64();
        let grads = GradientsParams::from_grads(out.loss.backward(), &llama);
        sync()?;
        let backward = start.elapsed().as_secs_f64() - forward;
        llama = optim.step(1e-5, llama, grads);
        sync()?;
        let optimizer = start.elapsed().as_secs_f64() - forward - backward;
        if step > 0 {
            for (t, x) in times.iter_mut().zip([forward, backward, optimizer]) {
                *t += x / bench.steps as f64;
            }
        }
    }
    let [forward_seconds, backward_seconds, optimizer_seconds] = times;
    let step_seconds = times.iter().sum::<f64>();
    let tokens_per_s = batch.input_tokens as f64 / step_seconds;
    let model_gflops = train_flops(parameters, 1) * tokens_per_s / 1e9;
    let matmul_peak_gflops = matmul_peak::<A::InnerBackend>(bench.matmul_size, device)?;
    Ok(TrainBenchReport {
        device: format!("{device:?}"),
        threads: cpu_threads(),
        config: bench.clone(),
        parameters,
        forward_seconds,
        backward_seconds,
        optimizer_seconds,
        step_seconds,
        tokens_per_s,
        model_gflops,
        matmul_peak_gflops,
        mfu: model_gflops / matmul_peak_gflops,
    })
}

/// The best GFLOP/s of `[n, n] × [n, n]` f32 products, as the model multiplies
/// ([`sftvsrl_model::kernel_matmul::matmul`]), over at least a second (and five runs) after a
/// warm-up run.
pub fn matmul_peak<B: Backend>(n: usize, device: &B::Device) -> Result<f64, TrainError> {
    let a = Tensor::<B, 2>::random([n, n], Distribution::Default, device);
    let b = Tensor::<B, 2>::random([n, n], Distribution::Default, device);
    let sync = || B::sync(device).map_err(|e| TrainError::Invalid(format!("device error: {e:?}")));
    let flops = 2.0 * (n as f64).powi(3);
    let started = Instant::now();
    let (mut best, mut runs) = (0.0f64, 0);
    while runs < 6 || started.elapsed().as_secs_f64() < 1.0 {
        let start = Instant::now();
        let product = sftvsrl_model::kernel_matmul::matmul(a.clone(), b.clone());
        sync()?;
        drop(product);
        if runs > 0 {
            best = best.max(flops / start.elapsed().as_secs_f64() / 1e9);
        }
        runs += 1;
    }
    Ok(best)
}

/// The worker threads of the CPU backends' thread pool (rayon's rule).
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}
