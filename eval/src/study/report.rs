//! The study's report: `study.json` (every number), `report.md` (the headline table in the
//! paper's form, every checkpoint, the plots, the setup) and one PNG per variant and
//! verification setting (success against GFLOPs, as the paper plots it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::Rgb;
use serde_json::json;
use sftvsrl_training::{ModelConfig, RunConfig, SftLoss, durable};

use super::config::{Arm, Study};
use super::run::{Branch, Point};
use sftvsrl_envs::gp::FaceRule;
use sftvsrl_envs::nav::prompt::turn_words;
use sftvsrl_envs::nav::world::WorldSpec;

use crate::config::{EvalConfig, EvalVariant};
use crate::error::EvalError;
use crate::evaluate::rate_with_error;
use crate::plot::{Plot, Series, render};

/// Reds, oranges and browns for RL arms, blues, greens and purples for SFT arms, in order.
const RL_COLORS: [Rgb<u8>; 5] = [
    Rgb([214, 39, 40]),
    Rgb([255, 127, 14]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([188, 189, 34]),
];
const SFT_COLORS: [Rgb<u8>; 5] = [
    Rgb([31, 119, 180]),
    Rgb([23, 190, 207]),
    Rgb([44, 160, 44]),
    Rgb([148, 103, 189]),
    Rgb([127, 127, 127]),
];

/// What a metric measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Episode (route) success.
    Success,
    /// GeneralPoints with several graded attempts: episodes solved at the first one.
    FirstAttempt,
    /// Navigation's per-step accuracy.
    StepAccuracy,
    /// GP-VL's card recognition: model calls not graded "you recognized wrong cards".
    Recognition,
}

/// A measure of a variant at one verification setting: a row of the headline table, one plot.
#[derive(Clone, Copy)]
struct Metric {
    variant: EvalVariant,
    verify_iter: u32,
    measure: Measure,
}

impl Metric {
    fn label(self) -> String {
        let what = match self.measure {
            Measure::Success => "",
            Measure::FirstAttempt => " first attempt",
            Measure::StepAccuracy => " per-step accuracy",
            Measure::Recognition => " card recognition",
        };
        format!(
            "{}{what} (verify {})",
            self.variant.name(),
            self.verify_iter
        )
    }

    fn plot_file(self) -> String {
        let what = match self.measure {
            Measure::Success => "success",
            Measure::FirstAttempt => "first-attempt",
            Measure::StepAccuracy => "step-accuracy",
            Measure::Recognition => "recognition",
        };
        format!(
            "{what}-{}-verify{}.png",
            self.variant.name(),
            self.verify_iter
        )
    }

    /// The rate and its standard error at `point`.
    fn of(self, point: &Point) -> Option<Rate> {
        let r = point
            .results
            .iter()
            .find(|r| r.variant == self.variant && r.verify_iter == self.verify_iter)?;
        match self.measure {
            Measure::Success => Some(Rate(r.success_rate, r.std_error)),
            Measure::FirstAttempt => {
                let (rate, error) = rate_with_error(r.first_attempt, r.episodes);
                Some(Rate(rate, error))
            }
            Measure::StepAccuracy => r.step_accuracy.map(|a| Rate(a.rate, a.std_error)),
            Measure::Recognition => r.recognition.map(|a| Rate(a.rate, a.std_error)),
        }
    }
}

/// A rate and its standard error.
#[derive(Clone, Copy)]
struct Rate(f64, f64);

