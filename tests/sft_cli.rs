//! `sftvsrl sft` end to end: a tiny run writes its run folder and resumes; bad configs fail
//! with one line naming the field.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_files, fails, ok};

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("sft-cli-{name}"))
}

fn write_config(dir: &Path, extra_train: &str) -> PathBuf {
    let data = dir.join("data/data.jsonl");
    let text = format!(
        r#"name = "tiny"
runs_dir = "{runs}"
[data]
path = "{data}"
valid_fraction = 0.2
max_len = 512
[data.generate]
n = 10
seed = 0
[model]
init = "scratch"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[train]
epochs = 1
micro_batch = 4
lr = 1e-3
checkpoint_every = 1
{extra_train}
"#,
        runs = dir.join("runs").display(),
        data = data.display()
    );
    let path = dir.join("sft.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn tiny_run_writes_its_folder_and_resumes() {
    let dir = scratch("run");
    let config = write_config(&dir, "max_steps = 1");
    let out = ok(&["sft", config.to_str().unwrap()], "");
    assert!(out.contains("trained 1 steps"), "{out}");
    let run = dir.join("runs/tiny");
    assert_files(
        &run,
        &[
            "config.toml",
            "metrics.jsonl",
            "checkpoints/step-000001/state.json",
            "final/model.safetensors",
        ],
    );
    assert!(fails(&["sft", config.to_str().unwrap()], "").contains("--resume"));
    // A changed model shape is refused before anything is loaded, naming the field, and the
    // run's own config is kept.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("hidden_size = 16", "hidden_size = 32"),
    )
    .unwrap();
    let err = fails(&["sft", config.to_str().unwrap(), "--resume"], "");
    assert!(
        err.contains("config.toml") && err.contains("`model.hidden_size` = 32"),
        "{err}"
    );
    let lora = format!("{text}[lora]\nrank = 2\nalpha = 2.0\n");
    std::fs::write(&config, lora).unwrap();
    let err = fails(&["sft", config.to_str().unwrap(), "--resume"], "");
    assert!(err.contains("`lora`"), "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).unwrap(),
        saved
    );
    // An edited data file gives a from-scratch model another vocabulary: refused by name.
    std::fs::write(&config, &text).unwrap();
    let data = dir.join("data/data.jsonl");
    let original = std::fs::read_to_string(&data).unwrap();
    let edited = original.replacen("\"content\":\"", "\"content\":\"zebra ", 1);
    assert_ne!(edited, original);
    std::fs::write(&data, edited).unwrap();
    let err = fails(&["sft", config.to_str().unwrap(), "--resume"], "");
    assert!(
        err.contains("tokenizer.json") && err.contains("data file"),
        "{err}"
    );
    std::fs::write(&data, original).unwrap();
    // Resuming without the step limit finishes the epoch (8 training examples, 2 steps).
    let config = write_config(&dir, "");
    let out = ok(
        &[
            "sft",
            config.to_str().unwrap(),
            "--resume",
            "--device",
            "ndarray",
        ],
        "",
    );
    assert!(out.contains("trained 2 steps"), "{out}");
    // The run keeps the config it started with; the resumed one is written beside it.
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).unwrap(),
        saved
    );
    let resumed = std::fs::read_to_string(run.join("config.resume-step-000001.toml")).unwrap();
    assert!(
        saved.contains("max_steps") && !resumed.contains("max_steps"),
        "{resumed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data file of one example cannot give a validation split and a training example: one
/// line naming the file and the field (the split's clamp panicked before).
#[test]
fn one_example_with_a_validation_split_fails_with_one_line() {
    let dir = scratch("one");
    let config = write_config(&dir, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("n = 10", "n = 1")).unwrap();
    let err = fails(&["sft", config.to_str().unwrap()], "");
    assert!(
        err.contains("data/data.jsonl") && err.contains("`data.valid_fraction`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configs_fail_with_one_line() {
    let dir = scratch("bad");
    let config = write_config(&dir, "learning_rate = 1.0");
    let err = fails(&["sft", config.to_str().unwrap()], "");
    assert!(
        err.contains("sft.toml") && err.contains("learning_rate"),
        "{err}"
    );
    let config = write_config(&dir, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("micro_batch = 4", "micro_batch = 0")).unwrap();
    let err = fails(&["sft", config.to_str().unwrap()], "");
    assert!(err.contains("micro_batch"), "{err}");
    let err = fails(&["sft", "/nonexistent/sft.toml"], "");
    assert!(err.contains("/nonexistent/sft.toml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
