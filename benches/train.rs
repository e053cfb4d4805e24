//! Training speed beside the reference stack: SFT steps (forward with the masked loss, backward,
//! AdamW) at batch 4 × 256 tokens on random weights of SmolLM2-135M's shape (or, with `--model
//! tiny`, at batch 32 × 96 on the tiny study's model), here and in PyTorch
//! eager mode with transformers (`benches/train_reference.py`, same shapes, loss masking,
//! optimizer and thread count), reported side by side with their ratio, against the matmul peak
//! each framework measures on this machine (MFU = 6·N·tokens/s ÷ peak).
//!
//! The reference needs a virtual environment with torch and transformers:
//! `python3 -m venv .venv && .venv/bin/pip install torch transformers` (CPU-only torch wheels:
//! add `--index-url https://download.pytorch.org/whl/cpu` to a separate `pip install torch`).
//!
//! `cargo bench --profile dev --bench train -- [--model smollm2-135m|tiny]
//! [--device cpu|ndarray|wgpu|cuda] [--steps N] [--layers N] [--no-reference]` (the dev profile builds dependencies at opt-level 3).

mod common;

use anyhow::Context;
use burn::backend::Autodiff;
use common::python_reference;
use serde_json::Value;
use sftvsrl_model::LlamaConfig;
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_training::bench::cpu_threads;
use sftvsrl_training::{BenchModel, TrainBenchConfig, TrainBenchReport, TrainError, bench_train};

struct Bench(LlamaConfig, TrainBenchConfig);

impl OnBackend for Bench {
    type Output = Result<TrainBenchReport, TrainError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        bench_train::<Autodiff<B>>(&self.0, &self.1, &device)
    }
}

fn reference(name: &str, model: &LlamaConfig, config: &TrainBenchConfig) -> anyhow::Result<Value> {
    let args = [
        ("--model", name.to_string()),
        ("--batch", config.batch.to_string()),
        ("--seq-len", config.seq_len.to_string()),
        ("--prompt-len", config.prompt_len.to_string()),
        ("--steps", config.steps.to_string()),
        ("--layers", model.num_hidden_layers.to_string()),
        ("--matmul-size", config.matmul_size.to_string()),
        ("--threads", cpu_threads().to_string()),
        ("--seed", config.seed.to_string()),
    ];
    let setup = "python3 -m venv .venv && .venv/bin/pip install torch transformers";
    python_reference("train_reference.py", &args, setup)
}

fn main() -> anyhow::Result<()> {
    sftvsrl_model::device::keep_freed_memory();
    let mut device = DeviceKind::Cpu;
    let mut with_reference = true;
    let mut bench_model = BenchModel::Smollm2;
    let (mut steps, mut layers) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--device" => device = value()?.parse()?,
            "--model" => {
                bench_model = match value()?.as_str() {
                    "tiny" => BenchModel::Tiny,
                    "smollm2-135m" => BenchModel::Smollm2,
                    other => anyhow::bail!("--model {other}: expected tiny or smollm2-135m"),
                }
            }
            "--steps" => steps = Some(value()?.parse()?),
            "--layers" => layers = Some(value()?.parse()?),
            "--no-reference" => with_reference = false,
            _ => {} // e.g. the `--bench` that cargo passes
        }
    }
    let mut config = bench_model.train_config();
    config.steps = steps.unwrap_or(config.steps);
    let mut model = bench_model.shape();
    model.num_hidden_layers = layers.unwrap_or(model.num_hidden_layers);
    let ours = run_on(device, Bench(model.clone(), config.clone()))??;
    println!("sftvsrl ({device}): {}", serde_json::to_string(&ours)?);
    if !with_reference {
        return Ok(());
    }
    let theirs = reference(bench_model.name(), &model, &config)?;
    println!("pytorch: {theirs}");
    let field = |k: &str| theirs[k].as_f64().unwrap_or(f64::NAN);
    println!();
    println!(
        "{} threads, batch {} × {} tokens, {} parameters",
        ours.threads, config.batch, config.seq_len, ours.parameters
    );
    println!(
        "{:<28}{:>14}{:>14}{:>10}",
        "", "sftvsrl", "pytorch", "ratio"
    );
    for (name, a, b) in [
        (
            "tokens/s (whole step)",
            ours.tokens_per_s,
            field("tokens_per_s"),
        ),
        (
            "forward + loss (s)",
            ours.forward_seconds,
            field("forward_seconds"),
        ),
        (
            "backward (s)",
            ours.backward_seconds,
            field("backward_seconds"),
        ),
        (
            "AdamW (s)",
            ours.optimizer_seconds,
            field("optimizer_seconds"),
        ),
        (
            "matmul peak (GFLOP/s)",
            ours.matmul_peak_gflops,
            field("matmul_peak_gflops"),
        ),
    ] {
        println!("{name:<28}{a:>14.2}{b:>14.2}{:>9.2}x", a / b);
    }
    // Both against one yardstick: the peak our backend reaches on this machine.
    let peak = ours.matmul_peak_gflops;
    println!(
        "MFU vs our matmul peak ({peak:.1} GFLOP/s): sftvsrl {:.1}%, pytorch {:.1}%",
        100.0 * ours.model_gflops / peak,
        100.0 * field("model_gflops") / peak
    );
    println!(
        "MFU vs each framework's own peak: sftvsrl {:.1}%, pytorch {:.1}%",
        100.0 * ours.mfu,
        100.0 * field("mfu")
    );
    Ok(())
}
