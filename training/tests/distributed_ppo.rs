//! Two PPO worker processes, talking through burn-collective's orchestrator over loopback, end
//! an update with the weights of one worker that holds both workers' environments (issue 19);
//! so do two worker threads of one process, burn-collective's local peers.
//!
//! This file is its own `main` (`harness = false`): run as a test, it starts the orchestrator
//! on a thread and two copies of itself as the workers (`distributed_ppo worker RANK …`), each
//! updating a tiny actor-critic on its half of a made-up buffer, then compares their weights
//! with a one-process update over the whole buffer.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use burn::backend::Autodiff;
use burn::optim::AdamConfig;
use serde_json::json;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_training::rl::buffer::Sample;
use sftvsrl_training::rl::config::{PpoConfig, Whitening};
use sftvsrl_training::rl::distributed::Shard;
use sftvsrl_training::rl::logprob::ActionWeights;
use sftvsrl_training::rl::ppo::{
    Experience, UpdateSettings, UpdateStats, advantages, advantages_across, ppo_update,
    ppo_update_across,
};
use sftvsrl_training::rl::{ActorCritic, WorkerSpec, Workers, run_orchestrator};

type A = Autodiff<CpuBackend>;

const WORLD: usize = 2;
/// Environments per worker, and steps per environment.
const ENVS: usize = 2;
const STEPS: usize = 3;
const LR: f64 = 1e-2;
const NAME: &str = "two_workers_take_the_optimizer_steps_of_one_with_all_environments";
const LOCAL: &str = "two_local_peers_take_the_optimizer_steps_of_one_with_all_environments";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker(&args[1..]),
        Some("--list") => println!("{NAME}: test\n{LOCAL}: test"),
        // Other libtest flags (--nocapture, filters) do not apply to this one test.
        _ => {
            two_workers_take_the_optimizer_steps_of_one_with_all_environments();
            println!("test {NAME} ... ok");
            two_local_peers_take_the_optimizer_steps_of_one_with_all_environments();
            println!("test {LOCAL} ... ok");
        }
    }
}

/// Several optimizer steps over two epochs (12 samples, 4 per step), whitened over the whole
/// buffer (statistics from both workers' samples), every step's gradient norm clipped.
fn config() -> PpoConfig {
    PpoConfig {
        num_ppo_epochs: 2,
        mini_batch_size: 1,
        samples_per_step: 4,
        whiten_advantages: Whitening::Buffer,
        max_grad_norm: 1e-3,
        ..PpoConfig::default()
    }
}

fn settings() -> UpdateSettings {
    UpdateSettings {
        lr: LR,
        temperature: 0.2,
        seed: 11,
        steps_before: 0,
        pad_to_multiple_of: 1,
    }
}

/// Global sample `(t, env)` of the step-major buffer of `WORLD × ENVS` environments: every
/// environment with its own rewards and value estimates, episodes of two steps.
fn sample(t: usize, env: usize) -> Sample {
    let weights = ActionWeights {
        weights: vec![0.0, 0.5, 1.0],
        constant: None,
    };
    let token_logprobs = vec![-1.0, -1.2 - 0.1 * env as f32, -0.8];
    Sample {
        env,
        episode: (t / 2) as u64,
        depth: (t % 2) as u32,
        prompt: vec![1 + ((t + env) % 5) as u32, 2],
        response: vec![3, 4 + ((t * 3 + env) % 3) as u32, 5],
        text: String::new(),
        logprob: weights.logprob(&token_logprobs),
        token_logprobs,
        weights,
        value: 0.1 * env as f32 - 0.05 * t as f32,
        reward: 2.0 * env as f64
            + if (t + env).is_multiple_of(2) {
                1.0
            } else {
                -1.5
            },
        kl: 0.0,
        terminated: t % 2 == 1,
        truncated: false,
        parsable: true,
        image: None,
    }
}

/// The whole buffer, as one worker with all environments collects it.
fn global_buffer() -> (Vec<Sample>, Vec<f64>) {
    let envs = WORLD * ENVS;
    let samples = (0..STEPS)
        .flat_map(|t| (0..envs).map(move |e| sample(t, e)))
        .collect();
    (samples, next_values(0..envs))
}

/// Worker `rank`'s share: the global environments `rank·ENVS …`, numbered from 0.
fn worker_buffer(rank: usize) -> (Vec<Sample>, Vec<f64>) {
    let first = rank * ENVS;
    let samples = (0..STEPS)
        .flat_map(|t| {
            (0..ENVS).map(move |e| Sample {
                env: e,
                ..sample(t, first + e)
            })
        })
        .collect();
    (samples, next_values(first..first + ENVS))
}

fn next_values(envs: std::ops::Range<usize>) -> Vec<f64> {
    envs.map(|e| 0.3 - 0.1 * e as f64).collect()
}

fn experience<'a>(samples: &'a [Sample], adv: &'a [f64], returns: &'a [f64]) -> Experience<'a> {
    Experience {
        samples,
        advantages: adv,
        returns,
    }
}

/// One update without other workers.
fn alone(samples: &[Sample], next_values: &[f64]) -> (ActorCritic<A>, UpdateStats) {
    let cfg = config();
    let (adv, returns) = advantages(samples, next_values, &cfg);
    let mut optim = AdamConfig::new().init();
    let exp = experience(samples, &adv, &returns);
    let device = Default::default();
    let model = common::tiny_actor_critic();
    ppo_update(model, &mut optim, exp, &cfg, settings(), None, &device).unwrap()
}