/// Every metric a study's evaluation gives: episode success of each variant at each
/// verification setting (navigation: its own `verify_iter`), per-step accuracy for
/// navigation, and card recognition for GP-VL (the paper's Fig. 8).
fn metrics(eval: &EvalConfig) -> Vec<Metric> {
    let mut out = Vec::new();
    for &variant in &eval.variants {
        if variant.is_navigation() {
            let verify_iter = eval.nav.env.verify_iter;
            for measure in [Measure::Success, Measure::StepAccuracy] {
                out.push(Metric {
                    variant,
                    verify_iter,
                    measure,
                });
            }
        } else {
            let measures: &[Measure] = match variant.is_vision() {
                true => &[Measure::Success, Measure::Recognition],
                false => &[Measure::Success],
            };
            for &verify_iter in &eval.verify_iters {
                let revisions = (verify_iter > 1).then_some(Measure::FirstAttempt);
                out.extend(
                    measures
                        .iter()
                        .copied()
                        .chain(revisions)
                        .map(|measure| Metric {
                            variant,
                            verify_iter,
                            measure,
                        }),
                );
            }
        }
    }
    out
}

/// GFLOPs for tables: four decimals, or three significant digits for big numbers.
fn gflops(flops: f64) -> String {
    match flops / 1e9 {
        g if g >= 1e5 => format!("{g:.3e}"),
        g => format!("{g:.4}"),
    }
}

/// A KL in nats per token.
fn kl_cell(kl: f64) -> String {
    format!("{kl:.4}")
}

/// `12.5% ± 2.1`.
fn cell(r: Rate) -> String {
    format!("{:.1}% ± {:.1}", 100.0 * r.0, 100.0 * r.1)
}

/// `+3.5 pp, 1.2σ` against `base`: the difference and how many standard errors it spans.
fn change(r: Rate, base: Rate) -> String {
    let delta = 100.0 * (r.0 - base.0);
    let se = 100.0 * (r.1.powi(2) + base.1.powi(2)).sqrt();
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
    let metrics = metrics(&study.eval);
    write(
        &dir.join("study.json"),
        &serde_json::to_string_pretty(&json!({
            "name": study.name, "eval": study.eval, "kl_prompts": study.kl_prompts,
            "points": points, "warnings": warnings,
        }))
        .map_err(|e| EvalError::Invalid(format!("serialising the study: {e}")))?,
    )?;
    for &metric in &metrics {
        let path = dir.join(metric.plot_file());
        render(&plot(metric, points))
            .save(&path)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))?;
    }
    for (id, ood) in id_ood_pairs(&metrics) {
        let path = dir.join(id_ood_file(id, ood));
        render(&id_ood_plot(id, ood, points))
            .save(&path)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))?;
    }
    let path = dir.join("report.md");
    write(&path, &markdown(study, points, &metrics, warnings))?;
    Ok(path)
}

fn write(path: &Path, text: &str) -> Result<(), EvalError> {
    Ok(durable::write_file(path, text)?)
}

/// The success metrics of an ID variant and an OOD variant of the same task at the same
/// verification setting, for the plots of one against the other.
fn id_ood_pairs(metrics: &[Metric]) -> Vec<(Metric, Metric)> {
    let success = || metrics.iter().filter(|m| m.measure == Measure::Success);
    let mut pairs = Vec::new();
    for id in success() {
        let Some(task) = id.variant.name().strip_suffix("-id") else {
            continue;
        };
        let ood = success().filter(|m| {
            m.verify_iter == id.verify_iter && m.variant.name().starts_with(&format!("{task}-ood-"))
        });
        pairs.extend(ood.map(|&ood| (*id, ood)));
    }
    pairs
}

fn id_ood_file(id: Metric, ood: Metric) -> String {
    format!("id-vs-{}-verify{}.png", ood.variant.name(), id.verify_iter)
}

