//! The hostile-input harness (issue #17): a case is one run of the real `sftvsrl` binary on a
//! corrupted input, prepared in a folder of its own; [`run_cases`] runs a format's cases a few
//! at a time and holds every run to the contract: a non-zero exit with a one-line error that
//! names the input, and never a panic, an abort or a hang.

pub mod corrupt;
pub mod fixtures;
pub mod flags;
pub mod gguf;
pub mod hf;
pub mod jsonl;
pub mod nav;
pub mod resume;
pub mod toml_cases;
pub mod vlm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a case must end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A non-zero exit with a one-line `error: ` naming the input.
    Fails,
    /// A non-zero exit after one `<input>:<line>: …` report per bad line (batch graders), the
    /// last line a one-line `error: ` naming the input.
    FailsWithLineReport,
    /// Either success or such an error (damage that may leave the input valid: a flipped byte
    /// inside a string, image data after the header), but never a crash.
    NoCrash,
}

/// Prepares a case in its folder; returns the command's arguments and the text the error must
/// contain (the path of the damaged file or of its folder).
pub type Setup = Box<dyn Fn(&Path) -> (Vec<String>, String) + Send + Sync>;

/// One hostile input.
pub struct Case {
    pub label: String,
    pub expect: Expect,
    pub setup: Setup,
}

impl Case {
    /// A case labelled `label`.
    pub fn new(
        label: impl Into<String>,
        expect: Expect,
        setup: impl Fn(&Path) -> (Vec<String>, String) + Send + Sync + 'static,
    ) -> Self {
        Case {
            label: label.into(),
            expect,
            setup: Box::new(setup),
        }
    }
}

/// A run longer than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(90);
/// Cases run at once (the machine's cores are shared with the test harness's other tests).
const PARALLEL: usize = 3;

/// A fresh folder for format `name` under the build's temporary folder.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `sftvsrl args…` (standard input closed) and returns its exit code (`None`: killed by a
/// signal or the timeout) and standard error.
pub fn run_binary(args: &[String], cwd: &Path) -> (Option<i32>, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sftvsrl"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("waiting works") {
            break (status, false);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            break (child.wait().expect("the killed binary is reaped"), true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), reader.join().unwrap(), timed_out)
}

/// Why a finished run breaks the contract, if it does.
fn violation(
    expect: Expect,
    code: Option<i32>,
    err: &str,
    names: &str,
    timed_out: bool,
) -> Option<String> {
    if timed_out {
        return Some(format!("no answer within {TIMEOUT:?}"));
    }
    let Some(code) = code else {
        return Some("killed by a signal (an abort or a stack overflow)".into());
    };
    if code == 101 || err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        return Some("panicked".into());
    }
    if code == 0 {
        return (expect == Expect::Fails).then(|| "exited 0 on a damaged input".into());
    }
    // Clap's own usage errors (exit 2) are several lines long by design.
    if code == 2 && err.starts_with("error: ") {
        return None;
    }
    if code != 1 {
        return Some(format!("exit code {code}"));
    }
    let mut text = err.trim_end();
    if text.is_empty() {
        return Some("no error message".into());
    }
    if expect == Expect::FailsWithLineReport {
        let (report, last) = text.rsplit_once('\n').unwrap_or(("", text));
        if let Some(l) = report.lines().find(|l| !l.starts_with(names)) {
            return Some(format!("the report line `{l}` does not name `{names}`"));
        }
        text = last;
    }
    if text.lines().count() != 1 || !text.starts_with("error: ") {
        return Some("the error is not one `error: ` line".into());
    }
    if !text.contains(names) {
        return Some(format!("the error does not name `{names}`"));
    }
    None
}

/// Runs every case of `format`, prints how many ran, and fails with the list of those that
/// broke the contract. Returns the number of cases run.
pub fn run_cases(format: &str, cases: Vec<Case>) -> usize {
    let root = scratch(format);
    let next = AtomicUsize::new(0);
    let ran = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let dir = root.join(format!("case-{i:04}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    let (args, names) = (case.setup)(&dir);
                    let (code, err, timed_out) = run_binary(&args, &dir);
                    if let Some(why) = violation(case.expect, code, &err, &names, timed_out) {
                        failures.lock().unwrap().push(format!(
                            "[{format}] {}: {why}\n  args: {args:?}\n  stderr: {}",
                            case.label,
                            err.trim_end()
                        ));
                    } else {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    ran.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let ran = ran.into_inner();
    let must_fail = cases.iter().filter(|c| c.expect != Expect::NoCrash).count();
    println!(
        "hostile inputs, {format}: {ran} cases run ({must_fail} must fail, {} must not crash)",
        ran - must_fail
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {ran} {format} cases broke the contract:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, cases.len(), "every generated {format} case ran");
    let _ = std::fs::remove_dir_all(&root);
    ran
}

/// Runs `sftvsrl args…` on a pristine input, which must succeed (so the damaged copies fail
/// because of the damage).
pub fn assert_pristine_ok(args: &[String], cwd: &Path) {
    let (code, err, _) = run_binary(args, cwd);
    assert_eq!(
        code,
        Some(0),
        "the pristine input must work: {args:?}\n{err}"
    );
}

/// `items` as owned argument strings.
pub fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `sftvsrl import` of `model` into the case folder `dir`, with the error expected to name
/// `model`.
pub fn import_args(model: &Path, dir: &Path) -> (Vec<String>, String) {
    let out = dir.join("out");
    (
        args(&["import", "--model", &s(model), "--out", &s(&out)]),
        s(model),
    )
}

/// `path` as a string.
pub fn s(path: &Path) -> String {
    path.to_str().expect("UTF-8 temporary paths").to_string()
}
