//! `sftvsrl bench …`: throughput measurements. Speed claims come from here, not from tests.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::backend::Autodiff;
use clap::{Args, Subcommand};
use serde_json::json;
use sftvsrl_envs::Env;
use sftvsrl_envs::gp::episode::GeneralPoints;
use sftvsrl_envs::gp::expert::{ExpertSolution, expert_hand};
use sftvsrl_envs::gp::prompt::expert_response;
use sftvsrl_envs::gp::verify::{HandFacts, grade_response};
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_model::{
    GenerateBenchConfig, GenerateBenchReport, LlamaConfig, ModelError, bench_generate,
};
use sftvsrl_training::kernel_bench::{
    KernelBenchConfig, KernelBenchReport, KernelPhase, bench_kernels,
};
use sftvsrl_training::rl::{RlBenchConfig, RlBenchReport, bench_rl};
use sftvsrl_training::{TrainBenchConfig, TrainBenchReport, TrainError, bench_train};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// GeneralPoints: verifier calls per second and episodes per second, on one core.
    Gp(GpBenchArgs),
    /// Batched generation on SmolLM2-135M-shaped random weights: tokens/s, prefill tokens/s and
    /// the share of time in matrix products (`benches/generate_reference.py` times transformers
    /// with the same settings; `cargo bench --profile dev --bench generate` runs both).
    Generate(GenerateBenchArgs),
    /// PPO updates on GeneralPoints with random weights: seconds per update split into
    /// generation (batched KV cache), environment and optimisation.
    Rl(RlBenchArgs),
    /// SFT training steps (forward + masked loss, backward, AdamW) on SmolLM2-135M-shaped random
    /// weights: tokens/s per phase, the device's matmul peak and the model FLOP utilisation
    /// (`benches/train_reference.py` times PyTorch with the same settings; `cargo bench
    /// --profile dev --bench train` runs both).
    Train(TrainBenchArgs),
    /// Kernels compiled by the GPU backends (wgpu, cuda): generation at several prompt widths
    /// and SFT steps at several sequence lengths on a tiny model, then again at other lengths;
    /// the count per phase comes from CubeCL's compilation log.
    Kernels(KernelBenchArgs),
}

#[derive(Args)]
pub struct KernelBenchArgs {
    /// Device to run on (wgpu or cuda; the CPU backends compile nothing).
    #[arg(long, default_value = "wgpu")]
    device: DeviceKind,
    /// CubeCL's compilation log, one line per compiled kernel (appended to).
    #[arg(long, default_value = "kernels.log")]
    pub compile_log: PathBuf,
    /// Reuse compiled kernels from (and add them to) this cache folder; without it every kernel
    /// is compiled afresh.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Round sequence lengths up to a multiple of this (1: exact lengths, as before shape
    /// bucketing) [default: 32 on wgpu and cuda].
    #[arg(long)]
    pad_to_multiple_of: Option<usize>,
}

struct KernelJob(KernelBenchConfig, PathBuf);

impl OnBackend for KernelJob {
    type Output = Result<KernelBenchReport, TrainError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let log = self.1;
        let mut compiled = || Some(compiled_kernels(&log));
        let mut report = |p: &KernelPhase| {
            let kernels = p.compiled.map_or("?".into(), |n| n.to_string());
            eprintln!("{}: {kernels} kernels compiled, {:.1} s", p.name, p.seconds);
        };
        bench_kernels::<Autodiff<B>>(&self.0, &device, &mut compiled, &mut report)
    }
}

