//! Crash safety of the real binary: `sftvsrl sft`, `sftvsrl rl` and `sftvsrl study` are killed
//! (SIGKILL on Unix) again and again, at moments drawn from a fixed seed and whenever a
//! checkpoint or export is being written, and continued with `--resume` until they finish. After
//! every kill each checkpoint on disk must be whole (its manifest checks out); the finished run
//! must equal an uninterrupted one byte for byte: weights, optimizer state, progress, metrics
//! (without their wall-clock fields) and the study's report.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, scratch};
use sftvsrl_training::checkpoint;

/// How an attempt is cut short.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// After this long.
    After(Duration),
    /// As soon as a checkpoint, model or evaluation starts to be written.
    DuringWrite,
}

/// What a killed-and-resumed run went through.
#[derive(Debug, Default)]
struct Kills {
    random: usize,
    during_write: usize,
}

/// A small deterministic generator for the kill moments (splitmix64).
struct Moments(u64);

impl Moments {
    fn next_fraction(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn spawn(args: &[&str], resume: bool) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sftvsrl"));
    command.args(args);
    if resume {
        command.arg("--resume");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Every path below `dir` that belongs to a checkpoint, an exported model or an evaluation.
fn tree(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            tree(&path, out);
        }
        let saved = ["checkpoints", "final", "final.tmp", "evals"];
        if path
            .components()
            .any(|c| saved.iter().any(|s| c.as_os_str() == *s))
        {
            out.insert(path);
        }
    }
}

/// Whether such a path has appeared below `dir` since `before` was taken: a checkpoint, model
/// or evaluation is being written, whatever the writer's way of writing it.
fn writing(dir: &Path, before: &BTreeSet<PathBuf>) -> bool {
    let mut now = BTreeSet::new();
    tree(dir, &mut now);
    now.difference(before).next().is_some()
}

/// Every checkpoint folder below `dir` (any depth: a study holds several runs).
fn checkpoint_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if !path.is_dir() {
            continue;
        }
        if path.parent().and_then(Path::file_name) == Some("checkpoints".as_ref()) {
            found.push(path);
        } else {
            checkpoint_dirs(&path, found);
        }
    }
}