/// OOD success against ID success: each run from the Init through its checkpoints, so an arm
/// that gains in distribution without losing out of it moves right and not down.
fn id_ood_plot(id: Metric, ood: Metric, points: &[Point]) -> Plot {
    let mut plot = plot(ood, points);
    let init = points.iter().filter(|p| p.branch == Branch::Init);
    for (series, run) in plot.series.iter_mut().zip(runs(points)) {
        series.points = init
            .clone()
            .chain(points.iter().filter(|p| p.run == run.run))
            .filter_map(|p| {
                Some((
                    100.0 * id.of(p)?.0,
                    100.0 * ood.of(p)?.0,
                    100.0 * ood.of(p)?.1,
                ))
            })
            .collect();
    }
    plot.title = format!(
        "{} against {} (verify {})",
        ood.variant.name(),
        id.variant.name(),
        id.verify_iter
    );
    plot.x_label = format!("{} success (%)", id.variant.name());
    plot.y_label = format!("{} success (%)", ood.variant.name());
    plot
}

/// Success (%) against GFLOPs: each run from the Init through its checkpoints, a colour per
/// arm (the seeds of an arm share it).
fn plot(metric: Metric, points: &[Point]) -> Plot {
    let init = points.iter().filter(|p| p.branch == Branch::Init);
    let line = |run: &str| {
        init.clone()
            .chain(points.iter().filter(|p| p.run == run))
            .filter_map(|p| {
                metric
                    .of(p)
                    .map(|r| (p.flops / 1e9, 100.0 * r.0, 100.0 * r.1))
            })
            .collect()
    };
    let arms = arms(points);
    let series = runs(points)
        .into_iter()
        .map(|p| {
            // The arm's place among the arms of its branch picks its colour.
            let same_branch = arms
                .iter()
                .take_while(|a| **a != p.arm)
                .filter(|a| points.iter().any(|q| q.arm == **a && q.branch == p.branch))
                .count();
            let color = match p.branch {
                Branch::Rl => RL_COLORS[same_branch % RL_COLORS.len()],
                _ => SFT_COLORS[same_branch % SFT_COLORS.len()],
            };
            Series {
                label: run_label(p),
                color,
                points: line(&p.run),
            }
        })
        .collect();
    let (what, axis) = match metric.measure {
        Measure::Success => ("episode success", "success (%)"),
        Measure::FirstAttempt => ("solved at the first attempt", "success (%)"),
        Measure::StepAccuracy => ("per-step accuracy", "correct calls (%)"),
        Measure::Recognition => ("card recognition", "calls with the cards read right (%)"),
    };
    Plot {
        title: format!(
            "{} (verify {}): {what}",
            metric.variant.name(),
            metric.verify_iter
        ),
        x_label: "training compute (GFLOPs)".into(),
        y_label: axis.into(),
        series,
    }
}

/// The arms of the branches (`rl`, `sft`, `sft-lr3e-4`, …), in order of appearance.
fn arms(points: &[Point]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in points.iter().filter(|p| p.branch != Branch::Init) {
        if !out.contains(&p.arm) {
            out.push(p.arm.clone());
        }
    }
    out
}

/// The last point of every branch run, in order of appearance.
fn runs(points: &[Point]) -> Vec<&Point> {
    let mut out: Vec<&Point> = Vec::new();
    for p in points.iter().filter(|p| p.branch != Branch::Init) {
        match out.iter_mut().find(|q| q.run == p.run) {
            Some(q) => *q = p,
            None => out.push(p),
        }
    }
    out
}

/// The learning rate of the runs `last` of one arm.
fn lr_of(study: &Study, last: &[&Point]) -> String {
    let Some(p) = last.first() else {
        return "-".into();
    };
    let rl = study.rl_runs().into_iter().map(|r| (r.config.name, r.lr));
    let sft = study.sft_runs().into_iter().map(|r| (r.config.name, r.lr));
    match rl.chain(sft).find(|(name, _)| *name == p.run) {
        Some((_, lr)) => format!("{lr:e}"),
        None => "-".into(),
    }
}

/// `RL`, `SFT`, `SFT lr 3e-4`, or a further arm's own name: an arm as a column heading.
fn arm_label(arm: &str) -> String {
    match arm.split_once('-') {
        None if arm == "rl" || arm == "sft" => arm.to_uppercase(),
        Some(("sft", rest)) => format!("SFT lr {}", rest.trim_start_matches("lr")),
        _ => arm.to_string(),
    }
}

