//! `sftvsrl sft CONFIG [--resume] [--device …]`: supervised fine-tuning.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{CpuBackend, DeviceKind, NdArrayBackend};
use sftvsrl_training::{RunConfig, RunSummary, SftConfig, run_sft};

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
}

pub fn run(args: SftArgs) -> Result<()> {
    let config = SftConfig::from_file(&args.config)?;
    let device = args.device.require_compiled()?;
    let mut log = |line: &str| eprintln!("{line}");
    let summary = match device {
        DeviceKind::Cpu => {
            run_sft::<Autodiff<CpuBackend>>(&config, args.resume, &Default::default(), &mut log)
        }
        DeviceKind::Ndarray => {
            run_sft::<Autodiff<NdArrayBackend>>(&config, args.resume, &Default::default(), &mut log)
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => run_sft::<Autodiff<sftvsrl_model::device::WgpuBackend>>(
            &config,
            args.resume,
            &Default::default(),
            &mut log,
        ),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => run_sft::<Autodiff<sftvsrl_model::device::CudaBackend>>(
            &config,
            args.resume,
            &Default::default(),
            &mut log,
        ),
        #[allow(unreachable_patterns)]
        other => unreachable!("{} was checked to be compiled in", other.name()),
    }
    .with_context(|| format!("SFT run `{}`", config.name))?;
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
