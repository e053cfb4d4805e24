//! `sftvsrl rl CONFIG [--resume] [--device … | --devices D,D…] [--world-size N --rank R
//! --orchestrator HOST:PORT --address HOST:PORT | --local-workers N [--nodes M --node-rank K
//! --orchestrator HOST:PORT --host HOST]]`: multi-step PPO with verifier rewards, alone, with a
//! worker thread per device, as one of N worker processes, or starting a machine's workers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{
    Backend, DeviceKind, DeviceSpec, OnBackend, OnDevices, run_on, run_on_devices,
};
use sftvsrl_training::rl::run::standard_error;
use sftvsrl_training::rl::{RlConfig, RlSummary, WorkerSpec, run_rl, run_rl_across, run_rl_local};
use sftvsrl_training::{RunConfig, TrainError};

use super::launch::{self, LaunchArgs, WorkerArgs, WorkerCommand};

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
    /// One worker per device, all threads of this process (burn-collective's local peers), e.g.
    /// `cuda:0,cuda:1`: each runs `rollout.num_envs` environments and all take the optimizer
    /// steps of one worker with all of them. Worker 0 writes `runs/<name>/`, worker R
    /// `runs/<name>.rank-R/`. cpu and ndarray have one device, `cpu`, which may be listed more
    /// than once.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["device", "local_workers", "world_size"])]
    devices: Vec<DeviceSpec>,
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    launch: LaunchArgs,
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

/// The run with one local worker per device.
struct LocalJob {
    config: RlConfig,
    resume: bool,
    timeout: Duration,
}

impl OnDevices for LocalJob {
    type Output = Result<RlSummary, TrainError>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        let mut log = |line: &str| eprintln!("{line}");
        let (config, resume) = (&self.config, self.resume);
        run_rl_local::<Autodiff<B>>(config, resume, &devices, &mut log, self.timeout)
    }
}

pub fn run(args: RlArgs) -> Result<()> {
    if args.launch.local_workers.is_some() {
        let command =
            WorkerCommand::new("rl", &args.config, args.resume, args.device, &args.workers);
        return launch::run(&args.launch, &command);
    }
    if !args.devices.is_empty() {
        if args.devices.len() < 2 {
            bail!("--devices needs at least two devices (one device: --device)");
        }
        if args.workers.rank > 0 || args.workers.orchestrator.is_some() {
            bail!("--devices runs every worker in this process: no --rank or --orchestrator");
        }
        let config = RlConfig::from_file(&args.config)?;
        let name = config.name.clone();
        let job = LocalJob {
            config,
            resume: args.resume,
            timeout: Duration::from_secs(args.workers.collective_timeout_s),
        };
        let summary =
            run_on_devices(&args.devices, job)?.with_context(|| format!("RL run `{name}`"))?;
        report(&summary);
        return Ok(());
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
