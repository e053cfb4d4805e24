//! The study runner: Init → RL branch → SFT branch checkpointed at the RL branch's compute →
//! every checkpoint evaluated on every variant → the report. Each stage is an ordinary run in
//! `<study>/{init,rl,sft}/`; a resumed study reuses finished stages and evaluations and
//! continues an interrupted run from its newest checkpoint.

use std::path::{Path, PathBuf};

use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sftvsrl_envs::nav::world::{self, WorldSpec};
use sftvsrl_model::{Backbone, load_backbone};
use sftvsrl_training::rl::{RlConfig, run_rl};
use sftvsrl_training::setup::ensure_data;
use sftvsrl_training::{
    ModelConfig, PixelCache, RunConfig, RunDisplay, SelfSftConfig, SelfSftSummary, TrainError,
    backbone_policy, run_sft,
};
use sftvsrl_training::{checkpoint, durable};

use super::config::{Arm, BranchRun, Study};
use super::kl::{kl_from_init, sample_self_sft, write_base_model};
use super::report::write_study_report;
use crate::config::EvalConfig;
use crate::error::EvalError;
use crate::evaluate::{EvalReport, VariantResult, evaluate};
use crate::report::write_report;

/// Which stage a checkpoint comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Branch {
    Init,
    Sft,
    Rl,
}

impl Branch {
    /// The name used in folders and reports.
    pub fn name(self) -> &'static str {
        match self {
            Branch::Init => "init",
            Branch::Sft => "sft",
            Branch::Rl => "rl",
        }
    }
}

/// One evaluated checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub branch: Branch,
    /// The branch and setting, seeds aside (`init`, `rl`, `sft`, `sft-lr3e-4`): a row of the
    /// headline table.
    pub arm: String,
    /// The run's folder name (`rl`, `sft-lr3e-4-seed1`).
    pub run: String,
    /// The run's seed.
    pub seed: u64,
    /// Optimizer steps (SFT) or updates (RL) into the branch; for the Init, its own steps.
    pub step: usize,
    /// Optimizer steps into the branch (for RL, several per update).
    pub optimizer_steps: usize,
    /// Training compute from scratch: the Init's plus the branch's (paper-spec §6).
    pub flops: f64,
    /// The checkpoint's model (Hugging Face layout).
    pub model: PathBuf,
    /// Where its `eval.json` and `eval.md` are.
    pub eval_dir: PathBuf,
    pub results: Vec<VariantResult>,
    /// Mean per-token KL from the Init on ID training prompts, in nats (0 for the Init; `None`
    /// with `kl_prompts = 0`); see [`super::kl`].
    #[serde(default)]
    pub kl_from_init: Option<f64>,
}

/// What a finished study produced.
#[derive(Debug)]
pub struct StudyOutcome {
    /// The Init first, then the RL and the SFT checkpoints in order.
    pub points: Vec<Point>,
    /// `report.md`.
    pub report: PathBuf,
    /// Things the reader should know (e.g. compute that could not be matched).
    pub warnings: Vec<String>,
}

const STAGES: usize = 4;

/// How a study evaluates a checkpoint: its model folder and the protocol → the report;
/// `progress` hears of every finished episode.
pub type Evaluator<'a> =
    dyn FnMut(&Path, &EvalConfig, &mut dyn FnMut(usize)) -> Result<EvalReport, EvalError> + 'a;

/// How a study measures a checkpoint's KL from the Init: its model folder → nats per token.
pub type KlMeter<'a> = dyn FnMut(&Path) -> Result<f64, EvalError> + 'a;

/// How a self-SFT arm gets its data: the start model's folder, the settings and the data file
/// to write → what was kept.
pub type SelfSampler<'a> =
    dyn FnMut(&Path, &SelfSftConfig, &Path) -> Result<SelfSftSummary, EvalError> + 'a;

/// How a study plays models outside training: [`Hooks::real`] loads the checkpoints; tests
/// swap in scripted policies whose outcomes are known.
pub struct Hooks<'a> {
    pub evaluate: Box<Evaluator<'a>>,
    pub kl_from_init: Box<KlMeter<'a>>,
    pub self_sft: Box<SelfSampler<'a>>,
}

