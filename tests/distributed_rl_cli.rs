//! `sftvsrl orchestrator` and `sftvsrl rl … --world-size N --rank R`: two worker processes train
//! a tiny policy over loopback and end with the same weights, each in its own run folder; wrong
//! flags and an unreachable orchestrator are one-line errors, not hangs.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{assert_files, fails, scratch, tiny_sft_policy};

fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// Two environments per worker, one update of two optimizer steps.
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

#[test]
fn two_workers_train_one_policy() {
    let dir = scratch("rl-workers-run");
    let policy = tiny_sft_policy(&dir);
    let config = write_config(&dir, &policy);
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
    let _ = std::fs::remove_dir_all(&dir);
}
