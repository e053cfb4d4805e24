//! Kernel compilations. The CubeCL backends (wgpu, cuda) compile kernels for every new tensor
//! shape, so a run whose sequence lengths vary compiles far more kernels than its step count
//! suggests. This runs generation at several prompt widths and SFT steps (forward, backward,
//! AdamW) at several sequence lengths on a tiny model, then both again at other lengths, and
//! counts the kernels each phase compiles. `sftvsrl bench kernels` reads the count from CubeCL's
//! compilation log.

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use sftvsrl_envs::Rng;
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{GenerateConfig, Llama, LlamaConfig, Sampling, generate};

use crate::batch::SftBatch;
use crate::data::Sequence;
use crate::error::TrainError;
use crate::step::masked_loss;

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelBenchConfig {
    /// The model shape (not in the report).
    #[serde(skip)]
    pub model: LlamaConfig,
    /// Sequences per generate call and per training batch.
    pub batch: usize,
    /// The longest prompt of each generate call, first round.
    pub prompt_widths: Vec<usize>,
    /// The longest sequence of each training batch, first round.
    pub train_lengths: Vec<usize>,
    /// Added to every width and length in the second round (new lengths, same model).
    pub second_round_offset: usize,
    /// Tokens generated per call.
    pub max_new_tokens: usize,
    /// Sequence lengths are rounded up to a multiple of this (1: exact lengths, and attention
    /// over the filled cache only); `None`: the backend's default.
    pub pad_to_multiple_of: Option<usize>,
    pub seed: u64,
}

impl Default for KernelBenchConfig {
    /// The tiny study model's shape, batch 4, five prompt widths from 12 to 66 and five
    /// training lengths from 15 to 75, second round 3 tokens longer, 8 new tokens per call.
    fn default() -> Self {
        KernelBenchConfig {
            model: LlamaConfig::tiny_study(128),
            batch: 4,
            prompt_widths: vec![12, 23, 37, 50, 66],
            train_lengths: vec![15, 29, 44, 58, 75],
            second_round_offset: 3,
            max_new_tokens: 8,
            pad_to_multiple_of: None,
            seed: 0,
        }
    }
}

/// One phase: a list of calls at different lengths.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelPhase {
    /// `generate` or `train`, and the round (1 or 2).
    pub name: String,
    /// The longest sequence of each call.
    pub lengths: Vec<usize>,
    /// Kernels compiled during the phase (`None` when the backend reports none).
    pub compiled: Option<usize>,
    pub seconds: f64,
}

/// The measurements of one [`bench_kernels`] run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelBenchReport {
    pub device: String,
    pub config: KernelBenchConfig,
    /// The padding multiple in effect.
    pub pad_to_multiple_of: usize,
    pub phases: Vec<KernelPhase>,
    /// Kernels compiled over the whole run.
    pub compiled: Option<usize>,
    pub seconds: f64,
}

/// Runs the phases on `device`; `compiled_so_far` returns the number of kernels compiled so
/// far in this process (called after the device has finished each phase), and `on_phase` hears
/// of each phase as it ends.
pub fn bench_kernels<A: AutodiffBackend>(
    bench: &KernelBenchConfig,
    device: &A::Device,
    compiled_so_far: &mut dyn FnMut() -> Option<usize>,
    on_phase: &mut dyn FnMut(&KernelPhase),
) -> Result<KernelBenchReport, TrainError> {
    let sync = || A::sync(device).map_err(|e| TrainError::Invalid(format!("device error: {e:?}")));
    let multiple = pad_multiple::<A>(bench.pad_to_multiple_of, device);
    let mut llama = Llama::<A>::init(&bench.model, bench.seed, device);
    let mut optim = AdamWConfig::new().init::<A, Llama<A>>();
    let mut rng = Rng::new(bench.seed);
    let vocab = bench.model.vocab_size as u64;
    let mut tokens = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(vocab) as u32).collect() };

    let start = Instant::now();
    let before = compiled_so_far();
    let mut phases = Vec::new();
    for round in 0..2 {
        let offset = round * bench.second_round_offset;
        for train in [false, true] {
            let phase_start = Instant::now();
            let phase_before = compiled_so_far();
            let lengths: Vec<usize> = if train {
                &bench.train_lengths
            } else {
                &bench.prompt_widths
            }
            .iter()
            .map(|&l| l + offset)
            .collect();
            for &len in &lengths {
                // Row i is i tokens shorter than the longest, so every call pads.
                let rows: Vec<Vec<u32>> = (0..bench.batch)
                    .map(|i| tokens(len.saturating_sub(i).max(2)))
                    .collect();
                if train {
                    let sequences: Vec<Sequence> = rows
                        .into_iter()
                        .map(|ids| {
                            let prompt_len = ids.len() / 2;
                            Sequence::text(ids, prompt_len)
                        })
                        .collect();
                    let refs: Vec<&Sequence> = sequences.iter().collect();
                    let batch = SftBatch::<A>::new(&refs, multiple, device);
                    let out = masked_loss(&llama, &batch, batch.target_tokens)?;
                    let grads = GradientsParams::from_grads(out.loss.backward(), &llama);
                    llama = optim.step(1e-4, llama, grads);
                } else {
                    let config = GenerateConfig {
                        max_new_tokens: bench.max_new_tokens,
                        sampling: Sampling {
                            temperature: 1.0,
                            top_p: 0.9,
                        },
                        stop_tokens: Vec::new(),
                        seed: bench.seed.wrapping_add(len as u64),
                        pad_to_multiple_of: Some(multiple),
                    };
                    generate(&llama, &rows, &config, device)?;
                }
            }
            sync()?;
            let phase = KernelPhase {
                name: format!("{} {}", if train { "train" } else { "generate" }, round + 1),
                lengths,
                compiled: difference(compiled_so_far(), phase_before),
                seconds: phase_start.elapsed().as_secs_f64(),
            };
            on_phase(&phase);
            phases.push(phase);
        }
    }
    Ok(KernelBenchReport {
        device: format!("{device:?}"),
        config: bench.clone(),
        pad_to_multiple_of: multiple,
        phases,
        compiled: difference(compiled_so_far(), before),
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn difference(after: Option<usize>, before: Option<usize>) -> Option<usize> {
    Some(after? - before?)
}
