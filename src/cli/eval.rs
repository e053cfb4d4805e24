//! `sftvsrl eval [CONFIG] --checkpoint DIR`: episode success of a checkpoint on every variant.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use sftvsrl_eval::{EvalConfig, evaluate, table, write_report};
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_model::{is_vlm_checkpoint, load_pretrained, load_vlm};
use sftvsrl_training::{PixelCache, TextPolicy, VisionPolicy};

use super::progress::Progress;

#[derive(Args)]
pub struct EvalArgs {
    /// The evaluation TOML (see config/eval/); the reference protocol when left out.
    config: Option<PathBuf>,
    /// The model: a Hugging Face checkpoint folder (e.g. a run's `final/`) or a .gguf file.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where `eval.json` and `eval.md` go (default: `<checkpoint>/eval`, or beside a .gguf).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to run: cpu (Flex), ndarray, wgpu, cuda.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
}

struct EvalJob {
    args: EvalArgs,
    config: EvalConfig,
}

impl OnBackend for EvalJob {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let checkpoint = &self.args.checkpoint;
        let c = &self.config;
        let mut progress = Progress::new("episodes", c.total_episodes() as u64);
        let mut tick = |n: usize| (0..n).for_each(|_| progress.tick());
        let no_tokenizer = || format!("{} has no tokenizer", checkpoint.display());
        let report = if is_vlm_checkpoint(checkpoint) {
            let vlm = load_vlm::<B>(checkpoint, &device)?;
            let tokenizer = vlm.tokenizer.as_ref().with_context(no_tokenizer)?;
            let pixels = PixelCache::new(vlm.processor.clone());
            let mut policy = VisionPolicy {
                model: &vlm.model,
                pixels: &pixels,
                value_head: None,
                device: &device,
            };
            evaluate(&mut policy, tokenizer, c, &mut tick)?
        } else {
            let pretrained = load_pretrained::<B>(checkpoint, &device)?;
            let tokenizer = pretrained.tokenizer.as_ref().with_context(no_tokenizer)?;
            let mut policy = TextPolicy::new(&pretrained.model, &device);
            evaluate(&mut policy, tokenizer, c, &mut tick)?
        };
        progress.finish();
        let out = match &self.args.out {
            Some(out) => out.clone(),
            None if checkpoint.is_dir() => checkpoint.join("eval"),
            None => checkpoint.with_extension("eval"),
        };
        let about = json!({
            "checkpoint": checkpoint, "device": self.args.device.name(), "config": c,
        });
        write_report(&report, about, &out)?;
        print!("{}", table(&report));
        println!("written to {}", out.display());
        Ok(())
    }
}

/// `sftvsrl eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => EvalConfig::from_file(path)?,
        None => EvalConfig::default(),
    };
    run_on(args.device, EvalJob { args, config })?
}
