//! End-to-end SFT runs on a tiny model (CPU backend): an interrupted and resumed run ends with
//! the same weights as an uninterrupted one; a run refuses to overwrite checkpoints; a
//! diverging run stops at the first non-finite loss and keeps its last good checkpoint.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_training::{RunConfig, SftConfig, SftError, run_sft};

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
    config_with(
        dir,
        name,
        max_steps,
        "lr = 1e-2\ngrad_clip_norm = 1.0\nwarmup_ratio = 0.2\ncheckpoint_every = 2",
    )
}

fn config_with(dir: &Path, name: &str, max_steps: Option<usize>, optim: &str) -> SftConfig {
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
"#,
        runs = dir.join("runs").display(),
        data = data.display(),
    );
    SftConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let dir = scratch("resume");
    let device = Default::default();
    let mut quiet = |_: &str| {};

    let full = run_sft::<A>(&config(&dir, "full", None), false, &device, &mut quiet).unwrap();
    // 22 training examples, global batch 8: 3 steps per epoch, 6 in all.
    assert_eq!(full.progress.step, 6);

    let cut = run_sft::<A>(&config(&dir, "cut", Some(4)), false, &device, &mut quiet).unwrap();
    assert_eq!(cut.progress.step, 4);
    let resumed = run_sft::<A>(&config(&dir, "cut", None), true, &device, &mut quiet).unwrap();
    assert_eq!(resumed.progress, full.progress);

    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&resumed.final_dir), weights(&full.final_dir));
    assert_ne!(weights(&resumed.final_dir), {
        let early = run_sft::<A>(&config(&dir, "early", Some(3)), false, &device, &mut quiet);
        weights(&early.unwrap().final_dir)
    });

    // Across the interruption, every step is logged exactly once.
    let metrics = std::fs::read_to_string(dir.join("runs/cut/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
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
    );
    let e = run_sft::<A>(&cfg, false, &device, &mut quiet).unwrap_err();
    let SftError::NonFinite { step, .. } = e else {
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
