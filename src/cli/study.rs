//! `sftvsrl study [CONFIG | --task …] [--resume] [--device …]`: the SFT-versus-RL comparison,
//! Init to report, in one command. Without a config it runs the embedded tiny study of a task:
//! `config/study/gp-l-tiny.toml` unless `--task` names another.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use clap::{Args, ValueEnum};
use sftvsrl_eval::{Study, StudyOutcome, run_study};
use sftvsrl_model::device::{Backend, DeviceKind, OnBackend, run_on};
use sftvsrl_training::RunDisplay;

/// The tasks with a built-in study: a tiny model from scratch, on a laptop CPU in minutes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Task {
    /// GeneralPoints, text (config/study/gp-l-tiny.toml)
    GpL,
    /// GeneralPoints, vision (config/study/gp-vl-tiny.toml)
    GpVl,
    /// V-IRL navigation, text (config/study/virl-l-tiny.toml)
    VirlL,
    /// V-IRL navigation, street views (config/study/virl-vl-tiny.toml)
    VirlVl,
}

impl Task {
    /// The embedded study TOML and where it came from.
    fn study(self) -> (&'static str, &'static str) {
        match self {
            Task::GpL => (
                include_str!("../../config/study/gp-l-tiny.toml"),
                "config/study/gp-l-tiny.toml (built in)",
            ),
            Task::GpVl => (
                include_str!("../../config/study/gp-vl-tiny.toml"),
                "config/study/gp-vl-tiny.toml (built in)",
            ),
            Task::VirlL => (
                include_str!("../../config/study/virl-l-tiny.toml"),
                "config/study/virl-l-tiny.toml (built in)",
            ),
            Task::VirlVl => (
                include_str!("../../config/study/virl-vl-tiny.toml"),
                "config/study/virl-vl-tiny.toml (built in)",
            ),
        }
    }
}

#[derive(Args)]
pub struct StudyArgs {
    /// The study TOML (see config/study/); without it, the built-in tiny study of `--task`.
    #[arg(conflicts_with = "task")]
    config: Option<PathBuf>,
    /// The task whose built-in tiny study runs when no config is given.
    #[arg(long, value_enum, default_value = "gp-l")]
    task: Task,
    /// Continue an interrupted study: finished stages and evaluations are reused, and a stage
    /// cut short resumes from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Where to train and evaluate: cpu (Flex), ndarray, wgpu, cuda.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// The full sweep: every branch at seeds 0, 1 and 2, and the SFT branch at learning rates
    /// 1e-4, 3e-4 and 1e-3 (each its own column), written to `<name>-full/`; GeneralPoints
    /// text studies are also evaluated on a rule new in every part (J, Q, K all 5). Refused
    /// when the config sets `seeds` or `sft_lrs` itself.
    #[arg(long)]
    full: bool,
    /// The verification-iteration ablation (paper §5.5, Fig. 10): the RL branch also runs with
    /// each of these `rl.gp.verify_iter` values, each an arm `verify-iter-<k>` with its own
    /// column and curve, in `<name>-verify-iters/`; e.g. `--verify-iters 1,3,10` beside the
    /// default study's 5.
    #[arg(long, value_delimiter = ',')]
    verify_iters: Vec<u32>,
    /// The two data arms of "Debunk the Myth of SFT Generalization": the SFT branch on its own
    /// data in another style, chain of thought (`cot`: the arithmetic, or for navigation the
    /// route reasoning, before the answer) and diverse prompts (`diverse`: 4 wordings of the
    /// task), each an arm with its own column and curve, in `<name>-data-arms/`; evaluation
    /// then lets answers run to 96 new tokens at least.
    #[arg(long)]
    data_arms: bool,
}

/// The seeds and SFT learning rates of `--full`.
const FULL_SEEDS: [u64; 3] = [0, 1, 2];
const FULL_SFT_LRS: [f64; 3] = [1e-4, 3e-4, 1e-3];
/// The evaluation variant `--full` adds to GeneralPoints text studies: J, Q, K all 5.
const FULL_NEW_RULE: &str = "gp-l-ood-face5";

