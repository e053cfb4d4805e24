//! End-to-end SFT runs on a tiny model (CPU backend): SFT lowers the loss and raises the
//! answer match; an interrupted and resumed run ends with the same weights as an
//! uninterrupted one, with full fine-tuning and with LoRA; a run refuses to overwrite
//! checkpoints; a diverging run stops at the first non-finite loss and keeps its last good
//! checkpoint; FLOPs marks place exported checkpoints and end the run.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_training::{RunConfig, RunDisplay, SftConfig, TrainError, run_sft};

type A = Autodiff<CpuBackend>;

/// A fresh folder under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("sft-{name}"))
}

/// 24 one-line sums as chat JSONL.
fn write_data(dir: &Path) -> PathBuf {
    let words = ["zero", "one", "two", "three", "four", "five", "six"];
    let mut text = String::new();
    for i in 0..24 {
        let (a, b) = (i % 4, i / 4 % 3);
        text.push_str(&format!(
            r#"{{"messages":[{{"role":"user","content":"what is {} plus {}"}},{{"role":"assistant","content":"{}"}}]}}"#,
            words[a],
            words[b],
            words[a + b]
        ));
        text.push('\n');
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(dir: &Path, name: &str, max_steps: Option<usize>) -> SftConfig {
    config_with(dir, name, max_steps, OPTIM, "")
}

const OPTIM: &str = "lr = 1e-2\nmax_grad_norm = 1.0\nlr_schedule = \"cosine\"\nwarmup_ratio = 0.2\ncheckpoint_every = 2";

/// The test run's config: `optim` goes into `[train]`, `sections` after it.
fn config_with(
    dir: &Path,
    name: &str,
    max_steps: Option<usize>,
    optim: &str,
    sections: &str,
) -> SftConfig {
    let data = write_data(dir);
    let max = max_steps.map_or(String::new(), |m| format!("max_steps = {m}"));
    let text = format!(
        r#"
name = "{name}"
runs_dir = "{runs}"
seed = 3
[data]
path = "{data}"
valid_fraction = 0.1
[model]
init = "scratch"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[train]
epochs = 2
micro_batch = 4
grad_accum = 2
{optim}
{max}
{sections}
"#,
        runs = dir.join("runs").display(),
        data = data.display(),
    );
    SftConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

/// The training lines of run `name`'s metrics.jsonl.
fn train_lines(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    let path = dir.join("runs").join(name).join("metrics.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .collect()
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    check_resume("resume", "");
}

#[test]
fn resumed_lora_run_matches_uninterrupted_run() {
    check_resume(
        "resume-lora",
        "[lora]\nrank = 2\nalpha = 4.0\ntargets = [\"q_proj\", \"v_proj\", \"up_proj\"]",
    );
}

/// A run cut after 4 of its 6 steps and resumed ends with the same weights and metrics as an
/// uninterrupted one (with the config sections `sections`, e.g. `[lora]`).
fn check_resume(test: &str, sections: &str) {
    let dir = scratch(test);
    let device = Default::default();
    let mut quiet = |_: &str| {};
    let config = |name: &str, max_steps| config_with(&dir, name, max_steps, OPTIM, sections);

    let full = run_sft::<A>(&config("full", None), false, &device, &mut quiet).unwrap();
    // 22 training examples, global batch 8: 3 steps per epoch, 6 in all.
    assert_eq!(full.progress.step, 6);

    let cut = run_sft::<A>(&config("cut", Some(4)), false, &device, &mut quiet).unwrap();
    assert_eq!(cut.progress.step, 4);
    let resumed = run_sft::<A>(&config("cut", None), true, &device, &mut quiet).unwrap();
    assert_eq!(resumed.progress, full.progress);

    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&resumed.final_dir), weights(&full.final_dir));
    assert_ne!(weights(&resumed.final_dir), {
        let early = run_sft::<A>(&config("early", Some(3)), false, &device, &mut quiet);
        weights(&early.unwrap().final_dir)
    });

    // Across the interruption, every step is logged exactly once.
    let steps: Vec<u64> = train_lines(&dir, "cut")
        .iter()
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_to_overwrite_and_reports_compute() {
    let dir = scratch("overwrite");
    let device = Default::default();
    let mut quiet = |_: &str| {};
    let cfg = config(&dir, "once", Some(2));
    let s = run_sft::<A>(&cfg, false, &device, &mut quiet).unwrap();
    assert!(s.progress.tokens > 0);
    let valid = s.valid.unwrap();
    assert_eq!(valid.sequences, 2);
    assert!(valid.loss().is_finite());
    let e = run_sft::<A>(&cfg, false, &device, &mut quiet).unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    assert!(dir.join("runs/once/config.toml").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = scratch("diverge");
    let device = Default::default();
    let mut quiet = |_: &str| {};
    // A learning rate of 1e30 blows the weights up at the first update.
    let cfg = config_with(
        &dir,
        "diverge",
        None,
        "lr = 1e30\nwarmup_ratio = 0.0\ncheckpoint_every = 1",
        "",
    );
    let e = run_sft::<A>(&cfg, false, &device, &mut quiet).unwrap_err();
    let TrainError::NonFinite { step, .. } = e else {
        panic!("expected a non-finite loss, got {e}");
    };
    assert!(step >= 2, "the first step starts from finite weights");
    let mut checkpoints: Vec<String> = std::fs::read_dir(dir.join("runs/diverge/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    checkpoints.sort();
    let expected: Vec<String> = (1..step).map(|s| format!("step-{s:06}")).collect();
    assert_eq!(checkpoints, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A display that asks to stop once it has seen `after` training steps.
struct StopAfter {
    after: usize,
    seen: usize,
}

impl RunDisplay for StopAfter {
    fn line(&mut self, _: &str) {}

    fn metrics(&mut self, valid: bool, step: usize, _: usize, _: &[(&str, f64)]) {
        if !valid {
            self.seen = step;
        }
    }

    fn stop_requested(&self) -> bool {
        self.seen >= self.after
    }
}

#[test]
fn a_stop_request_checkpoints_and_the_run_resumes_to_the_same_weights() {
    let dir = scratch("stop");
    let device = Default::default();
    let mut quiet = |_: &str| {};
    let full = run_sft::<A>(&config(&dir, "full", None), false, &device, &mut quiet).unwrap();

    // Step 3 is not a checkpoint step (every 2), so the stop writes one of its own.
    let mut stop = StopAfter { after: 3, seen: 0 };
    let err = run_sft::<A>(&config(&dir, "stopped", None), false, &device, &mut stop).unwrap_err();
    let TrainError::Stopped { step, checkpoint } = err else {
        panic!("expected a stop, got {err}");
    };
    assert_eq!(step, 3);
    assert!(
        checkpoint.ends_with("step-000003"),
        "{}",
        checkpoint.display()
    );

    let resumed = run_sft::<A>(&config(&dir, "stopped", None), true, &device, &mut quiet).unwrap();
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&resumed.final_dir), weights(&full.final_dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flops_marks_place_exported_checkpoints_and_end_the_run() {
    let dir = scratch("flops");
    let device = Default::default();
    let mut quiet = |_: &str| {};
    let optim = "lr = 1e-2\ncheckpoint_every = 100";
    let full = config_with(&dir, "full", None, optim, "");
    run_sft::<A>(&full, false, &device, &mut quiet).unwrap();
    let flops: Vec<f64> = train_lines(&dir, "full")
        .iter()
        .map(|v| v["flops"].as_f64().unwrap())
        .collect();
    assert_eq!(flops.len(), 6);

    // Just above step 1's compute, and exactly step 4's: checkpoints at steps 2 and 4, then stop.
    let marks = format!(
        "{optim}\ncheckpoint_flops = [{:?}, {:?}]\nexport_checkpoints = true",
        flops[0] + 1.0,
        flops[3]
    );
    let cfg = config_with(&dir, "marked", None, &marks, "");
    let s = run_sft::<A>(&cfg, false, &device, &mut quiet).unwrap();
    assert_eq!(s.progress.step, 4);
    assert_eq!(s.progress.flops, flops[3]);
    let saved = sftvsrl_training::checkpoint::all(&dir.join("runs/marked")).unwrap();
    let steps: Vec<usize> = saved.iter().map(|(step, _)| *step).collect();
    assert_eq!(steps, [2, 4]);
    for (_, checkpoint) in &saved {
        let hf = sftvsrl_training::checkpoint::exported(checkpoint);
        assert!(hf.join("model.safetensors").exists() && hf.join("tokenizer.json").exists());
    }
    // The last export is the final model.
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    let last = sftvsrl_training::checkpoint::exported(&saved[1].1);
    assert_eq!(weights(&last), weights(&s.final_dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SFT learns: on the twelve sums, each written four times (so the held-out lines are sums the
/// training split also holds), the training loss falls and the greedy answers to the held-out
/// prompts go from wrong to right.
#[test]
fn sft_lowers_the_loss_and_raises_the_answer_match() {
    let dir = scratch("learns");
    let mut config = config(&dir, "learns", None);
    let once = std::fs::read_to_string(&config.data.path).unwrap();
    let sums: String = once.lines().take(12).map(|l| format!("{l}\n")).collect();
    let data = dir.join("sums.jsonl");
    std::fs::write(&data, sums.repeat(4)).unwrap();
    config.data.path = data;
    config.data.valid_fraction = 0.25;
    config.train.epochs = 80;
    config.train.checkpoint_every = 6;
    config.train.answer_match = 12;
    let summary = run_sft::<A>(&config, false, &Default::default(), &mut |_: &str| {}).unwrap();
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(summary.run_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let of = |split: &str, key: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|v| v["split"] == split)
            .map(|v| v[key].as_f64().unwrap())
            .collect()
    };
    let (loss, matched) = (of("train", "loss"), of("valid", "answer_match"));
    assert!(
        *loss.last().unwrap() < 0.2 * loss[0],
        "training loss {loss:?}"
    );
    assert!(
        matched[0] <= 0.25,
        "answer match after 6 steps: {matched:?}"
    );
    assert!(
        *matched.last().unwrap() >= 0.9,
        "answer match at the end: {matched:?}"
    );
}

/// `train.loss = "dft"` trains with the DFT loss: from the same start, the first step logs the
/// same NLL, and the losses after the first update differ from an NLL run's.
#[test]
fn the_dft_loss_changes_the_updates() {
    let dir = scratch("dft");
    let mut display = |_: &str| {};
    for (name, loss) in [("nll", "nll"), ("dft", "dft")] {
        let optim = format!("{OPTIM}\nlog_every = 1\nloss = \"{loss}\"");
        let c = config_with(&dir, name, Some(4), &optim, "");
        run_sft::<Autodiff<CpuBackend>>(&c, false, &Default::default(), &mut display).unwrap();
    }
    let losses = |name| -> Vec<f64> {
        train_lines(&dir, name)
            .iter()
            .map(|v| v["loss"].as_f64().unwrap())
            .collect()
    };
    let (nll, dft) = (losses("nll"), losses("dft"));
    assert_eq!(nll.len(), 4);
    assert_eq!(nll[0], dft[0], "the same start");
    // The warm-up's first step runs at learning rate 0; the updates after it differ.
    assert!(
        nll[2..].iter().zip(&dft[2..]).all(|(a, b)| a != b),
        "{nll:?} vs {dft:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
