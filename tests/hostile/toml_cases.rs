//! Hostile settings files: every TOML file of `config/` (SFT, RL, evaluation, study and
//! GeneralPoints settings), read by its own command, with each field of the wrong type, an
//! unknown field in each table, an unterminated string, bytes that are not UTF-8, and the file
//! missing. Each must fail while the file is read, naming it.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Case, Expect, args, s};

/// The command that reads settings file `path` of folder `kind`.
fn command(kind: &str, path: &Path) -> Vec<String> {
    let p = s(path);
    match kind {
        "sft" | "rl" | "study" => args(&[kind, &p]),
        "eval" => args(&["eval", &p, "--checkpoint", "/nonexistent/checkpoint"]),
        "gp" => args(&["gp", "sample", "--config", &p]),
        other => panic!("no command reads config/{other}"),
    }
}

/// A value of another TOML type than `v`, that no field typed like `v` accepts.
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) | Value::Table(_) => Value::Integer(7),
        _ => Value::String("seven".into()),
    }
}

/// Every `(path, value)` of `table` down to `depth` levels (arrays by their first item).
fn leaves(table: &Table, depth: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (key, value) in table {
        out.push(vec![key.clone()]);
        if depth > 1
            && let Value::Table(inner) = value
        {
            for mut rest in leaves(inner, depth - 1) {
                rest.insert(0, key.clone());
                out.push(rest);
            }
        }
    }
    out
}

/// The tables of `table` (its own path first), as key paths.
fn tables(table: &Table, prefix: Vec<String>) -> Vec<Vec<String>> {
    let mut out = vec![prefix.clone()];
    for (key, value) in table {
        if let Value::Table(inner) = value {
            let mut p = prefix.clone();
            p.push(key.clone());
            out.extend(tables(inner, p));
        }
    }
    out
}

fn at<'a>(table: &'a mut Table, path: &[String]) -> &'a mut Table {
    path.iter().fold(table, |t, k| match t.get_mut(k) {
        Some(Value::Table(inner)) => inner,
        _ => panic!("no table at {k}"),
    })
}

/// A case that writes `text` as the settings file (named as the original) and reads it.
fn case(label: String, kind: &'static str, name: String, text: Vec<u8>) -> Case {
    Case::new(label, Expect::Fails, move |dir: &Path| {
        let path = dir.join(&name);
        std::fs::write(&path, &text).unwrap();
        (command(kind, &path), s(&path))
    })
}

/// The settings files of `config/`, by folder.
fn config_files() -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut out = Vec::new();
    for kind in ["sft", "rl", "eval", "study", "gp"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (kind, f)));
    }
    out
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (kind, file) in config_files() {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let label = |what: &str| format!("config/{kind}/{name}: {what}");
        let text = std::fs::read_to_string(&file).unwrap();
        let table: Table = toml::from_str(&text).unwrap();
        for path in leaves(&table, 3) {
            let mut t = table.clone();
            let (last, parent) = path.split_last().unwrap();
            let slot = at(&mut t, parent).get_mut(last).unwrap();
            *slot = wrong_type(slot);
            let text = toml::to_string(&t).unwrap().into_bytes();
            cases.push(case(
                label(&format!("`{}` of the wrong type", path.join("."))),
                kind,
                name.clone(),
                text,
            ));
        }
        for path in tables(&table, Vec::new()) {
            let mut t = table.clone();
            at(&mut t, &path).insert("hostile_unknown_field".into(), Value::Integer(1));
            let text = toml::to_string(&t).unwrap().into_bytes();
            let where_ = if path.is_empty() {
                "the top level".to_string()
            } else {
                format!("[{}]", path.join("."))
            };
            cases.push(case(
                label(&format!("an unknown field in {where_}")),
                kind,
                name.clone(),
                text,
            ));
        }
        // Cut right after the first opening quote: an unterminated string.
        let mut offset = 0;
        let mut quote = None;
        for line in text.split_inclusive('\n') {
            if let Some(at) = line.find("= \"")
                && !line.trim_start().starts_with('#')
            {
                quote = Some(offset + at);
                break;
            }
            offset += line.len();
        }
        if let Some(at) = quote {
            let cut = text.as_bytes()[..at + 3].to_vec();
            cases.push(case(
                label("an unterminated string"),
                kind,
                name.clone(),
                cut,
            ));
        }
        let mut bytes = text.clone().into_bytes();
        bytes.insert(0, 0xff);
        cases.push(case(label("not UTF-8"), kind, name.clone(), bytes));
        cases.push(Case::new(
            label("missing"),
            Expect::Fails,
            move |dir: &Path| {
                let path = dir.join("missing.toml");
                (command(kind, &path), s(&path))
            },
        ));
    }
    cases
}
