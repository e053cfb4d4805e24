//! `sftvsrl rl` and `sftvsrl bench rl` end to end: a tiny run from a tiny SFT checkpoint writes
//! its run folder and resumes; bad configs fail with one line naming the field; the benchmark
//! reports the time split (tiny settings: these check the plumbing, not speed).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_files, fails, ok, scratch, tiny_sft_policy};

fn write_config(dir: &Path, policy: &Path, updates: usize, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "tiny-rl"
runs_dir = "{runs}"
policy = "{policy}"
[rollout]
num_envs = 2
num_steps = 2
max_new_tokens = 8
[ppo]
num_updates = {updates}
samples_per_step = 2
{extra}
[value_head]
hidden = [8]
"#,
        runs = dir.join("runs").display(),
        policy = policy.display(),
    );
    let path = dir.join("rl.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn tiny_run_writes_its_folder_and_resumes() {
    let dir = scratch("rl-cli-run");
    let policy = tiny_sft_policy(&dir);
    let config = write_config(&dir, &policy, 1, "");
    let out = ok(&["rl", config.to_str().unwrap()], "");
    assert!(out.contains("trained 1 updates"), "{out}");
    assert!(out.contains("mean reward"), "{out}");
    let run = dir.join("runs/tiny-rl");
    assert_files(
        &run,
        &[
            "config.toml",
            "metrics.jsonl",
            "checkpoints/step-000001/state.json",
            "checkpoints/step-000001/model.mpk",
            "checkpoints/step-000001/optimizer.mpk",
            "final/model.safetensors",
            "final/tokenizer.json",
        ],
    );
    assert!(fails(&["rl", config.to_str().unwrap()], "").contains("--resume"));
    // A changed value head or LoRA is refused before anything is loaded, naming the field, and
    // the run's own config is kept.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    for (changed, field) in [
        (
            text.replace("hidden = [8]", "hidden = [4]"),
            "`value_head.hidden`",
        ),
        (format!("{text}[lora]\nrank = 2\nalpha = 2.0\n"), "`lora`"),
        (
            text.replace("/runs/init/final", "/runs/init/./final"),
            "`policy`",
        ),
    ] {
        std::fs::write(&config, changed).unwrap();
        let err = fails(&["rl", config.to_str().unwrap(), "--resume"], "");
        assert!(err.contains("config.toml") && err.contains(field), "{err}");
        assert_eq!(
            std::fs::read_to_string(run.join("config.toml")).unwrap(),
            saved
        );
    }
    let config = write_config(&dir, &policy, 2, "");
    let out = ok(
        &[
            "rl",
            config.to_str().unwrap(),
            "--resume",
            "--device",
            "ndarray",
        ],
        "",
    );
    assert!(out.contains("trained 2 updates"), "{out}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).unwrap(),
        saved
    );
    assert_files(&run, &["config.resume-step-000001.toml"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configs_fail_with_one_line() {
    let dir = scratch("rl-cli-bad");
    let missing = dir.join("no-such-policy");
    let config = write_config(&dir, &missing, 1, "clip_range = 0.2");
    let err = fails(&["rl", config.to_str().unwrap()], "");
    assert!(
        err.contains("rl.toml") && err.contains("clip_range"),
        "{err}"
    );
    let config = write_config(&dir, &missing, 1, "mini_batch_size = 0");
    let err = fails(&["rl", config.to_str().unwrap()], "");
    assert!(err.contains("ppo.mini_batch_size"), "{err}");
    let config = write_config(&dir, &missing, 1, "");
    let err = fails(&["rl", config.to_str().unwrap()], "");
    assert!(err.contains("no-such-policy"), "{err}");
    let err = fails(&["rl", "/nonexistent/rl.toml"], "");
    assert!(err.contains("/nonexistent/rl.toml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rl_benchmark_splits_the_update_time() {
    let out = ok(
        &[
            "bench",
            "rl",
            "--num-envs",
            "2",
            "--num-steps",
            "1",
            "--max-new-tokens",
            "4",
        ],
        "",
    );
    let reports: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    let r = &reports[0];
    assert_eq!(r["config"]["model_name"], "tiny");
    assert_eq!(r["generated_tokens"].as_f64().unwrap(), 8.0);
    let at = |key: &str| r[key].as_f64().unwrap_or_else(|| panic!("{key}: {r}"));
    // Generation and the update are timed (work was done), the parts make the total, and the
    // share and the rate are the parts' ratios.
    assert!(
        at("generation_s") > 0.0 && at("optimisation_s") > 0.0,
        "{r}"
    );
    let parts = at("generation_s") + at("environment_s") + at("optimisation_s");
    assert!((at("total_s") - parts).abs() <= 1e-9 * parts, "{r}");
    let share = at("environment_s") / at("total_s");
    assert!((at("environment_share") - share).abs() < 1e-9, "{r}");
    let rate = at("generated_tokens") / at("generation_s");
    assert!(
        (at("generated_tokens_per_s") - rate).abs() <= 1e-6 * rate,
        "{r}"
    );
}
