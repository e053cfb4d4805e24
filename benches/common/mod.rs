//! What the side-by-side benchmarks share: running a Python reference script.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// Runs `benches/<script>` with the project's `.venv` Python and `--flag value` pairs, and
/// returns the JSON report it prints as its last line. `setup` tells how to create the venv.
pub fn python_reference(
    script: &str,
    args: &[(&str, String)],
    setup: &str,
) -> anyhow::Result<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: {setup}", python.display());
    }
    let mut command = Command::new(python);
    command.arg(root.join("benches").join(script));
    for (flag, value) in args {
        command.args([*flag, value.as_str()]);
    }
    let out = command
        .output()
        .with_context(|| format!("running benches/{script}"))?;
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8(out.stdout)?;
    let last = stdout
        .lines()
        .last()
        .context("the reference printed nothing")?;
    Ok(serde_json::from_str(last)?)
}