/// The study TOML `text` with `--full`'s sweep: `seeds`, `sft_lrs` and `-full` after `name`.
fn full_sweep(text: &str, origin: &str) -> Result<String> {
    edit_study(text, origin, "full", |table| {
        for key in ["seeds", "sft_lrs"] {
            if table.contains_key(key) {
                anyhow::bail!("--full sets `{key}`, and {origin} sets it already");
            }
        }
        table.insert("seeds".into(), FULL_SEEDS.map(|s| s as i64).to_vec().into());
        table.insert("sft_lrs".into(), FULL_SFT_LRS.to_vec().into());
        // GeneralPoints text studies also test a rule new in every part.
        let variants = table
            .get_mut("eval")
            .and_then(|e| e.get_mut("variants"))
            .and_then(|v| v.as_array_mut());
        if let Some(variants) = variants
            && variants.iter().any(|v| v.as_str() == Some("gp-l-ood-rule"))
            && !variants.iter().any(|v| v.as_str() == Some(FULL_NEW_RULE))
        {
            variants.push(FULL_NEW_RULE.into());
        }
        Ok(())
    })
}

/// The study TOML `text` with an RL arm `verify-iter-<k>` for each `k` of `--verify-iters`
/// and `-verify-iters` after `name`.
fn verify_iter_arms(text: &str, origin: &str, iters: &[u32]) -> Result<String> {
    edit_study(text, origin, "verify-iters", |table| {
        let arms = table
            .entry("arms")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .with_context(|| format!("{origin}: `arms` must be a table"))?;
        for &k in iters {
            let name = format!("verify-iter-{k}");
            if arms.contains_key(&name) {
                anyhow::bail!("--verify-iters adds the arm `{name}`, and {origin} has one");
            }
            let gp = toml::Table::from_iter([("verify_iter".to_string(), i64::from(k).into())]);
            let rl = toml::Table::from_iter([("gp".to_string(), gp.into())]);
            arms.insert(
                name,
                toml::Table::from_iter([("rl".to_string(), rl.into())]).into(),
            );
        }
        Ok(())
    })
}

/// The study TOML `text` with the arms `cot` and `diverse` (the SFT branch's data with
/// `style.chain_of_thought = true` or `style.prompt_variants = 4`) and `-data-arms` after `name`.
fn data_arms(text: &str, origin: &str) -> Result<String> {
    edit_study(text, origin, "data-arms", |table| {
        let data = table.get("sft").and_then(|s| s.get("data"));
        let generator = ["generate", "generate_nav"]
            .into_iter()
            .find(|g| data.is_some_and(|d| d.get(g).is_some()))
            .with_context(|| {
                format!("--data-arms: [sft.data] of {origin} generates no data to restyle")
            })?;
        let arms = table
            .entry("arms")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .with_context(|| format!("{origin}: `arms` must be a table"))?;
        let styles: [(&str, &str, toml::Value); 2] = [
            ("cot", "chain_of_thought", true.into()),
            ("diverse", "prompt_variants", 4.into()),
        ];
        for (name, field, value) in styles {
            if arms.contains_key(name) {
                anyhow::bail!("--data-arms adds the arm `{name}`, and {origin} has one");
            }
            let mut nested = toml::Table::from_iter([(field.to_string(), value)]);
            for key in ["style", generator, "data", "sft"] {
                nested = toml::Table::from_iter([(key.to_string(), nested.into())]);
            }
            arms.insert(name.into(), nested.into());
        }
        // Chain-of-thought answers are longer (up to 79 tokens for GeneralPoints, 51 for
        // V-IRL): evaluation must let them finish.
        let eval = table
            .get_mut("eval")
            .and_then(|e| e.as_table_mut())
            .with_context(|| format!("{origin}: `eval` must be a table"))?;
        let tokens = eval.get("max_new_tokens").and_then(|v| v.as_integer());
        if tokens.is_none_or(|t| t < DATA_ARMS_MAX_NEW_TOKENS) {
            eval.insert("max_new_tokens".into(), DATA_ARMS_MAX_NEW_TOKENS.into());
        }
        Ok(())
    })
}

/// The evaluation's `max_new_tokens` at least, with `--data-arms`.
const DATA_ARMS_MAX_NEW_TOKENS: i64 = 96;