impl<'a> Hooks<'a> {
    /// Every hook on the real models, on backend `B`.
    pub fn real<B: Backend>(study: &'a Study, device: &'a B::Device) -> Self {
        Hooks {
            evaluate: real_evaluator::<B>(device),
            kl_from_init: real_kl_meter::<B>(study, device),
            self_sft: real_self_sampler::<B>(study, device),
        }
    }
}

/// Plays a checkpoint's episodes with its own model.
pub fn real_evaluator<'a, B: Backend>(device: &'a B::Device) -> Box<Evaluator<'a>> {
    Box::new(
        move |model_dir: &Path, config: &EvalConfig, progress: &mut dyn FnMut(usize)| {
            let loaded = load_backbone::<B>(model_dir, device)?;
            let tokenizer = loaded.tokenizer.ok_or_else(|| {
                EvalError::Invalid(format!("{} has no tokenizer.json", model_dir.display()))
            })?;
            let pixels = loaded.processor.map(PixelCache::new);
            let mut policy = backbone_policy(&loaded.model, None, pixels.as_ref(), device)?;
            evaluate(policy.as_mut(), &tokenizer, config, progress)
        },
    )
}

/// Measures [`kl_from_init`] against the study's Init (loaded at the first checkpoint).
pub fn real_kl_meter<'a, B: Backend>(study: &'a Study, device: &'a B::Device) -> Box<KlMeter<'a>> {
    let mut init: Option<Backbone<B>> = None;
    Box::new(move |model_dir: &Path| {
        let reference = match init.take() {
            Some(m) => m,
            None => load_backbone::<B>(&study.init.run_dir().join("final"), device)?.model,
        };
        let kl = kl_from_init(model_dir, &reference, &study.rl, study.kl_prompts, device);
        init = Some(reference);
        kl
    })
}

/// Samples a self-SFT arm's data with the real start model ([`sample_self_sft`]).
pub fn real_self_sampler<'a, B: Backend>(
    study: &'a Study,
    device: &'a B::Device,
) -> Box<SelfSampler<'a>> {
    Box::new(move |model: &Path, config: &SelfSftConfig, out: &Path| {
        sample_self_sft::<B>(model, &study.rl, config, out, device)
    })
}

/// Runs the study. Without `resume` its folder must not exist yet; with it, finished stages and
/// evaluations are reused and an interrupted run continues from its newest checkpoint.
pub fn run_study<A: AutodiffBackend>(
    study: &Study,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
) -> Result<StudyOutcome, EvalError> {
    let mut hooks = Hooks::real::<A::InnerBackend>(study, device);
    run_study_with::<A>(study, resume, device, display, &mut hooks)
}

