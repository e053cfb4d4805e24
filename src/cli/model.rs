//! `sftvsrl generate` and `sftvsrl import`: prompt a model, convert checkpoints.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use sftvsrl_envs::{Role, Turn};
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_model::{GenerateConfig, Sampling, generate, load_pretrained, save_pretrained};

/// Arguments of `sftvsrl generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A Hugging Face checkpoint directory or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// The prompt; repeat the flag to generate for several prompts in one batch.
    #[arg(long, required = true)]
    prompt: Vec<String>,
    /// cpu (Flex), ndarray, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Wrap each prompt as a user turn in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System prompt for --chat (default: the template's own, if it has one).
    #[arg(long, requires = "chat")]
    system: Option<String>,
}

/// Arguments of `sftvsrl import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A Hugging Face checkpoint directory or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// The directory to write the f32 Hugging Face checkpoint (and tokenizer) into.
    #[arg(long)]
    out: PathBuf,
}

impl OnBackend for GenerateArgs {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let start = Instant::now();
        let pretrained = load_pretrained::<B>(&self.model, &device)?;
        let tokenizer = pretrained.tokenizer.as_ref().with_context(|| {
            format!(
                "{} has no tokenizer to encode the prompt with",
                self.model.display()
            )
        })?;
        let loaded = start.elapsed();
        let prompts = self
            .prompt
            .iter()
            .map(|p| {
                if self.chat {
                    let turn = Turn {
                        role: Role::User,
                        text: p.clone(),
                    };
                    tokenizer.encode_chat(self.system.as_deref(), &[turn])
                } else {
                    tokenizer.encode(p, true)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = GenerateConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p,
            },
            stop_tokens: pretrained.stop_tokens.clone(),
            seed: self.seed,
            pad_to_multiple_of: None,
        };
        let out = generate(&pretrained.model, &prompts, &config, &device)?;
        for (i, seq) in out.sequences.iter().enumerate() {
            if out.sequences.len() > 1 {
                println!("--- {}", i + 1);
            }
            println!("{}", tokenizer.decode(&seq.tokens, true)?);
        }
        let generated: usize = out.sequences.iter().map(|s| s.tokens.len()).sum();
        let seconds = (out.timing.first_token + out.timing.decode).as_secs_f64();
        eprintln!(
            "[{} on {}: loaded in {:.1}s, {generated} tokens in {seconds:.1}s ({:.1} tokens/s)]",
            self.model.display(),
            self.device,
            loaded.as_secs_f64(),
            generated as f64 / seconds,
        );
        Ok(())
    }
}

/// `sftvsrl generate`.
pub fn generate_cmd(args: GenerateArgs) -> anyhow::Result<()> {
    if args.prompt.iter().any(String::is_empty) {
        bail!("--prompt must not be empty");
    }
    run_on(args.device, args)?
}

/// `sftvsrl import`.
pub fn import_cmd(args: ImportArgs) -> anyhow::Result<()> {
    type B = sftvsrl_model::device::CpuBackend;
    let pretrained = load_pretrained::<B>(&args.model, &Default::default())?;
    let written = save_pretrained(
        &pretrained.model,
        pretrained.tokenizer.as_ref(),
        &pretrained.stop_tokens,
        &args.out,
    )?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
