//! `sftvsrl rl CONFIG [--resume] [--device …]`: multi-step PPO with verifier rewards.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_training::rl::run::standard_error;
use sftvsrl_training::rl::{RlConfig, RlSummary, run_rl};
use sftvsrl_training::{RunConfig, TrainError};

#[derive(Args)]
pub struct RlArgs {
    /// The run's TOML config (see config/rl/).
    config: PathBuf,
    /// Continue from the run's newest checkpoint (weights, value head, Adam state, episodes).
    #[arg(long)]
    resume: bool,
    /// Where to train: cpu (Flex), ndarray, wgpu, cuda.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
}

struct RlJob {
    config: RlConfig,
    resume: bool,
}

impl OnBackend for RlJob {
    type Output = Result<RlSummary, TrainError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let mut log = |line: &str| eprintln!("{line}");
        run_rl::<Autodiff<B>>(&self.config, self.resume, &device, &mut log)
    }
}

pub fn run(args: RlArgs) -> Result<()> {
    let config = RlConfig::from_file(&args.config)?;
    let name = config.name.clone();
    let job = RlJob {
        config,
        resume: args.resume,
    };
    let summary = run_on(args.device, job)?.with_context(|| format!("RL run `{name}`"))?;
    report(&summary);
    Ok(())
}

fn report(s: &RlSummary) {
    let p = &s.progress;
    println!(
        "trained {} updates ({} optimizer steps), {} trained + {} inference tokens, {:.3e} FLOPs",
        p.update, p.optimizer_steps, p.trained_tokens, p.inference_tokens, p.flops
    );
    if let (Some(first), Some(last)) = (s.mean_rewards.first(), s.mean_rewards.last()) {
        println!("mean reward: {first:.3} (first update) → {last:.3} (last update)");
    }
    println!("checkpoint: {}", s.checkpoint.display());
    println!("model: {}", s.final_dir.display());
    for (when, e) in [("before", &s.eval_before), ("after", &s.eval_after)] {
        if let Some(e) = e {
            println!(
                "GeneralPoints ID success {when} RL: {:.1}% ± {:.1}% ({}/{} episodes)",
                100.0 * e.success_rate(),
                100.0 * standard_error(e),
                e.successes,
                e.episodes
            );
        }
    }
}