/// Parses `text`, applies `edit` and appends `-<suffix>` to the study's `name`, so that the
/// edited study runs in a folder of its own.
fn edit_study(
    text: &str,
    origin: &str,
    suffix: &str,
    edit: impl FnOnce(&mut toml::Table) -> Result<()>,
) -> Result<String> {
    let mut table: toml::Table =
        toml::from_str(text).with_context(|| format!("reading {origin}"))?;
    edit(&mut table)?;
    let name = table
        .get("name")
        .and_then(|n| n.as_str())
        .with_context(|| format!("{origin}: `name` must be a string"))?;
    table.insert("name".into(), format!("{name}-{suffix}").into());
    Ok(toml::to_string(&table).expect("a TOML table serialises"))
}

struct StudyJob {
    study: Study,
    resume: bool,
}

impl OnBackend for StudyJob {
    type Output = Result<StudyOutcome, sftvsrl_eval::EvalError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let mut display = StudyDisplay::new();
        let outcome = run_study::<Autodiff<B>>(&self.study, self.resume, &device, &mut display);
        display.clear();
        outcome
    }
}

/// `sftvsrl study`.
pub fn run(args: StudyArgs) -> Result<()> {
    let (text, origin) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let (text, origin) = args.task.study();
            (text.to_string(), origin.to_string())
        }
    };
    let text = match args.full {
        true => full_sweep(&text, &origin)?,
        false => text,
    };
    let text = match args.verify_iters.is_empty() {
        true => text,
        false => verify_iter_arms(&text, &origin, &args.verify_iters)?,
    };
    let text = match args.data_arms {
        true => data_arms(&text, &origin)?,
        false => text,
    };
    let study = Study::from_toml(&text, Path::new(&origin))?;
    let name = study.name.clone();
    let job = StudyJob {
        study,
        resume: args.resume,
    };
    let outcome = run_on(args.device, job)?.with_context(|| format!("study `{name}`"))?;
    let report = std::fs::read_to_string(&outcome.report)
        .with_context(|| format!("reading {}", outcome.report.display()))?;
    // The headline table: the report's first table.
    report
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .for_each(|l| println!("{l}"));
    println!("report: {}", outcome.report.display());
    Ok(())
}

/// Log lines as they come, under a live progress bar of the current stage on a terminal; a line
/// every tenth of a stage's work elsewhere.
struct StudyDisplay {
    tty: bool,
    stage: String,
    bar: Option<(usize, usize)>,
    start: Instant,
    reported_tenth: usize,
}

impl StudyDisplay {
    fn new() -> Self {
        StudyDisplay {
            tty: std::io::stderr().is_terminal(),
            stage: String::new(),
            bar: None,
            start: Instant::now(),
            reported_tenth: 0,
        }
    }

    /// Removes the live bar from the terminal.
    fn clear(&mut self) {
        if self.tty && self.bar.is_some() {
            eprint!("\r\x1b[2K");
        }
    }

    fn draw(&mut self) {
        let Some((done, total)) = self.bar else {
            return;
        };
        let elapsed = self.start.elapsed().as_secs();
        let (minutes, seconds) = (elapsed / 60, elapsed % 60);
        if self.tty {
            const WIDTH: usize = 30;
            let filled = (WIDTH * done / total.max(1)).min(WIDTH);
            eprint!(
                "\r\x1b[2K{} ▕{}{}▏ {done}/{total} · {minutes}m{seconds:02}s",
                self.stage,
                "█".repeat(filled),
                " ".repeat(WIDTH - filled)
            );
            let _ = std::io::stderr().flush();
        } else {
            let tenth = 10 * done / total.max(1);
            if tenth > self.reported_tenth {
                self.reported_tenth = tenth;
                eprintln!("{} {done}/{total} · {minutes}m{seconds:02}s", self.stage);
            }
        }
    }
}

