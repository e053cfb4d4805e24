//! The study's report: `study.json` (every number), `report.md` (the headline table in the
//! paper's form, every checkpoint, the plots, the setup) and one PNG per variant and
//! verification setting (success against GFLOPs, as the paper plots it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::Rgb;
use serde_json::json;
use sftvsrl_training::{RunConfig, SftError};

use super::config::Study;
use super::run::{Branch, Point};
use crate::config::EvalVariant;
use crate::error::EvalError;
use crate::evaluate::VariantResult;
use crate::plot::{Plot, Series, render};

const RL_COLOR: Rgb<u8> = Rgb([214, 39, 40]);
const SFT_COLOR: Rgb<u8> = Rgb([31, 119, 180]);

/// A variant at one verification setting: a row of the headline table, one plot.
#[derive(Clone, Copy)]
struct Metric {
    variant: EvalVariant,
    verify_iter: u32,
}

impl Metric {
    fn label(self) -> String {
        format!("{} (verify {})", self.variant.name(), self.verify_iter)
    }

    fn plot_file(self) -> String {
        format!(
            "success-{}-verify{}.png",
            self.variant.name(),
            self.verify_iter
        )
    }

    fn of(self, point: &Point) -> Option<&VariantResult> {
        point
            .results
            .iter()
            .find(|r| r.variant == self.variant && r.verify_iter == self.verify_iter)
    }
}

/// GFLOPs for tables: four decimals, or three significant digits for big numbers.
fn gflops(flops: f64) -> String {
    match flops / 1e9 {
        g if g >= 1e5 => format!("{g:.3e}"),
        g => format!("{g:.4}"),
    }
}

/// `12.5% ± 2.1`.
fn cell(r: &VariantResult) -> String {
    format!(
        "{:.1}% ± {:.1}",
        100.0 * r.success_rate,
        100.0 * r.std_error
    )
}

/// `+3.5 pp, 1.2σ` against `base`: the difference and how many standard errors it spans.
fn change(r: &VariantResult, base: &VariantResult) -> String {
    let delta = 100.0 * (r.success_rate - base.success_rate);
    let se = 100.0 * (r.std_error.powi(2) + base.std_error.powi(2)).sqrt();
    let sigmas = if se > 0.0 {
        format!(", {:.1}σ", delta.abs() / se)
    } else {
        String::new()
    };
    format!("{delta:+.1} pp{sigmas}")
}

/// Writes `study.json`, the plots and `report.md` into the study folder; returns the report.
pub fn write_study_report(
    study: &Study,
    points: &[Point],
    warnings: &[String],
) -> Result<PathBuf, EvalError> {
    let dir = &study.dir;
    let metrics: Vec<Metric> = study
        .eval
        .variants
        .iter()
        .flat_map(|&variant| {
            study
                .eval
                .verify_iters
                .iter()
                .map(move |&verify_iter| Metric {
                    variant,
                    verify_iter,
                })
        })
        .collect();
    write(
        &dir.join("study.json"),
        &serde_json::to_string_pretty(&json!({
            "name": study.name, "eval": study.eval, "points": points, "warnings": warnings,
        }))
        .map_err(|e| EvalError::Invalid(format!("serialising the study: {e}")))?,
    )?;
    for &metric in &metrics {
        let path = dir.join(metric.plot_file());
        render(&plot(metric, points))
            .save(&path)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))?;
    }
    let path = dir.join("report.md");
    write(&path, &markdown(study, points, &metrics, warnings))?;
    Ok(path)
}

fn write(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(|e| SftError::io(path, e).into())
}

/// Success (%) against GFLOPs: each branch from the Init through its checkpoints.
fn plot(metric: Metric, points: &[Point]) -> Plot {
    let line = |branch: Branch| {
        points
            .iter()
            .filter(|p| p.branch == Branch::Init || p.branch == branch)
            .filter_map(|p| {
                metric
                    .of(p)
                    .map(|r| (p.flops / 1e9, 100.0 * r.success_rate, 100.0 * r.std_error))
            })
            .collect()
    };
    Plot {
        title: format!("{}: episode success", metric.label()),
        x_label: "training compute (GFLOPs)".into(),
        y_label: "success (%)".into(),
        series: vec![
            Series {
                label: "RL".into(),
                color: RL_COLOR,
                points: line(Branch::Rl),
            },
            Series {
                label: "SFT".into(),
                color: SFT_COLOR,
                points: line(Branch::Sft),
            },
        ],
    }
}

