//! `sftvsrl sft CONFIG [--resume] [--device …]`: supervised fine-tuning.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{CpuBackend, DeviceKind, NdArrayBackend};
use sftvsrl_training::{Dashboard, RunConfig, RunDisplay, RunSummary, SftConfig, run_sft};

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
    /// Plain log lines even on a terminal (instead of burn-train's dashboard).
    #[arg(long)]
    plain: bool,
}

pub fn run(args: SftArgs) -> Result<()> {
    let config = SftConfig::from_file(&args.config)?;
    let device = args.device.require_compiled()?;
    let mut display: Box<dyn RunDisplay> =
        if !args.plain && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Box::new(Dashboard::new(None))
        } else {
            Box::new(|line: &str| eprintln!("{line}"))
        };
    let log = display.as_mut();
    let result = match device {
        DeviceKind::Cpu => {
            run_sft::<Autodiff<CpuBackend>>(&config, args.resume, &Default::default(), log)
        }
        DeviceKind::Ndarray => {
            run_sft::<Autodiff<NdArrayBackend>>(&config, args.resume, &Default::default(), log)
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => run_sft::<Autodiff<sftvsrl_model::device::WgpuBackend>>(
            &config,
            args.resume,
            &Default::default(),
            log,
        ),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => run_sft::<Autodiff<sftvsrl_model::device::CudaBackend>>(
            &config,
            args.resume,
            &Default::default(),
            log,
        ),
        #[allow(unreachable_patterns)]
        other => unreachable!("{} was checked to be compiled in", other.name()),
    };
    drop(display); // gives the terminal back before anything is printed
    let summary = result.with_context(|| format!("SFT run `{}`", config.name))?;
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
