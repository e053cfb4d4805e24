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
    let study = match &args.config {
        Some(path) => Study::from_file(path)?,
        None => {
            let (text, origin) = args.task.study();
            Study::from_toml(text, Path::new(origin))?
        }
    };
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
