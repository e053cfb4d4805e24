//! Generation speed beside the reference stack: batched sampling (batch 16, 128-token prompts,
//! 64 new tokens) on random weights of SmolLM2-135M's shape, here and in transformers
//! (`benches/generate_reference.py`, in the `.venv` that `scripts/make_model_fixtures.py`
//! creates), reported side by side with their ratio.
//!
//! `cargo bench --profile dev --bench generate -- [--device cpu|ndarray|wgpu|cuda] [--no-reference]`
//! (the dev profile builds dependencies at opt-level 3, so no release build is needed).

mod common;

use anyhow::Context;
use common::python_reference;
use serde_json::Value;
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_model::{
    GenerateBenchConfig, GenerateBenchReport, LlamaConfig, ModelError, bench_generate,
};

struct Bench(GenerateBenchConfig);

impl OnBackend for Bench {
    type Output = Result<GenerateBenchReport, ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        bench_generate::<B>(&LlamaConfig::smollm2_135m(), &self.0, &device)
    }
}

fn reference(config: &GenerateBenchConfig) -> anyhow::Result<Value> {
    let args = [
        ("--batch", config.batch.to_string()),
        ("--prompt-len", config.prompt_len.to_string()),
        ("--new-tokens", config.new_tokens.to_string()),
        ("--temperature", config.temperature.to_string()),
        ("--top-p", config.top_p.to_string()),
    ];
    let setup = "run scripts/make_model_fixtures.py once to create it";
    python_reference("generate_reference.py", &args, setup)
}

fn main() -> anyhow::Result<()> {
    sftvsrl_model::device::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut device = DeviceKind::Cpu;
    let mut with_reference = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--device" => {
                device = args.get(i + 1).context("--device needs a value")?.parse()?;
                i += 1;
            }
            "--no-reference" => with_reference = false,
            _ => {} // e.g. the `--bench` that cargo passes
        }
        i += 1;
    }
    let config = GenerateBenchConfig::default();
    let ours = run_on(device, Bench(config.clone()))??;
    println!("sftvsrl ({device}): {}", serde_json::to_string(&ours)?);
    if !with_reference {
        return Ok(());
    }
    let theirs = reference(&config)?;
    println!("transformers: {theirs}");
    let field = |k: &str| theirs[k].as_f64().unwrap_or(f64::NAN);
    println!();
    println!(
        "{:<28}{:>14}{:>16}{:>10}",
        "", "sftvsrl", "transformers", "ratio"
    );
    for (name, a, b) in [
        (
            "tokens/s (whole generate)",
            ours.tokens_per_s,
            field("tokens_per_s"),
        ),
        (
            "prefill tokens/s",
            ours.prefill_tokens_per_s,
            field("prefill_tokens_per_s"),
        ),
        (
            "decode tokens/s",
            ours.decode_tokens_per_s,
            field("decode_tokens_per_s"),
        ),
    ] {
        println!("{name:<28}{a:>14.1}{b:>16.1}{:>9.2}x", a / b);
    }
    println!(
        "share of time in linear layers (sftvsrl): {:.0}%",
        100.0 * ours.matmul_share
    );
    Ok(())
}
