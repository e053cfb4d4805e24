//! The `sftvsrl` command line: every subcommand is a thin layer over the library crates.

mod cli;

use clap::{Parser, Subcommand};
use sftvsrl_model::device::{
    KernelSettings, autotune_level_from_env, configure_kernels, default_kernel_cache,
    keep_freed_memory,
};

/// Post-train language and vision-language models with SFT and RL on verifiable environments,
/// and measure what each method generalizes.
#[derive(Parser)]
#[command(name = "sftvsrl", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explore GeneralPoints (card arithmetic): sample hands, verify answers, render, play.
    #[command(subcommand)]
    Gp(cli::gp::GpCommand),
    /// Explore V-IRL street navigation: worlds, routes, verify answers, render, play.
    #[command(subcommand)]
    Nav(cli::nav::NavCommand),
    /// Write datasets (expert SFT data).
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// The SFT-versus-RL study, Init to report (the main job): without a config, a tiny model on
    /// the CPU in minutes.
    Study(cli::study::StudyArgs),
    /// Supervised fine-tuning on chat JSONL (answer tokens only), with resumable checkpoints.
    Sft(cli::sft::SftArgs),
    /// Evaluate a checkpoint: episode success on in-distribution and OOD variants, with error
    /// bars, as JSON and a table.
    Eval(cli::eval::EvalArgs),
    /// Multi-step PPO against the verifiers, from an SFT checkpoint, with resumable checkpoints.
    Rl(cli::rl::RlArgs),
    /// Coordinate the worker processes of a multi-worker RL run (`rl --world-size`), on one node
    /// or several.
    Orchestrator(cli::orchestrator::OrchestratorArgs),
    /// Measure speed (environment throughput, and more as the crates grow).
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Continue prompts with a model (HF checkpoint directory or GGUF file).
    Generate(cli::model::GenerateArgs),
    /// Convert a checkpoint (HF directory or GGUF file) into an f32 HF safetensors directory.
    Import(cli::model::ImportArgs),
}

fn main() {
    keep_freed_memory();
    // Warnings and errors of the libraries only: burn-collective's servers would otherwise
    // install an info-level logger that prints every peer's config.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    // Before any GPU work: the kernel cache, or the bench's own settings.
    let autotune = match autotune_level_from_env() {
        Ok(level) => level,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let kernels = match &cli.command {
        Command::Bench(cli::bench::BenchCommand::Kernels(a)) => KernelSettings {
            cache: a.cache.clone(),
            compile_log: Some(a.compile_log.clone()),
            autotune,
        },
        _ => KernelSettings {
            cache: default_kernel_cache(),
            compile_log: None,
            autotune,
        },
    };
    if let Err(e) = configure_kernels(&kernels) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    // The command runs on a worker of the CPU backends' thread pool: their parallel products and
    // element-wise passes then split work with the other workers directly, instead of waking the
    // pool and putting the main thread to sleep for every operation.
    let result = rayon::scope(|_| match cli.command {
        Command::Gp(cmd) => cli::gp::run(cmd),
        Command::Nav(cmd) => cli::nav::run(cmd),
        Command::Data(cmd) => cli::data::run(cmd),
        Command::Study(args) => cli::study::run(args),
        Command::Sft(args) => cli::sft::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Rl(args) => cli::rl::run(args),
        Command::Orchestrator(args) => cli::orchestrator::run(args),
        Command::Bench(cmd) => cli::bench::run(cmd),
        Command::Generate(args) => cli::model::generate_cmd(args),
        Command::Import(args) => cli::model::import_cmd(args),
    });
    if let Err(e) = result {
        // One line, whatever a library's message holds (some end theirs with a newline).
        let message = format!("{e:#}");
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        eprintln!("error: {}", lines.join(" "));
        std::process::exit(1);
    }
}