/// Kernels listed in a CubeCL compilation log so far. CubeCL writes the log from a thread of
/// its own: the count is read until it stops changing.
fn compiled_kernels(log: &Path) -> usize {
    let count = || {
        std::fs::read_to_string(log).map_or(0, |text| {
            text.lines()
                .filter(|l| {
                    l.starts_with("[Compiling kernel]")
                        || l.starts_with("[START_KERNEL_COMPILATION]")
                })
                .count()
        })
    };
    let mut last = count();
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn bench_kernels_cmd(a: KernelBenchArgs) -> Result<()> {
    let config = KernelBenchConfig {
        pad_to_multiple_of: a.pad_to_multiple_of,
        ..KernelBenchConfig::default()
    };
    let report = run_on(a.device, KernelJob(config, a.compile_log))??;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Device to run on.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Model shape: SmolLM2-135M's, or the tiny study's (hidden 96, 2 layers, 512 tokens).
    #[arg(long, value_enum, default_value = "smollm2-135m")]
    model: BenchModel,
    /// Sequences per step [default: 4 for smollm2-135m, 32 for tiny].
    #[arg(long)]
    batch: Option<usize>,
    /// Tokens per sequence [default: 256 for smollm2-135m, 96 for tiny].
    #[arg(long)]
    seq_len: Option<usize>,
    /// Leading tokens of each sequence left out of the loss [default: half of --seq-len].
    #[arg(long)]
    prompt_len: Option<usize>,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Decoder layers [default: the shape's, 30 for smollm2-135m, 2 for tiny].
    #[arg(long)]
    layers: Option<usize>,
    /// Side of the square matrices whose product measures the peak GFLOP/s.
    #[arg(long, default_value_t = 2048)]
    matmul_size: usize,
}

struct TrainJob(LlamaConfig, TrainBenchConfig);

impl OnBackend for TrainJob {
    type Output = Result<TrainBenchReport, TrainError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        bench_train::<Autodiff<B>>(&self.0, &self.1, &device)
    }
}

fn bench_train_cmd(a: TrainBenchArgs) -> Result<()> {
    let model = a.model.bench_model();
    let defaults = model.train_config();
    let seq_len = a.seq_len.unwrap_or(defaults.seq_len);
    let config = TrainBenchConfig {
        batch: a.batch.unwrap_or(defaults.batch),
        seq_len,
        prompt_len: a.prompt_len.unwrap_or(seq_len / 2),
        steps: a.steps,
        matmul_size: a.matmul_size,
        ..defaults
    };
    let shape = model.shape();
    let model = LlamaConfig {
        num_hidden_layers: a.layers.unwrap_or(shape.num_hidden_layers),
        ..shape
    };
    let report = run_on(a.device, TrainJob(model, config))??;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[derive(Args)]
pub struct GenerateBenchArgs {
    /// Device to run on.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Sequences in the batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    prompt_len: usize,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Round the prompt width and KV cache up to a multiple of this and attend over the whole
    /// cache while decoding (1: exact shapes) [default: 32 on wgpu and cuda, 1 on the CPU].
    #[arg(long)]
    pad_to_multiple_of: Option<usize>,
}

struct GenerateJob(GenerateBenchConfig);

impl OnBackend for GenerateJob {
    type Output = Result<GenerateBenchReport, ModelError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        bench_generate::<B>(&LlamaConfig::smollm2_135m(), &self.0, &device)
    }
}

fn bench_generate_cmd(a: GenerateBenchArgs) -> Result<()> {
    let config = GenerateBenchConfig {
        batch: a.batch,
        prompt_len: a.prompt_len,
        new_tokens: a.new_tokens,
        pad_to_multiple_of: a.pad_to_multiple_of,
        ..GenerateBenchConfig::default()
    };
    let report = run_on(a.device, GenerateJob(config))??;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The model shapes `bench train` and `bench rl` measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    /// The shape of config/sft/gp-l-tiny.toml (hidden 96, 2 layers).
    Tiny,
    /// SmolLM2-135M's shape.
    #[value(name = "smollm2-135m")]
    Smollm2,
}

impl BenchModel {
    /// The training benchmark's shape of the same name.
    fn bench_model(self) -> sftvsrl_training::BenchModel {
        match self {
            Self::Tiny => sftvsrl_training::BenchModel::Tiny,
            Self::Smollm2 => sftvsrl_training::BenchModel::Smollm2,
        }
    }
}

#[derive(Args)]
pub struct RlBenchArgs {
    /// Device to run on.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Model shapes to measure (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [BenchModel::Tiny])]
    model: Vec<BenchModel>,
    /// Environments stepped together (the generation batch).
    #[arg(long, default_value_t = 8)]
    num_envs: usize,
    /// Steps per environment per update.
    #[arg(long, default_value_t = 2)]
    num_steps: usize,
    /// Tokens per response (a random policy always uses them all).
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// PPO epochs per update.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Samples per forward/backward pass.
    #[arg(long, default_value_t = 1)]
    mini_batch: usize,
    /// Updates timed, after one warm-up update.
    #[arg(long, default_value_t = 1)]
    updates: usize,
}

struct RlBenchJob(RlBenchConfig);

impl OnBackend for RlBenchJob {
    type Output = Result<RlBenchReport, TrainError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        bench_rl::<Autodiff<B>>(&self.0, &device)
    }
}

