//! `sftvsrl data …`: datasets written to disk.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use sftvsrl_envs::expert::write_jsonl;
use sftvsrl_envs::gp::GpConfig;
use sftvsrl_envs::gp::episode::check_config;
use sftvsrl_envs::gp::expert::expert_examples;

use super::gp::VariantArg;
use super::input::read_toml;
use super::progress::Progress;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Expert SFT data: prompt/response chat JSONL (and PNGs for vision tasks).
    Sft(SftDataArgs),
}

/// The task an expert data set is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskName {
    /// GeneralPoints, text.
    GpL,
    /// GeneralPoints, vision.
    GpVl,
}

#[derive(Args)]
pub struct SftDataArgs {
    /// Which task.
    #[arg(long = "env", value_enum)]
    task: TaskName,
    /// Number of examples.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Data set seed: the same seed gives the same examples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (`data.jsonl`, `images/`).
    #[arg(long)]
    out: PathBuf,
    /// GeneralPoints variant whose settings the examples follow.
    #[arg(long, value_enum, default_value = "id")]
    variant: VariantArg,
    /// A TOML file of GeneralPoints settings (overrides --variant).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Sft(a) => sft(a),
    }
}

fn sft(a: SftDataArgs) -> Result<()> {
    let vision = a.task == TaskName::GpVl;
    let cfg = match &a.config {
        Some(path) => GpConfig {
            vision,
            ..read_toml(path)?
        },
        None => GpConfig::variant(a.variant.into(), vision),
    };
    check_config(&cfg)?;
    let mut progress = Progress::new("expert examples", a.n as u64);
    let examples = expert_examples(&cfg, a.seed, a.n).inspect(|_| progress.tick());
    let (path, n) =
        write_jsonl(examples, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    progress.finish();
    println!("wrote {n} examples to {}", path.display());
    Ok(())
}