/// [`run_study`] with the checkpoints played through `hooks` (tests give them scripted
/// policies whose success rates are known).
pub fn run_study_with<A: AutodiffBackend>(
    study: &Study,
    resume: bool,
    device: &A::Device,
    display: &mut dyn RunDisplay,
    hooks: &mut Hooks<'_>,
) -> Result<StudyOutcome, EvalError> {
    if study.dir.exists() && !resume {
        return Err(EvalError::Invalid(format!(
            "{} already exists: pass --resume to continue it (finished stages are reused), or \
             change the study's `name`",
            study.dir.display()
        )));
    }
    std::fs::create_dir_all(&study.dir).map_err(|e| TrainError::io(&study.dir, e))?;
    let source = study.dir.join("study.toml");
    durable::write_file(&source, &study.source)?;

    if let Some(spec) = &study.world {
        ensure_world(spec, &study.world_dir(), display)?;
    }
    if let Some(spec) = &study.ood_world {
        ensure_world(spec, &study.ood_world_dir(), display)?;
    }
    let init_dir = study.init.run_dir();
    stage(display, 1, "Init (SFT from the base model)", &init_dir);
    if !finished(&init_dir) {
        // The SFT arms' own data first: a from-scratch Init's vocabulary covers its words.
        if let ModelConfig::Scratch { vocab_data, .. } = &study.init.model {
            for arm in &study.arms {
                if let Arm::Sft(c) = arm
                    && vocab_data.contains(&c.data.path)
                {
                    ensure_data(&c.data)?;
                }
            }
        }
        run_sft::<A>(&study.init, true, device, display)?;
    }
    let init = checkpoints(&init_dir)?.pop();
    let init_flops = init.as_ref().map_or(0.0, |c| c.flops);
    if let Some(base) = &study.base_model
        && !finished_model(base)
    {
        write_base_model::<A::InnerBackend>(
            &init_dir.join("final"),
            study.init.seed,
            base,
            device,
        )?;
        display.line(&format!(
            "base model (the Init's architecture and tokenizer, fresh random weights) → {}",
            base.display()
        ));
    }

    // Runs distilled from another run of the study come after every other branch run.
    let rl_runs = study.rl_runs();
    let (first, distilled): (Vec<_>, Vec<_>) = rl_runs
        .iter()
        .enumerate()
        .partition(|(_, r)| study.teacher_of(&r.arm).is_none());
    let run_rl_stage = |(k, run): (usize, &BranchRun<RlConfig>), display: &mut dyn RunDisplay| {
        let dir = run.config.run_dir();
        let title = format!(
            "RL branch (PPO from the Init){}",
            which(k, rl_runs.len(), run)
        );
        stage(display, 2, &title, &dir);
        if !finished(&dir) {
            run_rl::<A>(&run.config, true, device, display)?;
        }
        checkpoints(&dir)
    };
    let mut rl = Vec::new();
    for (k, run) in first {
        rl.push((run, run_rl_stage((k, run), display)?));
    }

    let sft_runs = study.sft_runs();
    let mut sft = Vec::new();
    let mut warnings = Vec::new();
    for (k, run) in sft_runs.iter().enumerate() {
        let dir = run.config.run_dir();
        let title = format!(
            "SFT branch (from the Init, checkpoints at the RL branch's compute){}",
            which(k, sft_runs.len(), run)
        );
        stage(display, 3, &title, &dir);
        // Checkpointed at the compute of the RL run of the same seed.
        let matched = &rl
            .iter()
            .find(|(r, _)| r.seed == run.seed)
            .unwrap_or(&rl[0])
            .1;
        let mut config = run.config.clone();
        config.train.checkpoint_flops = matched.iter().map(|c| c.flops).collect();
        if let Some((_, self_sft)) = study.self_sft.iter().find(|(arm, _)| *arm == run.arm)
            && !config.data.path.exists()
        {
            let ModelConfig::Pretrained { path: start, .. } = &config.model else {
                return Err(EvalError::Invalid(format!(
                    "the self-SFT arm `{}` starts from no checkpoint",
                    run.arm
                )));
            };
            let kept = (hooks.self_sft)(start, self_sft, &config.data.path)?;
            display.line(&format!(
                "self-SFT data: {} of {} episodes of {} solved → {}",
                kept.kept,
                kept.episodes,
                start.display(),
                config.data.path.display()
            ));
        }
        if !finished(&dir) {
            run_sft::<A>(&config, true, device, display)?;
        }
        let saved = checkpoints(&dir)?;
        if let (Some(r), Some(s)) = (matched.last(), saved.last())
            && s.flops < 0.95 * r.flops
        {
            warnings.push(format!(
                "the SFT run `{}`'s data ran out at {:.3e} FLOPs, short of the RL branch's \
                 {:.3e}: its last checkpoint is compared at less compute (add examples or \
                 epochs to [sft])",
                run.config.name, s.flops, r.flops
            ));
        }
        sft.push((run, saved));
    }
    for (k, run) in distilled {
        rl.push((run, run_rl_stage((k, run), display)?));
    }

    stage(
        display,
        4,
        "evaluation of every checkpoint",
        &study.dir.join("evals"),
    );
    let init_point = Planned {
        branch: Branch::Init,
        arm: "init".into(),
        run: "init".into(),
        seed: study.init.seed,
        saved: Saved {
            step: init.as_ref().map_or(0, |c| c.step),
            optimizer_steps: init.as_ref().map_or(0, |c| c.optimizer_steps),
            flops: 0.0,
            model: init_dir.join("final"),
        },
    };
    let mut planned = vec![init_point];
    let branches = rl
        .into_iter()
        .map(|(run, saved)| (Branch::Rl, &run.arm, run.seed, &run.config.name, saved))
        .chain(
            sft.into_iter()
                .map(|(run, saved)| (Branch::Sft, &run.arm, run.seed, &run.config.name, saved)),
        );
    for (branch, arm, seed, name, saved) in branches {
        planned.extend(saved.into_iter().map(|saved| Planned {
            branch,
            arm: arm.clone(),
            run: name.clone(),
            seed,
            saved,
        }));
    }
    let e = &study.eval;
    let per_point = e.total_episodes();
    let total = planned.len() * per_point;
    let mut points = Vec::with_capacity(planned.len());
    for (i, planned) in planned.into_iter().enumerate() {
        let Planned {
            branch,
            arm,
            run,
            seed,
            saved,
        } = planned;
        let eval_dir = study.dir.join("evals").join(match branch {
            Branch::Init => "init".to_string(),
            _ => format!("{run}-step-{:06}", saved.step),
        });
        let flops = init_flops + saved.flops;
        let mut done = i * per_point;
        let results = evaluate_checkpoint(
            &saved.model,
            &eval_dir,
            e,
            json!({ "branch": branch, "run": run, "step": saved.step, "flops": flops }),
            &mut *hooks.evaluate,
            &mut |n| {
                done += n;
                display.progress(done, total);
            },
        )?;
        let kl_from_init = match (study.kl_prompts, branch) {
            (0, _) => None,
            // The Init's KL from itself.
            (_, Branch::Init) => Some(0.0),
            (prompts, _) => Some(measure_kl(
                &saved.model,
                &eval_dir,
                prompts,
                &mut *hooks.kl_from_init,
            )?),
        };
        display.line(&format!(
            "{run} step {} ({:.4} GFLOPs): {}",
            saved.step,
            flops / 1e9,
            results
                .iter()
                .map(|r| format!(
                    "{} {:.1}% ± {:.1}{}",
                    r.variant.name(),
                    100.0 * r.success_rate,
                    100.0 * r.std_error,
                    r.step_accuracy.map_or(String::new(), |a| format!(
                        " (per step {:.1}% ± {:.1})",
                        100.0 * a.rate,
                        100.0 * a.std_error
                    ))
                ))
                .collect::<Vec<_>>()
                .join(", ")
                + &kl_from_init.map_or(String::new(), |k| format!(", KL from the Init {k:.4}"))
        ));
        points.push(Point {
            branch,
            arm,
            run,
            seed,
            step: saved.step,
            optimizer_steps: saved.optimizer_steps,
            flops,
            model: saved.model,
            eval_dir,
            results,
            kl_from_init,
        });
    }
    for w in &warnings {
        display.line(&format!("warning: {w}"));
    }
    let report = write_study_report(study, &points, &warnings)?;
    Ok(StudyOutcome {
        points,
        report,
        warnings,
    })
}