/// A run in a legend: its arm, and its seed when the arm has several.
fn run_label(p: &Point) -> String {
    match p.run.contains("-seed") {
        true => format!("{} seed {}", arm_label(&p.arm), p.seed),
        false => arm_label(&p.arm),
    }
}

/// The headline cell of an arm whose runs ended at `last` (one per seed), against the Init's
/// `base`: one run's rate and change with its standard error, or several runs' mean, the
/// standard deviation over seeds, and the mean's change.
fn arm_cell(last: &[Rate], base: Option<Rate>) -> String {
    match last {
        [] => "-".into(),
        [r] => match base {
            Some(b) => format!("{} ({})", cell(*r), change(*r, b)),
            None => cell(*r),
        },
        _ => {
            let n = last.len() as f64;
            let mean = last.iter().map(|r| r.0).sum::<f64>() / n;
            let sd = (last.iter().map(|r| (r.0 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let delta = base.map_or(String::new(), |b| {
                format!(", {:+.1} pp", 100.0 * (mean - b.0))
            });
            format!(
                "{:.1}% ± {:.1} s.d. ({} seeds{delta})",
                100.0 * mean,
                100.0 * sd,
                last.len()
            )
        }
    }
}

fn markdown(study: &Study, points: &[Point], metrics: &[Metric], warnings: &[String]) -> String {
    let init = points.iter().rev().find(|p| p.branch == Branch::Init);
    let arms = arms(points);
    let runs = runs(points);
    let last_of =
        |arm: &str| -> Vec<&Point> { runs.iter().copied().filter(|p| p.arm == arm).collect() };
    let e = &study.eval;
    let mut md = format!(
        "# Study `{}`: SFT versus RL\n\n\
         One Init model, then an SFT branch and an RL branch trained from it at matched compute; \
         every checkpoint is played on every variant with the environment's own verifier. \
         Success is the fraction of episodes solved within `verify_iter` graded attempts (a \
         route: `stop()` reached without running out of attempts at any position); per-step \
         accuracy is the fraction of model calls given the correct action, revisions included; \
         ± is the standard error sqrt(p(1−p)/N) (over calls for per-step accuracy, whose calls \
         are not independent); σ counts standard errors of a difference.\n\n",
        study.name
    );
    for w in warnings {
        let _ = writeln!(md, "> **Warning:** {w}\n");
    }
    let _ = write!(
        md,
        "## Headline: the last checkpoint of each branch\n\n| variant | Init |{}\n|---|---|{}\n",
        arms.iter()
            .map(|a| format!(" {} |", arm_label(a)))
            .collect::<String>(),
        "---|".repeat(arms.len())
    );
    for &metric in metrics {
        let base = init.and_then(|p| metric.of(p));
        let _ = write!(
            md,
            "| {} | {} |",
            metric.label(),
            base.map_or("-".into(), cell)
        );
        for arm in &arms {
            let last: Vec<Rate> = last_of(arm).iter().filter_map(|p| metric.of(p)).collect();
            let _ = write!(md, " {} |", arm_cell(&last, base));
        }
        md.push('\n');
    }
    if points.iter().any(|p| p.kl_from_init.is_some()) {
        let _ = write!(
            md,
            "| KL from the Init (nats/token) | {} |",
            init.and_then(|p| p.kl_from_init)
                .map_or("-".into(), kl_cell)
        );
        for arm in &arms {
            let kls: Vec<f64> = last_of(arm).iter().filter_map(|p| p.kl_from_init).collect();
            let cell = match kls.len() {
                0 => "-".into(),
                n => kl_cell(kls.iter().sum::<f64>() / n as f64),
            };
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
        let _ = write!(
            md,
            "\nKL from the Init: on {} ID training prompts (the RL branch's task, hands dealt \
             from seeds 0..{0}), each checkpoint samples one response at temperature 1; the \
             figure is the mean over its tokens of KL(checkpoint ‖ Init) over the vocabulary \
             (RL's Razor: forgetting grows with it); several seeds: their mean.\n",
            study.kl_prompts
        );
    }
    let _ = write!(
        md,
        "\nTraining compute at the last checkpoint: Init {} GFLOPs",
        init.map_or("-".into(), |p| gflops(p.flops))
    );
    for arm in &arms {
        let last = last_of(arm);
        let mean = last.iter().map(|p| p.flops).sum::<f64>() / last.len().max(1) as f64;
        let steps: Vec<String> = last.iter().map(|p| p.optimizer_steps.to_string()).collect();
        let lr = lr_of(study, &last);
        let _ = write!(
            md,
            ", {} {} GFLOPs ({} optimizer steps at lr {lr})",
            arm_label(arm),
            gflops(mean),
            steps.join("/")
        );
    }
    md.push_str(
        " (from scratch: 6·N per trained token, 2·N per token generated or prefilled). The \
         branches' learning rates and step counts differ: the SFT rate that is best for one \
         distribution may not be for the other, which `sft_lrs` sweeps.\n\n",
    );
    if arms.iter().any(|a| last_of(a).len() > 1) {
        md.push_str(
            "An arm run at several seeds shows the mean of its runs' last checkpoints ± the \
             standard deviation over seeds, and the mean's change from the Init.\n\n",
        );
    }

    let with_kl = points.iter().any(|p| p.kl_from_init.is_some());
    md.push_str("## Every checkpoint\n\n| run | step | GFLOPs |");
    for &metric in metrics {
        let _ = write!(md, " {} |", metric.label());
    }
    if with_kl {
        md.push_str(" KL from the Init |");
    }
    md.push_str("\n|---|---|---|");
    md.push_str(&"---|".repeat(metrics.len() + usize::from(with_kl)));
    md.push('\n');
    for p in points {
        let _ = write!(md, "| {} | {} | {} |", p.run, p.step, gflops(p.flops));
        for &metric in metrics {
            let _ = write!(md, " {} |", metric.of(p).map_or("-".into(), cell));
        }
        if with_kl {
            let _ = write!(md, " {} |", p.kl_from_init.map_or("-".into(), kl_cell));
        }
        md.push('\n');
    }

    md.push_str("\n## Against compute\n\n");
    for &metric in metrics {
        let _ = writeln!(md, "![{}]({})\n", metric.label(), metric.plot_file());
    }
    let pairs = id_ood_pairs(metrics);
    if !pairs.is_empty() {
        md.push_str(
            "## Out of distribution against in distribution\n\nEach run from the Init through \
             its checkpoints: right is better in distribution, up better out of it.\n\n",
        );
    }
    for (id, ood) in pairs {
        let _ = writeln!(
            md,
            "![{} against {}]({})\n",
            ood.label(),
            id.label(),
            id_ood_file(id, ood)
        );
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
            let ood = FaceRule::Ood.face_values();
            let rule_held_out = match g.face_rules.iter().any(|r| r.face_values() == ood) {
                true => "",
                false => ". The OOD rule, J/Q/K = 11/12/13, is held out",
            };
            let images = match g.vision {
                true => format!(
                    "; the cards are shown on {0}×{0}-pixel images with `{1}` faces, in black \
                     suits only: the visual-OOD red suits are held out",
                    g.image_size,
                    g.card_faces.name()
                ),
                false => String::new(),
            };
            format!(
                "{} generated examples; example i follows face-card rule i mod {} of \
                 J/Q/K = {}{rule_held_out}{images}",
                g.n,
                rules.len(),
                rules.join(", ")
            )
        }
        None => match &study.init.data.generate_nav {
            Some(g) => {
                let rules = g.rule_configs();
                let held_out = !rules
                    .iter()
                    .any(|r| !r.absolute_action && r.turn_words() == turn_words(false));
                let views = match g.nav.vision {
                    true => format!(
                        "; each prompt shows a 2×2 grid of {0}×{0}-pixel street views{1}",
                        g.nav.resolution,
                        world_look(study.world.as_ref())
                    ),
                    false => String::new(),
                };
                format!(
                    "{} expert examples (one per rail position) on the routes of `{}`; example \
                     i follows turn rule i mod {} of {}{}{views}",
                    g.n,
                    g.routes.display(),
                    rules.len(),
                    rules
                        .iter()
                        .map(|r| format!(
                            "{} [{}]",
                            rule_name(r.absolute_action),
                            r.turn_words().join(", ")
                        ))
                        .collect::<Vec<_>>()
                        .join("; "),
                    if held_out {
                        ". The OOD variant's rule, relative turns named left, right, slightly \
                         left, slightly right, is held out"
                    } else {
                        ""
                    }
                )
            }
            None => format!("`{}`", study.init.data.path.display()),
        },
    };
    let _ = write!(
        md,
        "## Setup\n\n\
         - Init: `{}` (config `init/config.toml`, seed {}), trained on {init_data}.\n\
         - RL branch: {} updates of {} environments × {} steps from the Init, lr {:e} (config \
         `<run>/config.toml`; runs {}).\n\
         - SFT branch: from the Init, checkpointed where its compute first reaches each RL \
         checkpoint's (the RL run of the same seed), lr {} (config `<run>/config.toml`; runs \
         {}).\n\
         {}- Evaluation: at most {} new tokens, temperature {}, top-p {}.{}{} Each checkpoint's \
         `eval.json` (every number) and `eval.md` (transcripts) are under `evals/`.\n\
         - The study file as given: `study.toml`; all numbers of this report: `study.json`.\n",
        study.init.run_dir().display(),
        study.init.seed,
        study.rl.ppo.num_updates,
        study.rl.rollout.num_envs,
        study.rl.rollout.num_steps,
        study.rl.optim.lr,
        run_list(study.rl_runs().iter().map(|r| (&r.config.name, r.seed))),
        match &study.sft_lrs {
            Some(lrs) => lrs
                .iter()
                .map(|lr| format!("{lr:e}"))
                .collect::<Vec<_>>()
                .join(", "),
            None => format!("{:e}", study.sft.train.lr),
        },
        run_list(study.sft_runs().iter().map(|r| (&r.config.name, r.seed))),
        arms_setup(study),
        e.max_new_tokens,
        e.temperature,
        e.top_p,
        general_points_setup(e),
        navigation_setup(e, study.ood_world.as_ref())
    );
    md
}

/// The further arms, for the setup statements (empty without any).
fn arms_setup(study: &Study) -> String {
    if study.arms.is_empty() {
        return String::new();
    }
    let arms: Vec<String> = study
        .arms
        .iter()
        .map(|a| match a {
            Arm::Rl(c) => {
                let from = match study.teacher_of(&c.name) {
                    Some(t) => format!(", distilled from `{t}`"),
                    None => match &c.distill {
                        Some(d) => format!(", distilled from `{}`", d.teacher.display()),
                        None => String::new(),
                    },
                };
                format!("`{}` (RL{}{from})", c.name, start_of(study, &c.policy))
            }
            Arm::Sft(c) => {
                let how = match (
                    study.self_sft.iter().any(|(n, _)| *n == c.name),
                    c.train.loss,
                ) {
                    (true, _) => ", self-SFT on its start model's verified episodes",
                    (false, SftLoss::Dft) => ", DFT loss",
                    (false, SftLoss::Nll) => "",
                };
                let start = match &c.model {
                    ModelConfig::Pretrained { path, .. } => start_of(study, path),
                    ModelConfig::Scratch { .. } => ", from scratch",
                };
                format!("`{}` (SFT{start}{how})", c.name)
            }
        })
        .collect();
    format!(
        "- Further arms, each a branch with the settings of its `[arms.<name>]` in `study.toml` \
         changed (config `<run>/config.toml`; SFT arms checkpointed at the RL branch's \
         compute): {}.\n",
        arms.join(", ")
    )
}

/// `, from the base model` when an arm starts from the Init's base model rather than the Init.
fn start_of(study: &Study, model: &Path) -> &'static str {
    match model == study.init.run_dir().join("final") {
        true => "",
        false => ", from the base model",
    }
}

/// `` `rl/` (seed 0), `rl-seed1/` (seed 1) ``: a branch's runs for the setup statements.
fn run_list<'a>(runs: impl Iterator<Item = (&'a String, u64)>) -> String {
    runs.map(|(name, seed)| format!("`{name}/` (seed {seed})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a generated world shows its landmarks, for the setup statements.
fn world_look(world: Option<&WorldSpec>) -> String {
    match world {
        Some(w) => format!(
            " of a synthetic `{}` city whose businesses show `{}`",
            w.style.name(),
            w.landmarks.name()
        ),
        None => String::new(),
    }
}

/// The name of a navigation action rule.
fn rule_name(absolute: bool) -> &'static str {
    if absolute { "absolute" } else { "relative" }
}

/// How the GeneralPoints variants were played, when there are some.
fn general_points_setup(e: &EvalConfig) -> String {
    if e.variants.iter().all(|v| v.is_navigation()) {
        return String::new();
    }
    let images = match e.variants.iter().any(|v| v.is_vision()) {
        true => format!(
            " GP-VL cards drawn on {0}×{0}-pixel images with `{1}` faces (resized to the \
             model's input).",
            e.image_size,
            e.card_faces.name()
        ),
        false => String::new(),
    };
    format!(
        " GeneralPoints variants: {} episodes each dealt from seeds {}.., verify_iter {:?}, `{}` \
         prompts.{images}",
        e.episodes,
        e.seed,
        e.verify_iters,
        format!("{:?}", e.prompt_layout).to_lowercase()
    )
}

/// How the navigation variants were played, when there are some; `ood_world` is the study's
/// generated other city.
fn navigation_setup(e: &EvalConfig, ood_world: Option<&WorldSpec>) -> String {
    if !e.variants.iter().any(|v| v.is_navigation()) {
        return String::new();
    }
    let n = &e.nav;
    let views = match e
        .variants
        .iter()
        .any(|v| v.is_navigation() && v.is_vision())
    {
        true => format!(
            " Street views at {0}×{0} pixels each ({1}×{1} per grid).",
            n.env.resolution,
            2 * n.env.resolution
        ),
        false => String::new(),
    };
    let other_city = if e.variants.contains(&EvalVariant::VirlVlOodVisual) {
        let names = ood_world
            .and_then(|w| w.names)
            .map_or(String::new(), |names| {
                format!(", named as in a `{}` city", names.name())
            });
        let heading = ood_world
            .and_then(|w| w.grid_heading)
            .map_or(String::new(), |h| {
                format!(", its avenues at {h}° (the compass words of its routes follow)")
            });
        format!(
            " `virl-vl-ood-visual` walks every route of `{}`{}{names}{heading}.",
            n.ood_routes.as_deref().unwrap_or(Path::new("-")).display(),
            world_look(ood_world)
        )
    } else {
        String::new()
    };
    format!(
        " Navigation variants: {} episodes each on routes drawn from seeds {}.. out of {} of \
         `{}`, verify_iter {} per position, `{}` prompts.{views}{other_city}",
        n.episodes,
        n.seed,
        n.env
            .route_range
            .map_or("all routes".into(), |[a, b]| format!("routes {a}..{b}")),
        n.routes.as_deref().unwrap_or(Path::new("-")).display(),
        n.env.verify_iter,
        format!("{:?}", n.env.prompt_layout).to_lowercase()
    )
}