/// A worker process: `worker RANK ORCHESTRATOR_PORT OWN_PORT OUT.json`.
fn worker(args: &[String]) {
    let [rank, orchestrator, own, out] = args else {
        panic!("worker RANK ORCHESTRATOR_PORT OWN_PORT OUT.json, got {args:?}");
    };
    let spec = WorkerSpec {
        rank: rank.parse().unwrap(),
        world_size: WORLD,
        orchestrator: format!("127.0.0.1:{orchestrator}"),
        address: format!("127.0.0.1:{own}"),
        timeout: Duration::from_secs(60),
    };
    let workers = Workers::join(&spec).unwrap();
    let report = worker_update(&workers);
    workers.finish().unwrap();
    std::fs::write(out, report.to_string()).unwrap();
}

/// One worker's update of its share of the buffer: its weights, and each optimizer step's
/// sample count and gradient norm.
fn worker_update(workers: &Workers) -> serde_json::Value {
    let shard = Shard {
        workers,
        num_envs: ENVS,
    };
    let cfg = config();
    let (samples, next_values) = worker_buffer(workers.rank());
    let (adv, returns) = advantages_across(&samples, &next_values, &cfg, shard).unwrap();
    let mut optim = AdamConfig::new().init();
    let exp = experience(&samples, &adv, &returns);
    let device = Default::default();
    let model = common::tiny_actor_critic();
    let (model, stats) = ppo_update_across(
        model,
        &mut optim,
        exp,
        &cfg,
        settings(),
        None,
        &device,
        shard,
    )
    .unwrap();
    json!({
        "params": common::param_values(&model),
        "step_samples": stats.steps.iter().map(|s| s.samples).collect::<Vec<_>>(),
        "grad_norms": stats.steps.iter().map(|s| s.grad_norm).collect::<Vec<_>>(),
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn floats(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn two_workers_take_the_optimizer_steps_of_one_with_all_environments() {
    let dir = common::scratch("distributed-ppo");
    let orchestrator = free_port();
    std::thread::spawn(move || run_orchestrator(orchestrator));
    let children: Vec<_> = (0..WORLD)
        .map(|rank| {
            let out = dir.join(format!("worker-{rank}.json"));
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["worker", &rank.to_string(), &orchestrator.to_string()])
                .arg(free_port().to_string())
                .arg(&out)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|(child, out)| (child.wait_with_output().unwrap(), out))
        .collect();
    let failed: Vec<String> = outputs
        .iter()
        .enumerate()
        .filter(|(_, (output, _))| !output.status.success())
        .map(|(rank, (output, _))| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            format!("worker {rank}: {stderr}")
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let reports: Vec<serde_json::Value> = outputs.iter().map(|(_, out)| read_report(out)).collect();
    check_against_one_worker(&reports);
}

/// The same two workers as threads of this process, burn-collective's local peers.
fn two_local_peers_take_the_optimizer_steps_of_one_with_all_environments() {
    let stop = Arc::new(AtomicBool::new(false));
    let reports: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORLD)
            .map(|rank| {
                let stop = stop.clone();
                scope.spawn(move || {
                    let workers =
                        Workers::join_local(rank, WORLD, Duration::from_secs(60), stop).unwrap();
                    let report = worker_update(&workers);
                    workers.finish().unwrap();
                    report
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    check_against_one_worker(&reports);
}

/// Both workers' `reports` hold the weights, step sizes and gradient norms of one worker with
/// all environments (within 1e-5), and a worker alone with its half ends far from them.
fn check_against_one_worker(reports: &[serde_json::Value]) {
    let (samples, next_values) = global_buffer();
    let (one, stats) = alone(&samples, &next_values);
    let one = common::param_values(&one);
    let start = common::param_values(&common::tiny_actor_critic());
    assert_eq!(stats.steps.len(), 6, "2 epochs × 12 samples / 4 per step");
    assert!(
        stats.steps.iter().all(|s| s.grad_norm > 1e-3),
        "every step is clipped: {:?}",
        stats.steps
    );
    assert!(
        max_difference(&one, &start) > 1e-3,
        "the update moved the weights"
    );

    let params: Vec<Vec<f32>> = reports
        .iter()
        .map(|r| floats(&r["params"]).iter().map(|&v| v as f32).collect())
        .collect();
    assert_eq!(params[0], params[1], "both workers hold the same weights");
    let difference = max_difference(&params[0], &one);
    assert!(difference <= 1e-5, "two workers vs one: {difference}");
    for report in reports {
        let samples: Vec<f64> = stats.steps.iter().map(|s| s.samples as f64).collect();
        assert_eq!(floats(&report["step_samples"]), samples);
        // Each step's norm is that of the summed gradient (half of it would be a mean).
        for (norm, step) in floats(&report["grad_norms"]).iter().zip(&stats.steps) {
            assert!(
                (norm - step.grad_norm).abs() <= 1e-4 * step.grad_norm,
                "gradient norm {norm} vs {}",
                step.grad_norm
            );
        }
    }
    // Without the other worker, the same update of one worker's half ends far away.
    let (half, half_next) = worker_buffer(0);
    let (own, _) = alone(&half, &half_next);
    let apart = max_difference(&common::param_values(&own), &one);
    assert!(apart > 100.0 * 1e-5, "one worker alone: {apart}");
}

fn read_report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