impl RunDisplay for StudyDisplay {
    fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
        if let Some(stage) = text.strip_prefix('[').and_then(|t| t.split_once(']')) {
            self.stage = format!("[{}]", stage.0);
        }
        if self.tty {
            self.draw();
        }
    }

    fn metrics(&mut self, valid: bool, step: usize, total: usize, values: &[(&str, f64)]) {
        let values: Vec<String> = values.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let split = if valid { "valid" } else { "train" };
        self.bar = Some((step, total));
        self.line(&format!(
            "{split} step {step}/{total}: {}",
            values.join(", ")
        ));
    }

    fn progress(&mut self, done: usize, total: usize) {
        if total == 0 {
            self.clear();
            self.bar = None;
            self.reported_tenth = 0;
            return;
        }
        self.bar = Some((done, total));
        self.draw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_adds_the_sweep_and_its_own_folder() {
        let (text, origin) = Task::GpL.study();
        let full = Study::from_toml(&full_sweep(text, origin).unwrap(), Path::new(origin)).unwrap();
        let plain = Study::from_toml(text, Path::new(origin)).unwrap();
        assert_eq!(full.seeds.as_deref(), Some(&FULL_SEEDS[..]));
        assert_eq!(full.sft_lrs.as_deref(), Some(&FULL_SFT_LRS[..]));
        assert_eq!(full.name, format!("{}-full", plain.name));
        assert_eq!((full.rl_runs().len(), full.sft_runs().len()), (3, 9));
        let names: Vec<&str> = full.eval.variants.iter().map(|v| v.name()).collect();
        assert_eq!(names.last(), Some(&FULL_NEW_RULE), "{names:?}");
        assert_eq!(names.len(), plain.eval.variants.len() + 1);
        // The same Init, trained in the full study's own folder.
        assert_eq!(full.init.data.generate, plain.init.data.generate);
        assert_eq!(full.init.train, plain.init.train);
        assert!(full.init.runs_dir.ends_with(&full.name));
        let seeded = format!("seeds = [4]\n{text}");
        let e = full_sweep(&seeded, "x.toml").unwrap_err().to_string();
        assert!(e.contains("`seeds`") && e.contains("x.toml"), "{e}");
    }

    #[test]
    fn verify_iters_add_one_rl_arm_each() {
        let (text, origin) = Task::GpL.study();
        let edited = verify_iter_arms(text, origin, &[1, 3, 10]).unwrap();
        let study = Study::from_toml(&edited, Path::new(origin)).unwrap();
        assert!(study.name.ends_with("-verify-iters"), "{}", study.name);
        let iters: std::collections::BTreeSet<(String, u32)> = study
            .rl_runs()
            .iter()
            .map(|r| (r.arm.clone(), r.config.gp.verify_iter))
            .collect();
        let expected = [
            ("rl", 5),
            ("verify-iter-1", 1),
            ("verify-iter-3", 3),
            ("verify-iter-10", 10),
        ];
        assert_eq!(iters, expected.map(|(a, k)| (a.to_string(), k)).into());
        let twice = verify_iter_arms(&edited, origin, &[1])
            .unwrap_err()
            .to_string();
        assert!(twice.contains("verify-iter-1"), "{twice}");
    }

    /// `--data-arms` restyles each built-in study's SFT data, GeneralPoints or navigation, and
    /// the Init's vocabulary covers both arms' data.
    #[test]
    fn data_arms_restyle_the_sft_branchs_data() {
        for task in [Task::GpL, Task::VirlL] {
            let (text, origin) = task.study();
            let edited = data_arms(text, origin).unwrap();
            let study = Study::from_toml(&edited, Path::new(origin)).unwrap();
            assert!(study.name.ends_with("-data-arms"), "{}", study.name);
            let runs = study.sft_runs();
            let arms: Vec<&str> = runs.iter().map(|r| r.arm.as_str()).collect();
            assert_eq!(arms, ["sft", "cot", "diverse"]);
            let sftvsrl_training::ModelConfig::Scratch { vocab_data, .. } = &study.init.model
            else {
                panic!("a from-scratch Init");
            };
            for run in &runs[1..] {
                assert!(vocab_data.contains(&run.config.data.path));
                let data = &run.config.data;
                let (cot, variants) = match (&data.generate, &data.generate_nav) {
                    (Some(g), None) => (g.style.chain_of_thought, g.style.prompt_variants),
                    (None, Some(g)) => (g.style.chain_of_thought, g.style.prompt_variants),
                    _ => panic!("{task:?}: one generator"),
                };
                assert_eq!(
                    (cot, variants),
                    if run.arm == "cot" {
                        (true, 0)
                    } else {
                        (false, 4)
                    }
                );
            }
            assert_eq!(study.eval.max_new_tokens, DATA_ARMS_MAX_NEW_TOKENS as usize);
            let twice = data_arms(&edited, origin).unwrap_err().to_string();
            assert!(twice.contains("`cot`"), "{twice}");
        }
    }
}