/// Generates the study's navigation world into `dir` unless an earlier run finished it (a
/// cut-short generation is started again).
fn ensure_world(
    spec: &WorldSpec,
    dir: &Path,
    display: &mut dyn RunDisplay,
) -> Result<(), EvalError> {
    if dir.exists() {
        return Ok(());
    }
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| TrainError::io(&partial, e))?;
    }
    let summary = world::generate(spec, &partial).map_err(|e| EvalError::Invalid(e.to_string()))?;
    std::fs::rename(&partial, dir).map_err(|e| TrainError::io(dir, e))?;
    display.line(&format!(
        "world: {} routes in the city {} ({} landmarks), {} panoramas → {}",
        summary.routes,
        summary.city,
        summary.landmarks,
        summary.panoramas,
        dir.display()
    ));
    Ok(())
}

fn stage(display: &mut dyn RunDisplay, index: usize, title: &str, dir: &Path) {
    display.line(&format!("[{index}/{STAGES}] {title} → {}", dir.display()));
    display.progress(0, 0);
}

/// Whether a run has exported its final model.
fn finished(run_dir: &Path) -> bool {
    finished_model(&run_dir.join("final"))
}

/// Whether a model folder is complete.
fn finished_model(dir: &Path) -> bool {
    dir.join("config.json").exists()
}

