//! `sftvsrl data …`: datasets written to disk.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use sftvsrl_envs::expert::write_jsonl;
use sftvsrl_envs::gp::GpConfig;
use sftvsrl_envs::gp::episode::check_config;
use sftvsrl_envs::gp::expert::{ExpertSolution, ExpertStyle, styled_example};
use sftvsrl_envs::gp::revision::RevisionData;
use sftvsrl_envs::nav::{self, NavConfig, NavStyle};

use super::gp::{VariantArg, checked_image_size};
use super::input::read_toml;
use super::nav::checked_resolution;
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
    /// V-IRL navigation, text.
    VirlL,
    /// V-IRL navigation, vision.
    VirlVl,
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
    /// A TOML file of environment settings (GeneralPoints: overrides --variant; navigation:
    /// `NavConfig` fields).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Navigation: the route folder (`route_infos.json`, `gps_pano_mapping.pkl`, `street_views/`),
    /// e.g. one written by `sftvsrl nav world`.
    #[arg(long)]
    routes: Option<PathBuf>,
    /// GeneralPoints: which solution each answer teaches (`random`, as the reference data, or
    /// `hand-order`, a fixed one that keeps the cards' order where it can).
    #[arg(long, value_enum, default_value = "random")]
    solution: SolutionArg,
    /// GP-VL: side of the square card images in pixels (default: the config's `image_size`,
    /// the reference's 1200).
    #[arg(long)]
    image_size: Option<u32>,
    /// V-IRL-VL: side of each of the grid's four views in pixels (default: the config's
    /// `resolution`, the reference's 1200).
    #[arg(long)]
    resolution: Option<u32>,
    /// GeneralPoints: this share (0..=1) of the examples shows failed attempts and the
    /// verifier's feedback before the answer (the sequential-revision format).
    #[arg(long)]
    revisions: Option<f64>,
    /// GeneralPoints, with --revisions: most failed attempts before an answer.
    #[arg(long, default_value_t = 4)]
    max_failed: u32,
    /// Answers show their reasoning first (chain of thought): GeneralPoints the formula's
    /// arithmetic, navigation what is in view and which instruction sentence applies.
    #[arg(long)]
    chain_of_thought: bool,
    /// Each prompt is one of this many wordings of the task (1..=4).
    #[arg(long, default_value_t = 1)]
    prompt_variants: u32,
}

/// `--solution` values.
#[derive(Clone, Copy, ValueEnum)]
enum SolutionArg {
    Random,
    HandOrder,
}

impl From<SolutionArg> for ExpertSolution {
    fn from(a: SolutionArg) -> Self {
        match a {
            SolutionArg::Random => ExpertSolution::Random,
            SolutionArg::HandOrder => ExpertSolution::HandOrder,
        }
    }
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Sft(a) => sft(a),
    }
}

fn sft(a: SftDataArgs) -> Result<()> {
    if a.image_size.is_some() && a.task != TaskName::GpVl {
        bail!("--image-size is for --env gp-vl");
    }
    if a.resolution.is_some() && a.task != TaskName::VirlVl {
        bail!("--resolution is for --env virl-vl");
    }
    let gp = matches!(a.task, TaskName::GpL | TaskName::GpVl);
    if !gp && a.revisions.is_some() {
        bail!("--revisions is for --env gp-l|gp-vl");
    }
    let mut progress = Progress::new("expert examples", a.n as u64);
    let (path, n) = match a.task {
        TaskName::GpL | TaskName::GpVl => {
            let style = ExpertStyle {
                revision: a.revisions.map(|fraction| RevisionData {
                    fraction,
                    max_failed: a.max_failed,
                }),
                chain_of_thought: a.chain_of_thought,
                prompt_variants: a.prompt_variants,
            };
            style.validate().map_err(|e| {
                anyhow::anyhow!("{e} (set by --revisions, --max-failed, --prompt-variants)")
            })?;
            let vision = a.task == TaskName::GpVl;
            let mut cfg = match &a.config {
                Some(path) => GpConfig {
                    vision,
                    ..read_toml(path)?
                },
                None => GpConfig::variant(a.variant.into(), vision),
            };
            if let Some(n) = checked_image_size(a.image_size)? {
                cfg.image_size = n;
            }
            check_config(&cfg)?;
            let solution = a.solution.into();
            let examples = (0..a.n as u64)
                .map(|i| styled_example(&cfg, a.seed, i, solution, &style))
                .inspect(|_| progress.tick());
            write_jsonl(examples, &a.out).with_context(|| format!("writing {}", a.out.display()))?
        }
        TaskName::VirlL | TaskName::VirlVl => {
            let routes = a.routes.as_deref().context(
                "--routes DIR is required for navigation data (make one with `sftvsrl nav world`)",
            )?;
            let mut cfg: NavConfig = a
                .config
                .as_deref()
                .map(read_toml)
                .transpose()?
                .unwrap_or_default();
            if let Some(n) = a.resolution {
                cfg.resolution = checked_resolution(n)?;
            }
            let vision = a.task == TaskName::VirlVl;
            let style = NavStyle {
                chain_of_thought: a.chain_of_thought,
                prompt_variants: a.prompt_variants,
            };
            style
                .validate()
                .map_err(|e| anyhow::anyhow!("{e} (set by --prompt-variants)"))?;
            let mut failure = None;
            let examples = nav::expert_examples(routes, vision, a.n, a.seed, &cfg)?
                .styled(style)
                .map_while(|r| r.map_err(|e| failure = Some(e)).ok())
                .inspect(|_| progress.tick());
            let written = write_jsonl(examples, &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            if let Some(e) = failure {
                return Err(e).context(format!("after {} examples", written.1));
            }
            written
        }
    };
    progress.finish();
    println!("wrote {n} examples to {}", path.display());
    Ok(())
}
