//! `sftvsrl sft CONFIG [--resume] [--device … | --devices …]`: supervised fine-tuning.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use clap::Args;
use sftvsrl_model::device::{CpuBackend, DeviceKind, NdArrayBackend};
use sftvsrl_training::{Dashboard, RunConfig, RunDisplay, RunSummary, SftConfig, run_sft_on};

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
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    devices: Vec<DeviceSpec>,
    /// Plain log lines even on a terminal (instead of burn-train's dashboard).
    #[arg(long)]
    plain: bool,
}

/// One entry of `--devices`: a kind and, for GPUs, an index.
#[derive(Clone, Copy, Debug)]
struct DeviceSpec {
    kind: DeviceKind,
    #[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
    index: Option<usize>,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let index = index
                    .parse()
                    .map_err(|_| format!("`{s}`: the device index `{index}` is not a number"))?;
                (kind, Some(index))
            }
            None => (s, None),
        };
        let kind = kind.parse::<DeviceKind>().map_err(|e| e.to_string())?;
        if matches!(kind, DeviceKind::Cpu | DeviceKind::Ndarray) && index.is_some_and(|i| i > 0) {
            return Err(format!("`{s}`: {kind} has one device, `{kind}`"));
        }
        Ok(DeviceSpec { kind, index })
    }
}

pub fn run(args: SftArgs) -> Result<()> {
    let config = SftConfig::from_file(&args.config)?;
    let specs = match args.devices.as_slice() {
        [] => vec![DeviceSpec {
            kind: args.device,
            index: None,
        }],
        specs => specs.to_vec(),
    };
    let kind = specs[0].kind;
    if let Some(other) = specs.iter().find(|s| s.kind != kind) {
        bail!(
            "--devices: all devices must be of one kind, not {kind} and {}",
            other.kind
        );
    }
    let kind = kind.require_compiled()?;
    let mut display: Box<dyn RunDisplay> =
        if !args.plain && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Box::new(Dashboard::new(None))
        } else {
            Box::new(|line: &str| eprintln!("{line}"))
        };
    let log = display.as_mut();
    let result = match kind {
        DeviceKind::Cpu => {
            let devices = vec![Default::default(); specs.len()];
            run_sft_on::<Autodiff<CpuBackend>>(&config, args.resume, &devices, log)
        }
        DeviceKind::Ndarray => {
            let devices = vec![Default::default(); specs.len()];
            run_sft_on::<Autodiff<NdArrayBackend>>(&config, args.resume, &devices, log)
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            use burn::backend::wgpu::WgpuDevice;
            let devices: Vec<WgpuDevice> = specs
                .iter()
                .map(|s| {
                    s.index
                        .map_or(WgpuDevice::DefaultDevice, WgpuDevice::DiscreteGpu)
                })
                .collect();
            run_sft_on::<Autodiff<sftvsrl_model::device::WgpuBackend>>(
                &config,
                args.resume,
                &devices,
                log,
            )
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            use burn::backend::cuda::CudaDevice;
            let devices: Vec<CudaDevice> = specs
                .iter()
                .map(|s| CudaDevice {
                    index: s.index.unwrap_or(0),
                })
                .collect();
            run_sft_on::<Autodiff<sftvsrl_model::device::CudaBackend>>(
                &config,
                args.resume,
                &devices,
                log,
            )
        }
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