/// A checkpoint's KL from the Init: read back from `eval_dir/kl.json` when an earlier (resumed)
/// study measured it on as many prompts, else measured and written there.
fn measure_kl(
    model_dir: &Path,
    eval_dir: &Path,
    prompts: usize,
    meter: &mut KlMeter<'_>,
) -> Result<f64, EvalError> {
    let path = eval_dir.join("kl.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(saved) = serde_json::from_str::<serde_json::Value>(&text)
        && saved["prompts"].as_u64() == Some(prompts as u64)
        && let Some(kl) = saved["kl_from_init"].as_f64()
    {
        return Ok(kl);
    }
    let kl = meter(model_dir)?;
    if !kl.is_finite() {
        return Err(EvalError::Invalid(format!(
            "{}: the KL from the Init is not finite ({kl})",
            model_dir.display()
        )));
    }
    let text = json!({ "kl_from_init": kl, "prompts": prompts, "checkpoint": model_dir });
    durable::write_file(&path, text.to_string())?;
    Ok(kl)
}

/// A checkpoint to evaluate, with the run it belongs to.
struct Planned {
    branch: Branch,
    arm: String,
    run: String,
    seed: u64,
    saved: Saved,
}

/// ` (seed 1, 2 of 3)`: which of a branch's `n` runs the `k`-th is, when there are several.
fn which<C>(k: usize, n: usize, run: &BranchRun<C>) -> String {
    match n {
        1 => String::new(),
        _ => format!(" — `{}`, seed {} ({} of {n})", run.arm, run.seed, k + 1),
    }
}

/// A run's checkpoint as the study uses it.
struct Saved {
    step: usize,
    /// Optimizer steps taken by then (an RL update takes several).
    optimizer_steps: usize,
    /// The run's own training compute at the checkpoint.
    flops: f64,
    /// Its exported model.
    model: PathBuf,
}

/// Every checkpoint of a run with its compute (`state.json`) and exported model.
fn checkpoints(run_dir: &Path) -> Result<Vec<Saved>, EvalError> {
    let mut saved = Vec::new();
    for (step, dir) in checkpoint::all(run_dir)? {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let state: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))?;
        let flops = state["flops"]
            .as_f64()
            .ok_or_else(|| EvalError::Invalid(format!("{}: no `flops` number", path.display())))?;
        // RL progress counts optimizer steps apart from updates; SFT's steps are its own.
        let optimizer_steps = state
            .get("optimizer_steps")
            .map_or(Some(step as u64), serde_json::Value::as_u64)
            .ok_or_else(|| {
                EvalError::Invalid(format!(
                    "{}: `optimizer_steps` is not a count",
                    path.display()
                ))
            })? as usize;
        saved.push(Saved {
            step,
            optimizer_steps,
            flops,
            model: checkpoint::exported(&dir),
        });
    }
    Ok(saved)
}

/// The results of one checkpoint: read back from `eval_dir/eval.json` when an earlier (resumed)
/// study wrote it, else measured and written there.
fn evaluate_checkpoint(
    model_dir: &Path,
    eval_dir: &Path,
    config: &EvalConfig,
    about: serde_json::Value,
    evaluator: &mut Evaluator<'_>,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<VariantResult>, EvalError> {
    let json_path = eval_dir.join("eval.json");
    if json_path.exists() {
        let text =
            std::fs::read_to_string(&json_path).map_err(|e| TrainError::io(&json_path, e))?;
        let saved: SavedEval = serde_json::from_str(&text)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", json_path.display())))?;
        if saved.about.config == *config {
            progress(saved.results.iter().map(|r| r.episodes).sum());
            return Ok(saved.results);
        }
    }
    let report = evaluator(model_dir, config, progress)?;
    let mut about = about;
    about["checkpoint"] = json!(model_dir);
    about["config"] = json!(config);
    write_report(&report, about, eval_dir)?;
    Ok(report.results)
}

/// The part of `eval.json` a resumed study reads back.
#[derive(Deserialize)]
struct SavedEval {
    about: SavedAbout,
    results: Vec<VariantResult>,
}

#[derive(Deserialize)]
struct SavedAbout {
    config: EvalConfig,
}
