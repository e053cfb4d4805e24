//! `sftvsrl sft … --local-workers 2`: two SFT worker processes, each running half of every
//! optimizer step's micro-batches and summing gradients through burn-collective's orchestrator
//! over loopback, end with the weights of the one-process run (within 1e-5) and its validation
//! loss; worker flags are checked as for RL.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_files, fails, ok, scratch, sftvsrl};
use sftvsrl_model::safetensors::SafetensorsDir;

/// A tiny from-scratch SFT run under `dir`: 4 micro-batches of 4 examples per optimizer step,
/// 3 steps, a validation split, logged every step.
fn write_config(dir: &Path) -> PathBuf {
    write_config_with(dir, DEFAULT_TRAIN)
}

/// The `train` settings of [`write_config`].
const DEFAULT_TRAIN: &str = "max_steps = 3, lr = 1e-2, checkpoint_every = 100";

/// [`write_config`] with other `train` settings.
fn write_config_with(dir: &Path, train: &str) -> PathBuf {
    let text = format!(
        r#"name = "sft-workers"
runs_dir = "{runs}"
data = {{ path = "{data}", valid_fraction = 0.1, generate = {{ n = 80, seed = 0 }} }}
model = {{ init = "scratch", hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 }}
train = {{ epochs = 1, micro_batch = 4, grad_accum = 4, log_every = 1, max_grad_norm = 0.5, {train} }}
"#,
        runs = dir.join("runs").display(),
        data = dir.join("data/data.jsonl").display()
    );
    let path = dir.join("sft.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every tensor of a run's final model, by name.
fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    assert_files(
        run,
        &["config.toml", "metrics.jsonl", "final/model.safetensors"],
    );
    let st = SafetensorsDir::open(&run.join("final")).unwrap();
    let mut names: Vec<String> = st.names().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let values = st.read_f32(&n).unwrap().0;
            (n, values)
        })
        .collect()
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(
        a.iter().map(|t| &t.0).collect::<Vec<_>>(),
        b.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.1.iter().zip(&y.1).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// The last line of a run's metrics with `"split": split`.
fn last_metrics(run: &Path, split: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["split"] == split)
        .unwrap()
}

#[test]
fn two_sft_workers_train_the_weights_of_one() {
    let dir = scratch("sft-workers");
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    ok(&["sft", write_config(&alone).to_str().unwrap()], "");
    let one = weights(&alone.join("runs/sft-workers"));

    let two = dir.join("two");
    let out = two_workers(&two, DEFAULT_TRAIN, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("over 2 workers (this is worker 1)"),
        "{stderr}"
    );
    let runs = two.join("runs");
    let (w0, w1) = (
        weights(&runs.join("sft-workers")),
        weights(&runs.join("sft-workers.rank-1")),
    );
    assert!(w0 == w1, "the workers' weights differ");
    let difference = max_difference(&w0, &one);
    assert!(difference <= 1e-5, "two workers vs one: {difference}");
    // The logged loss and validation are the whole step's and the whole split's.
    for split in ["train", "valid"] {
        let (a, b) = (
            last_metrics(&alone.join("runs/sft-workers"), split),
            last_metrics(&runs.join("sft-workers"), split),
        );
        let (la, lb) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        assert!(
            (la - lb).abs() <= 1e-4 * la.abs(),
            "{split} loss {la} vs {lb}"
        );
        assert_eq!(a["tokens"], b["tokens"], "{split}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two launched workers of the run under `dir` with `train` settings (and `--resume`).
fn two_workers(dir: &Path, train: &str, resume: bool) -> std::process::Output {
    std::fs::create_dir_all(dir).unwrap();
    let config = write_config_with(dir, train);
    let mut args = vec!["sft", config.to_str().unwrap(), "--local-workers", "2"];
    if resume {
        args.push("--resume");
    }
    let out = sftvsrl(&args, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two workers stopped after 2 steps and resumed to 3 end where the uninterrupted pair does.
#[test]
fn sft_workers_resume_where_they_stopped() {
    let dir = scratch("sft-workers-resume");
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    two_workers(
        &straight,
        "max_steps = 3, lr = 1e-2, checkpoint_every = 1",
        false,
    );
    two_workers(
        &resumed,
        "max_steps = 2, lr = 1e-2, checkpoint_every = 1",
        false,
    );
    let out = two_workers(
        &resumed,
        "max_steps = 3, lr = 1e-2, checkpoint_every = 1",
        true,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (rank, run) in [(0, "sft-workers"), (1, "sft-workers.rank-1")] {
        let line = format!("[worker {rank}] resumed from ");
        let at = format!("{run}/checkpoints/step-000002");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&line) && l.contains(&at)),
            "{stderr}"
        );
    }
    let (a, b) = (
        weights(&straight.join("runs/sft-workers")),
        weights(&resumed.join("runs/sft-workers")),
    );
    assert!(a == b, "the resumed workers end elsewhere");
    assert!(b == weights(&resumed.join("runs/sft-workers.rank-1")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A non-finite loss stops both workers at the same step, each saying so.
#[test]
fn a_non_finite_loss_stops_every_sft_worker() {
    let dir = scratch("sft-workers-diverge");
    let config = write_config_with(&dir, "lr = 1e30, warmup_ratio = 0.0, checkpoint_every = 1");
    let out = sftvsrl(
        &["sft", config.to_str().unwrap(), "--local-workers", "2"],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let steps: Vec<&str> = (0..2)
        .map(|rank| {
            let line = stderr
                .lines()
                .find(|l| l.starts_with(&format!("[worker {rank}] error: ")))
                .unwrap_or_else(|| panic!("worker {rank} gives no error: {stderr}"));
            assert!(line.contains("the loss became"), "{line}");
            line.split(" at step ")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(steps[0], steps[1], "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sft_worker_flags_are_checked() {
    let dir = scratch("sft-workers-flags");
    let config = write_config(&dir);
    let config = config.to_str().unwrap();
    let err = fails(&["sft", config, "--world-size", "2"], "");
    assert!(err.contains("--orchestrator and --address"), "{err}");
    let err = fails(&["sft", config, "--local-workers", "1"], "");
    assert!(err.contains("a run of its own"), "{err}");
    let out = sftvsrl(
        &[
            "sft",
            config,
            "--devices",
            "cpu,cpu",
            "--local-workers",
            "2",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
