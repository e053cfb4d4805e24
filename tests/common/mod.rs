//! Running the real `sftvsrl` binary from end-to-end tests.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `sftvsrl args…` with `stdin` as its standard input.
pub fn sftvsrl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sftvsrl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin accepts input");
    child.wait_with_output().expect("the binary finishes")
}

/// Runs a command that must succeed; returns its standard output.
#[allow(dead_code)] // not every test file uses every helper
pub fn ok(args: &[&str], stdin: &str) -> String {
    let out = sftvsrl(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs a command that must fail with a one-line error (and no panic); returns the line.
#[allow(dead_code)]
pub fn fails(args: &[&str], stdin: &str) -> String {
    let out = sftvsrl(args, stdin);
    let err = String::from_utf8(out.stderr).expect("UTF-8 errors");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Asserts that every one of `files` exists below `dir`.
#[allow(dead_code)] // not every test file uses every helper
pub fn assert_files(dir: &std::path::Path, files: &[&str]) {
    for f in files {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }
}

/// A fresh folder under the system temp dir, unique to this test process.
#[allow(dead_code)] // not every test file uses every helper
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sftvsrl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny SFT checkpoint made through the CLI under `dir`; returns its `final/` folder.
#[allow(dead_code)] // not every test file uses every helper
pub fn tiny_sft_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        r#"name = "init"
runs_dir = "{runs}"
data = {{ path = "{data}", valid_fraction = 0.0, generate = {{ n = 10, seed = 0 }} }}
model = {{ init = "scratch", hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 }}
train = {{ epochs = 1, micro_batch = 5, lr = 1e-3, checkpoint_every = 10 }}
"#,
        runs = dir.join("runs").display(),
        data = dir.join("data/data.jsonl").display()
    );
    let path = dir.join("sft.toml");
    std::fs::write(&path, text).unwrap();
    ok(&["sft", path.to_str().unwrap()], "");
    dir.join("runs/init/final")
}
