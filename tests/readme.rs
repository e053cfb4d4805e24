//! The README's commands run as written: every `cargo run -- …` line of its tour whose work
//! takes seconds (exploring the environments, writing data, making worlds) is run, in order,
//! through the real binary in a scratch folder. The optional parts shown in brackets are left
//! out; placeholder lines (`DIR`, `outputs.jsonl`) and the long jobs (training, evaluation,
//! studies, benchmarks, model downloads) are not run here: their own tests cover them.

mod common;

use std::process::Command;

use common::scratch;

/// Subcommands quick enough to run here.
const QUICK: &[&str] = &[
    "gp sample",
    "gp verify --cards",
    "gp render",
    "nav world",
    "nav sample",
    "nav render",
    "data sft",
];

/// The `cargo run -- …` lines of the README's shell blocks, as argument lists.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = include_str!("../README.md");
    let mut in_block = false;
    let mut commands = Vec::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let Some(rest) = line.strip_prefix("cargo run -- ").filter(|_| in_block) else {
            continue;
        };
        let command = rest.split(" #").next().unwrap_or(rest);
        commands.push(words(&strip_optional(command)));
    }
    commands
}

/// The command without its `[...]` optional parts.
fn strip_optional(command: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in command.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Shell words: spaces split, single quotes group.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn the_readme_tour_commands_that_take_seconds_run_as_written() {
    let dir = scratch("readme");
    let mut ran = Vec::new();
    for args in readme_commands() {
        let line = args.join(" ");
        if !QUICK.iter().any(|q| line.starts_with(q)) || line.contains("--jsonl") {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_sftvsrl"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("the binary starts");
        assert!(
            out.status.success(),
            "README: `cargo run -- {line}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(line);
    }
    // The tour's GeneralPoints, data and navigation commands were all found and run.
    for q in QUICK {
        assert!(
            ran.iter().any(|l| l.starts_with(q)),
            "no README command `{q}` ran: {ran:?}"
        );
    }
    assert!(ran.len() >= 10, "{ran:?}");
}
