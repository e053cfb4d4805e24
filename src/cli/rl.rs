//! `sftvsrl rl CONFIG [--resume] [--device …] [--world-size N --rank R --orchestrator HOST:PORT
//! --address HOST:PORT | --local-workers N [--nodes M --node-rank K --orchestrator HOST:PORT
//! --host HOST]]`: multi-step PPO with verifier rewards, alone, as one of N workers, or starting
//! a machine's workers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_training::rl::run::standard_error;
use sftvsrl_training::rl::{RlConfig, RlSummary, WorkerSpec, run_rl, run_rl_across};
use sftvsrl_training::{RunConfig, TrainError};

use super::launch::{self, LaunchArgs, WorkerCommand};

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
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    launch: LaunchArgs,
}

/// One of several worker processes (README "Several workers"): each runs `rollout.num_envs`
/// environments and all take the optimizer steps of one worker with all of them.
#[derive(Args)]
struct WorkerArgs {
    /// Worker processes in the run, over all nodes (1: a run of its own).
    #[arg(long, default_value_t = 1)]
    world_size: usize,
    /// This worker's number, 0 to world size − 1; worker 0 writes `runs/<name>/`, worker R
    /// `runs/<name>.rank-R/`.
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// HOST:PORT of `sftvsrl orchestrator`.
    #[arg(long)]
    orchestrator: Option<String>,
    /// HOST:PORT at which the other workers reach this one (a free port per worker).
    #[arg(long)]
    address: Option<String>,
    /// Seconds to wait for the orchestrator or the other workers before stopping with an error.
    #[arg(long, default_value_t = 600)]
    collective_timeout_s: u64,
}

impl WorkerArgs {
    /// The worker's place, or `None` for a run of its own.
    fn spec(&self) -> Result<Option<WorkerSpec>> {
        if self.world_size <= 1 {
            if self.rank > 0 || self.orchestrator.is_some() || self.address.is_some() {
                bail!("--rank, --orchestrator and --address need --world-size 2 or more");
            }
            return Ok(None);
        }
        let (Some(orchestrator), Some(address)) = (&self.orchestrator, &self.address) else {
            bail!(
                "--world-size {} needs --orchestrator and --address",
                self.world_size
            );
        };
        let spec = WorkerSpec {
            rank: self.rank,
            world_size: self.world_size,
            orchestrator: orchestrator.clone(),
            address: address.clone(),
            timeout: Duration::from_secs(self.collective_timeout_s),
        };
        spec.validate().map_err(anyhow::Error::msg)?;
        Ok(Some(spec))
    }
}

struct RlJob {
    config: RlConfig,
    resume: bool,
    worker: Option<WorkerSpec>,
}

impl OnBackend for RlJob {
    type Output = Result<RlSummary, TrainError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let mut log = |line: &str| eprintln!("{line}");
        let (config, resume) = (&self.config, self.resume);
        match &self.worker {
            Some(spec) => run_rl_across::<Autodiff<B>>(config, resume, &device, &mut log, spec),
            None => run_rl::<Autodiff<B>>(config, resume, &device, &mut log),
        }
    }
}

pub fn run(args: RlArgs) -> Result<()> {
    if args.launch.local_workers.is_some() {
        let command = WorkerCommand {
            config: &args.config,
            resume: args.resume,
            device: args.device,
            orchestrator: args.workers.orchestrator.as_deref(),
            timeout_s: args.workers.collective_timeout_s,
        };
        return launch::run(&args.launch, &command);
    }
    let worker = args.workers.spec()?;
    let config = RlConfig::from_file(&args.config)?;
    let name = config.name.clone();
    let job = RlJob {
        config,
        resume: args.resume,
        worker,
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