fn bench_rl_cmd(a: RlBenchArgs) -> Result<()> {
    let mut reports = Vec::new();
    for model in &a.model {
        let (name, shape) = match model {
            BenchModel::Tiny => ("tiny", LlamaConfig::tiny_study(0)),
            BenchModel::Smollm2 => ("smollm2-135m", LlamaConfig::smollm2_135m()),
        };
        let config = RlBenchConfig {
            model_name: name.into(),
            model: shape,
            num_envs: a.num_envs,
            num_steps: a.num_steps,
            max_new_tokens: a.max_new_tokens,
            num_ppo_epochs: a.epochs,
            mini_batch_size: a.mini_batch,
            samples_per_step: 128 * a.mini_batch,
            updates: a.updates,
        };
        reports.push(run_on(a.device, RlBenchJob(config))??);
    }
    println!("{}", serde_json::to_string_pretty(&reports)?);
    Ok(())
}

#[derive(Args)]
pub struct GpBenchArgs {
    /// Seconds to spend on each measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Gp(a) => bench_gp(a),
        BenchCommand::Generate(a) => bench_generate_cmd(a),
        BenchCommand::Train(a) => bench_train_cmd(a),
        BenchCommand::Rl(a) => bench_rl_cmd(a),
        BenchCommand::Kernels(a) => bench_kernels_cmd(a),
    }
}

/// Calls `f` repeatedly for about `budget`, returning calls per second.
fn rate(budget: Duration, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Typical model outputs for a hand: a correct answer, a wrong one, a wrong card count, an
/// illegal one, and a chatty answer around valid JSON.
fn typical_responses(cfg: &GpConfig, count: u64) -> Vec<(sftvsrl_envs::gp::Hand, String)> {
    (0..count)
        .map(|i| {
            let (hand, solution) = expert_hand(cfg, 99, i, ExpertSolution::Random);
            let names = hand.names();
            let v = hand.values;
            let answer =
                |formula: &str| expert_response(&names, &v, formula, cfg.target, cfg.prompt_layout);
            let response = match i % 5 {
                0 => answer(&solution),
                1 => answer(&format!("{}+{}*{}-{}", v[0], v[1], v[2], v[3])),
                2 => answer(&format!("{}*{}", v[0], v[1])),
                3 => answer(&format!("{} x {} + {} - {}", v[0], v[1], v[2], v[3])),
                _ => format!(
                    "Let me think. {{\"cards\": {:?}, \"formula\": \"{solution}=24\"}}",
                    names
                ),
            };
            (hand, response)
        })
        .collect()
}

fn bench_gp(a: GpBenchArgs) -> Result<()> {
    let budget = Duration::from_secs_f64(a.seconds);
    let mut results = Vec::new();
    for vision in [false, true] {
        let cfg = GpConfig::variant(Variant::Id, vision);
        let cases = typical_responses(&cfg, 1000);
        let verify = rate(budget, |n| {
            let (hand, response) = &cases[(n % cases.len() as u64) as usize];
            let facts = HandFacts {
                values: hand.values,
                names: hand.names(),
                solutions: &hand.solutions,
                target: cfg.target,
                vision,
                scheme: cfg.gp_reward,
            };
            black_box(grade_response(black_box(response), &facts));
        });
        // Whole episodes: deal, (render,) then answer wrong twice and right on the third try.
        let mut env = GeneralPoints::new(cfg.clone())?;
        let episodes = rate(budget, |n| {
            env.reset(n);
            let hand = env.hand().clone();
            let names = hand.names();
            let wrong = expert_response(&names, &hand.values, "1+1", cfg.target, cfg.prompt_layout);
            let right = expert_response(
                &names,
                &hand.values,
                &hand.solutions.all()[0],
                cfg.target,
                cfg.prompt_layout,
            );
            for response in [&wrong, &wrong, &right, &right, &right, &right] {
                if env.step(response).done() {
                    break;
                }
            }
        });
        results.push((if vision { "gp-vl" } else { "gp-l" }, verify, episodes));
    }
    if a.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(task, v, e)| json!({"task": task, "verifier_calls_per_s": v, "episodes_per_s": e}))
            .collect();
        println!(
            "{}",
            json!({ "bench": "gp", "threads": 1, "results": rows })
        );
    } else {
        println!(
            "GeneralPoints, one thread ({:.1} s per measurement)",
            a.seconds
        );
        println!(
            "{:<8} {:>22} {:>18}",
            "task", "verifier calls/s", "episodes/s"
        );
        for (task, v, e) in results {
            println!("{task:<8} {v:>22.0} {e:>18.1}");
        }
        println!(
            "(an episode: deal a solvable hand, render it for GP-VL, answer wrong twice, then right)"
        );
    }
    Ok(())
}
