//! `sftvsrl sft CONFIG [--resume] [--device … | --devices …] [--world-size N --rank R
//! --orchestrator HOST:PORT --address HOST:PORT | --local-workers N …]`: supervised
//! fine-tuning, on one device, several devices of one process, or as one of several worker
//! processes (the flags of `sftvsrl rl`'s workers).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{Backend, DeviceKind, DeviceSpec, OnDevices, run_on_devices};
use sftvsrl_training::rl::WorkerSpec;
use sftvsrl_training::{
    Dashboard, RunConfig, RunDisplay, RunSummary, SftConfig, TrainError, run_sft_across, run_sft_on,
};

use super::launch::{self, LaunchArgs, WorkerArgs, WorkerCommand};

#[derive(Args)]
pub struct SftArgs {
    /// The run's TOML config (see config/sft/).
    config: PathBuf,
    /// Continue from the run's newest checkpoint (weights, optimizer state, data order).
    #[arg(long)]
    resume: bool,
    /// Where to train: cpu (Flex), ndarray, wgpu, cuda.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Train on several devices of one kind, e.g. `cuda:0,cuda:1`: each optimizer step's
    /// micro-batches are spread over them (same result as one device). `wgpu:N` is the N-th
    /// discrete GPU, plain `wgpu` the default adapter; cpu and ndarray have one device (`cpu`),
    /// which may be listed more than once.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["device", "world_size", "local_workers"])]
    devices: Vec<DeviceSpec>,
    /// Plain log lines even on a terminal (instead of burn-train's dashboard).
    #[arg(long)]
    plain: bool,
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    launch: LaunchArgs,
}

/// The run on the backend of its devices, alone or as one of several worker processes.
struct SftJob<'a> {
    config: &'a SftConfig,
    resume: bool,
    display: &'a mut dyn RunDisplay,
    worker: Option<WorkerSpec>,
}

impl OnDevices for SftJob<'_> {
    type Output = Result<RunSummary, TrainError>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        let (config, resume, display) = (self.config, self.resume, self.display);
        match &self.worker {
            Some(spec) => run_sft_across::<Autodiff<B>>(config, resume, &devices[0], display, spec),
            None => run_sft_on::<Autodiff<B>>(config, resume, &devices, display),
        }
    }
}

pub fn run(args: SftArgs) -> Result<()> {
    if args.launch.local_workers.is_some() {
        let command =
            WorkerCommand::new("sft", &args.config, args.resume, args.device, &args.workers);
        return launch::run(&args.launch, &command);
    }
    let worker = args.workers.spec()?;
    let config = SftConfig::from_file(&args.config)?;
    let specs = match args.devices.as_slice() {
        [] => vec![DeviceSpec {
            kind: args.device,
            index: None,
        }],
        specs => specs.to_vec(),
    };
    let mut display: Box<dyn RunDisplay> =
        if !args.plain && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Box::new(Dashboard::new(None))
        } else {
            Box::new(|line: &str| eprintln!("{line}"))
        };
    let job = SftJob {
        config: &config,
        resume: args.resume,
        display: display.as_mut(),
        worker,
    };
    let result = run_on_devices(&specs, job);
    drop(display); // gives the terminal back before anything is printed
    let summary = result?.with_context(|| format!("SFT run `{}`", config.name))?;
    report(&summary);
    Ok(())
}

fn report(s: &RunSummary) {
    println!(
        "trained {} steps, {} tokens, {:.3e} FLOPs",
        s.progress.step, s.progress.tokens, s.progress.flops
    );
    println!("checkpoint: {}", s.checkpoint.display());
    println!("model: {}", s.final_dir.display());
    if let Some(e) = &s.gp_eval {
        println!(
            "GeneralPoints ID success: {:.1}% ({}/{} episodes)",
            100.0 * e.success_rate(),
            e.successes,
            e.episodes
        );
    }
}
