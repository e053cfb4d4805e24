//! `sftvsrl orchestrator` and `sftvsrl rl … --world-size N --rank R`: two worker processes train
//! a tiny policy over loopback and end with the same weights, each in its own run folder, and
//! `sftvsrl rl … --local-workers 2` starts the same run with one command, and `sftvsrl rl …
//! --devices cpu,cpu` runs it as two threads of one process; wrong flags, an unreachable
//! orchestrator and a failing worker are errors, not hangs.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{assert_files, fails, scratch, sftvsrl, tiny_sft_policy};

fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// Two environments per worker, one update of two optimizer steps; runs go to `dir/runs/`.
fn write_config(dir: &Path, policy: &Path) -> PathBuf {
    let text = format!(
        r#"name = "two-workers"
runs_dir = "{runs}"
policy = "{policy}"
[rollout]
num_envs = 2
num_steps = 2
max_new_tokens = 8
[ppo]
num_updates = 1
num_ppo_epochs = 1
samples_per_step = 4
whiten_advantages = "buffer"
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
fn wrong_worker_flags_and_a_missing_orchestrator_are_errors() {
    let dir = scratch("rl-workers-flags");
    let config = write_config(&dir, &dir.join("no-policy"));
    let config = config.to_str().unwrap();
    let err = fails(&["rl", config, "--world-size", "2"], "");
    assert!(err.contains("--orchestrator and --address"), "{err}");
    let err = fails(&["rl", config, "--rank", "1"], "");
    assert!(err.contains("--world-size 2"), "{err}");
    let out = sftvsrl(&["rl", config, "--local-workers", "2", "--rank", "1"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with '--rank"), "{err}");
    let err = fails(&["rl", config, "--local-workers", "1"], "");
    assert!(err.contains("a run of its own"), "{err}");
    let err = fails(&["rl", config, "--local-workers", "1", "--nodes", "2"], "");
    assert!(err.contains("--host"), "{err}");
    let args = [
        "rl",
        config,
        "--local-workers",
        "1",
        "--nodes",
        "2",
        "--node-rank",
        "2",
    ];
    let err = fails(&args, "");
    assert!(
        err.contains("--node-rank 2 is not below --nodes 2"),
        "{err}"
    );
    // Both launched workers fail (no policy): the launcher says which, after their own words.
    let out = sftvsrl(&["rl", config, "--local-workers", "2"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("[worker 0] error: "), "{err}");
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("error: worker ") && last.contains("ended (exit status 1)"),
        "{err}"
    );
    // Local workers: two devices or more, of one kind; both failing (no policy) is one error
    // naming a worker, not a hang.
    let err = fails(&["rl", config, "--devices", "cpu"], "");
    assert!(err.contains("at least two devices"), "{err}");
    let err = fails(&["rl", config, "--devices", "cpu,ndarray"], "");
    assert!(err.contains("of one kind"), "{err}");
    let out = sftvsrl(&["rl", config, "--devices", "cpu:1,cpu"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`cpu:1`: cpu has one device"), "{err}");
    let err = fails(&["rl", config, "--devices", "cpu,cpu"], "");
    assert!(
        err.contains("local worker 0: ") && !err.contains("panicked"),
        "{err}"
    );
    let (orchestrator, own) = (format!("127.0.0.1:{}", free_port()), free_port());
    let address = format!("127.0.0.1:{own}");
    let worker = |rank: &str, address: &str| {
        let args = [
            "rl",
            config,
            "--world-size",
            "2",
            "--rank",
            rank,
            "--orchestrator",
            &orchestrator,
            "--address",
            address,
            "--collective-timeout-s",
            "2",
        ];
        fails(&args, "")
    };
    let err = worker("2", &address);
    assert!(err.contains("--rank 2"), "{err}");
    let err = worker("0", "no-port");
    assert!(err.contains("--address `no-port`"), "{err}");
    // Nobody listens at the orchestrator's address: the worker gives up after 2 s.
    let err = worker("0", &address);
    assert!(
        err.contains("registering with the orchestrator") && err.contains(&orchestrator),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The weights of the run's two workers (`runs/<name>/` and `runs/<name>.rank-1/`) under `dir`,
/// which must be equal and differ from the start policy's.
fn both_workers_weights(dir: &Path, policy: &Path) -> Vec<u8> {
    let runs = dir.join("runs");
    let weights = ["two-workers", "two-workers.rank-1"].map(|name| {
        let run = runs.join(name);
        assert_files(
            &run,
            &["config.toml", "metrics.jsonl", "final/model.safetensors"],
        );
        std::fs::read(run.join("final/model.safetensors")).unwrap()
    });
    assert!(weights[0] == weights[1], "the workers' weights differ");
    let start = std::fs::read(policy.join("model.safetensors")).unwrap();
    assert!(weights[0] != start, "the update changed the weights");
    // Each worker's metrics line holds its own rollouts and, the same on both, every worker's.
    let lines = ["two-workers", "two-workers.rank-1"].map(|name| {
        let text = std::fs::read_to_string(runs.join(name).join("metrics.jsonl")).unwrap();
        let line = text.lines().last().unwrap().to_string();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    });
    assert_eq!(lines[0]["all_workers"], lines[1]["all_workers"]);
    let own: Vec<f64> = lines
        .iter()
        .map(|l| l["mean_reward"].as_f64().unwrap())
        .collect();
    let all = lines[0]["all_workers"]["mean_reward"].as_f64().unwrap();
    // Both workers hold as many samples: the run's mean is the mean of theirs.
    assert!(
        (all - (own[0] + own[1]) / 2.0).abs() < 1e-4,
        "{all} vs {own:?}"
    );
    weights[0].clone()
}

#[test]
fn two_workers_train_one_policy_started_by_hand_or_by_the_launcher() {
    let dir = scratch("rl-workers-run");
    let policy = tiny_sft_policy(&dir);
    let by_hand = dir.join("by-hand");
    std::fs::create_dir_all(&by_hand).unwrap();
    let config = write_config(&by_hand, &policy);
    let port = free_port();
    let mut orchestrator = Command::new(env!("CARGO_BIN_EXE_sftvsrl"))
        .args(["orchestrator", "--port", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let workers: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(env!("CARGO_BIN_EXE_sftvsrl"))
                .args(["rl", config.to_str().unwrap(), "--world-size", "2"])
                .args(["--rank", &rank.to_string()])
                .args(["--orchestrator", &format!("127.0.0.1:{port}")])
                .args(["--address", &format!("127.0.0.1:{}", free_port())])
                .args(["--collective-timeout-s", "120"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = workers
        .into_iter()
        .map(|w| w.wait_with_output().unwrap())
        .collect();
    orchestrator.kill().unwrap();
    orchestrator.wait().unwrap();
    for (rank, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "worker {rank}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("trained 1 updates"), "{stdout}");
    }
    let hand = both_workers_weights(&by_hand, &policy);

    // One command starts the orchestrator and both workers, and forwards their output.
    let launched = dir.join("launched");
    std::fs::create_dir_all(&launched).unwrap();
    let config = write_config(&launched, &policy);
    let args = ["rl", config.to_str().unwrap(), "--local-workers", "2"];
    let out = sftvsrl(&args, "");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // burn-collective's info logs (every peer's config) stay out of the output.
    assert!(!stderr.contains("INFO"), "{stderr}");
    for rank in 0..2 {
        let line = format!("[worker {rank}] trained 1 updates");
        assert!(stdout.contains(&line), "{stdout}");
    }
    let by_launcher = both_workers_weights(&launched, &policy);
    assert!(
        by_launcher == hand,
        "the launched run's weights differ from the hand-started run's"
    );

    // The same two workers as threads of one process, one per device (local peers).
    let threads = dir.join("threads");
    std::fs::create_dir_all(&threads).unwrap();
    let config = write_config(&threads, &policy);
    let out = sftvsrl(
        &["rl", config.to_str().unwrap(), "--devices", "cpu,cpu"],
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("trained 1 updates"), "{stdout}");
    assert!(
        both_workers_weights(&threads, &policy) == hand,
        "the one-process run's weights differ from the hand-started run's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