fn markdown(study: &Study, points: &[Point], metrics: &[Metric], warnings: &[String]) -> String {
    let last = |branch| points.iter().rev().find(|p| p.branch == branch);
    let (init, rl, sft) = (last(Branch::Init), last(Branch::Rl), last(Branch::Sft));
    let compute = |p: Option<&Point>| p.map_or("-".into(), |p| gflops(p.flops));
    let e = &study.eval;
    let mut md = format!(
        "# Study `{}`: SFT versus RL\n\n\
         One Init model, then an SFT branch and an RL branch trained from it at matched compute; \
         every checkpoint is played on every variant with the environment's own verifier. \
         Success is the fraction of {} episodes solved within `verify_iter` graded attempts; \
         ± is the standard error sqrt(p(1−p)/N); σ counts standard errors of a difference.\n\n",
        study.name, e.episodes
    );
    for w in warnings {
        let _ = writeln!(md, "> **Warning:** {w}\n");
    }
    md.push_str(
        "## Headline: the last checkpoint of each branch\n\n\
         | variant | Init | RL | SFT |\n|---|---|---|---|\n",
    );
    for &metric in metrics {
        let base = init.and_then(|p| metric.of(p));
        let branch = |p: Option<&Point>| match (p.and_then(|p| metric.of(p)), base) {
            (Some(r), Some(b)) => format!("{} ({})", cell(r), change(r, b)),
            (Some(r), None) => cell(r),
            (None, _) => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            metric.label(),
            base.map_or("-".into(), cell),
            branch(rl),
            branch(sft)
        );
    }
    let _ = writeln!(
        md,
        "\nTraining compute: Init {} GFLOPs, RL {} GFLOPs, SFT {} GFLOPs (from scratch: \
         6·N per trained token, 2·N per token generated or prefilled).\n",
        compute(init),
        compute(rl),
        compute(sft)
    );

    md.push_str("## Every checkpoint\n\n| branch | step | GFLOPs |");
    for &metric in metrics {
        let _ = write!(md, " {} |", metric.label());
    }
    md.push_str("\n|---|---|---|");
    md.push_str(&"---|".repeat(metrics.len()));
    md.push('\n');
    for p in points {
        let _ = write!(
            md,
            "| {} | {} | {} |",
            p.branch.name(),
            p.step,
            gflops(p.flops)
        );
        for &metric in metrics {
            let _ = write!(md, " {} |", metric.of(p).map_or("-".into(), cell));
        }
        md.push('\n');
    }

    md.push_str("\n## Success against compute\n\n");
    for &metric in metrics {
        let _ = writeln!(md, "![{}]({})\n", metric.label(), metric.plot_file());
    }

    let init_data = match &study.init.data.generate {
        Some(g) => {
            let rules: Vec<String> = g
                .face_rules
                .iter()
                .map(|r| {
                    let [j, q, k] = r.face_values();
                    format!("{j}/{q}/{k}")
                })
                .collect();
            format!(
                "{} generated examples; example i follows face-card rule i mod {} of \
                 J/Q/K = {}",
                g.n,
                rules.len(),
                rules.join(", ")
            )
        }
        None => format!("`{}`", study.init.data.path.display()),
    };
    let _ = write!(
        md,
        "## Setup\n\n\
         - Init: `{}` (config `init/config.toml`, seed {}), trained on {init_data}.\n\
         - RL branch: {} updates of {} environments × {} steps from the Init (config \
         `rl/config.toml`, seed {}).\n\
         - SFT branch: from the Init, checkpointed where its compute first reaches each RL \
         checkpoint's (config `sft/config.toml`, seed {}).\n\
         - Evaluation: {} episodes per variant dealt from seeds {}.., verify_iter {:?}, at most \
         {} new tokens, temperature {}, top-p {}, `{}` prompts. Each checkpoint's \
         `eval.json` (every number) and `eval.md` (transcripts) are under `evals/`.\n\
         - The study file as given: `study.toml`; all numbers of this report: `study.json`.\n",
        study.init.run_dir().display(),
        study.init.seed,
        study.rl.ppo.num_updates,
        study.rl.rollout.num_envs,
        study.rl.rollout.num_steps,
        study.rl.seed,
        study.sft.seed,
        e.episodes,
        e.seed,
        e.verify_iters,
        e.max_new_tokens,
        e.temperature,
        e.top_p,
        format!("{:?}", e.prompt_layout).to_lowercase()
    );
    md
}