/// Every checkpoint below `dir` is whole: a step folder with a manifest that checks out.
fn assert_checkpoints_whole(dir: &Path) {
    let mut found = Vec::new();
    checkpoint_dirs(dir, &mut found);
    for path in found {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue; // a write cut short, never read
        }
        let step = name
            .strip_prefix("step-")
            .and_then(|n| n.parse::<usize>().ok());
        assert!(step.is_some(), "an unexpected folder {}", path.display());
        assert!(
            path.join("manifest.json").exists(),
            "{} has no manifest",
            path.display()
        );
        checkpoint::verify(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Runs `args` until it finishes on its own, killing the attempts as `plan` says (then the
/// rest run uncut); every attempt after the first adds `--resume`.
fn run_with_kills(args: &[&str], dir: &Path, plan: &[Kill]) -> Kills {
    let mut kills = Kills::default();
    for (attempt, kill) in plan
        .iter()
        .map(Some)
        .chain(std::iter::repeat(None))
        .enumerate()
    {
        assert!(attempt < plan.len() + 3, "{args:?} never finished");
        let mut before = BTreeSet::new();
        tree(dir, &mut before);
        let mut child = spawn(args, attempt > 0);
        let started = Instant::now();
        let cut = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(status.success(), "{args:?} attempt {attempt}: {err}");
                return kills;
            }
            let due = match kill {
                Some(Kill::After(t)) => started.elapsed() >= *t,
                Some(Kill::DuringWrite) => writing(dir, &before),
                None => false,
            };
            if due {
                break kill.unwrap();
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        match cut {
            Kill::After(_) => kills.random += 1,
            Kill::DuringWrite => kills.during_write += 1,
        }
        assert_checkpoints_whole(dir);
    }
    unreachable!("the attempts are bounded above")
}

/// A plan of `n` kills alternating between a random moment in the first quarter of `span` (the
/// uninterrupted run's time: three such kills cannot let the run finish) and a write (the
/// write is lost, so no progress is made).
fn plan(seed: u64, n: usize, span: Duration) -> Vec<Kill> {
    let mut moments = Moments(seed);
    (0..n)
        .map(|i| match i % 2 {
            0 => Kill::After(span.mul_f64(0.25 * moments.next_fraction())),
            _ => Kill::DuringWrite,
        })
        .collect()
}

/// Every file below `dir` that a finished run must reproduce, with its bytes (text with `dir`
/// written as `<run>`, JSON with its wall-clock fields removed). Burn's records (`*.mpk`, and
/// so the manifests) are left out: they hold parameter ids drawn at random in each process,
/// and the optimizer's state as a hash map. The weights of every checkpoint are compared
/// through its export instead, and a resumed run can only match the uninterrupted one at
/// later checkpoints if the optimizer state it loaded was exact.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for path in std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()) {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                walk(root, &path, out);
            } else if ![".toml", ".png", ".mpk", "manifest.json"]
                .iter()
                .any(|e| rel.ends_with(e))
            {
                let bytes = std::fs::read(&path).unwrap();
                let text = [".json", ".jsonl", ".md"].iter().any(|e| rel.ends_with(e));
                let bytes = match text {
                    // Paths inside the run folder are written as they are.
                    true => without_times(
                        &String::from_utf8_lossy(&bytes)
                            .replace(&root.display().to_string(), "<run>"),
                    ),
                    false => bytes,
                };
                out.insert(rel, bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// JSON (or JSON lines) with every `time_*` and `*_seconds` field removed; other lines as
/// they are.
fn without_times(text: &str) -> Vec<u8> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !k.starts_with("time_") && !k.ends_with("_seconds"));
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
        strip(&mut v);
        return v.to_string().into_bytes();
    }
    text.lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(mut v) => {
                    strip(&mut v);
                    v.to_string()
                }
                Err(_) => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// Asserts that two run folders hold the same outputs.
fn assert_same_outputs(a: &Path, b: &Path) {
    let (a_files, b_files) = (outputs(a), outputs(b));
    assert_eq!(
        a_files.keys().collect::<Vec<_>>(),
        b_files.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    let differ: Vec<&String> = a_files
        .iter()
        .filter(|(name, bytes)| **bytes != b_files[*name])
        .map(|(name, _)| name)
        .collect();
    assert!(
        differ.is_empty(),
        "these differ between the killed-and-resumed run and the uninterrupted one: {differ:?}"
    );
}

fn sft_config(dir: &Path, runs: &str) -> PathBuf {
    let text = format!(
        r#"name = "killed"
runs_dir = "{runs}"
[data]
path = "{data}"
valid_fraction = 0.2
[data.generate]
n = 60
seed = 0
[model]
init = "scratch"
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
[train]
epochs = 2
micro_batch = 4
lr = 1e-3
log_every = 1
checkpoint_every = 1
export_checkpoints = true
answer_match = 4
"#,
        runs = dir.join(runs).display(),
        data = dir.join("data/data.jsonl").display()
    );
    let path = dir.join(format!("{runs}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Times an uninterrupted run of `args`.
fn timed(args: &[&str]) -> Duration {
    let start = Instant::now();
    ok(args, "");
    start.elapsed()
}

#[test]
fn sft_killed_at_random_moments_resumes_to_the_uninterrupted_run() {
    let dir = scratch("kill-sft");
    let reference = sft_config(&dir, "reference");
    let span = timed(&["sft", reference.to_str().unwrap()]);
    let killed = sft_config(&dir, "killed");
    let kills = run_with_kills(
        &["sft", killed.to_str().unwrap()],
        &dir.join("killed"),
        &plan(17, 6, span),
    );
    println!("{kills:?}");
    assert!(kills.random >= 2 && kills.during_write >= 2, "{kills:?}");
    assert_same_outputs(&dir.join("reference/killed"), &dir.join("killed/killed"));
}

fn rl_config(dir: &Path, runs: &str, policy: &Path) -> PathBuf {
    let text = format!(
        r#"name = "killed"
runs_dir = "{runs}"
policy = "{policy}"
checkpoint_every = 1
export_checkpoints = true
[rollout]
num_envs = 2
num_steps = 2
max_new_tokens = 8
[ppo]
num_updates = 16
samples_per_step = 2
[value_head]
hidden = [8]
"#,
        runs = dir.join(runs).display(),
        policy = policy.display(),
    );
    let path = dir.join(format!("{runs}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rl_killed_at_random_moments_resumes_to_the_uninterrupted_run() {
    let dir = scratch("kill-rl");
    let init = sft_config(&dir, "init");
    ok(&["sft", init.to_str().unwrap()], "");
    let policy = dir.join("init/killed/final");
    let reference = rl_config(&dir, "reference", &policy);
    let span = timed(&["rl", reference.to_str().unwrap()]);
    let killed = rl_config(&dir, "killed", &policy);
    let kills = run_with_kills(
        &["rl", killed.to_str().unwrap()],
        &dir.join("killed"),
        &plan(29, 6, span),
    );
    println!("{kills:?}");
    assert!(kills.random >= 2 && kills.during_write >= 2, "{kills:?}");
    assert_same_outputs(&dir.join("reference/killed"), &dir.join("killed/killed"));
}

fn study_config(dir: &Path, runs: &str) -> PathBuf {
    let model = "init = \"scratch\", hidden_size = 16, intermediate_size = 32, \
                 num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1";
    let text = format!(
        r#"name = "killed"
runs_dir = "{runs}"
[init]
data = {{ valid_fraction = 0.0, generate = {{ n = 24, seed = 0, prompt_layout = "compact" }} }}
model = {{ {model} }}
train = {{ epochs = 1, micro_batch = 8, lr = 1e-3, checkpoint_every = 1, answer_match = 0 }}
[rl]
checkpoint_every = 1
gp = {{ verify_iter = 1, prompt_layout = "compact" }}
rollout = {{ num_envs = 2, num_steps = 2, max_new_tokens = 8 }}
ppo = {{ num_updates = 6, samples_per_step = 2 }}
value_head = {{ hidden = [8] }}
[sft]
data = {{ valid_fraction = 0.0, generate = {{ n = 200, seed = 1, prompt_layout = "compact" }} }}
train = {{ epochs = 1, micro_batch = 2, lr = 1e-3, checkpoint_every = 1000, answer_match = 0 }}
[eval]
episodes = 3
seed = 1000
verify_iters = [1]
max_new_tokens = 8
temperature = 0.0
prompt_layout = "compact"
"#,
        runs = dir.join(runs).display(),
    );
    let path = dir.join(format!("{runs}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn study_killed_at_random_moments_resumes_to_the_same_report() {
    let dir = scratch("kill-study");
    let reference = study_config(&dir, "reference");
    let span = timed(&["study", reference.to_str().unwrap()]);
    let killed = study_config(&dir, "killed");
    let kills = run_with_kills(
        &["study", killed.to_str().unwrap()],
        &dir.join("killed"),
        &plan(41, 8, span),
    );
    println!("{kills:?}");
    assert!(kills.random >= 3 && kills.during_write >= 3, "{kills:?}");
    assert_same_outputs(&dir.join("reference/killed"), &dir.join("killed/killed"));
}
