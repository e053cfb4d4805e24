//! Hostile resume state, read by `sftvsrl sft CONFIG --resume`: a one-step run's checkpoint
//! (`model.mpk`, `optimizer.mpk`, `state.json`, `manifest.json`), the run's own `config.toml`
//! and `metrics.jsonl`, damaged. Damage the manifest does not list is caught by its checksums;
//! "sealed" cases rewrite the manifest after the damage, so the decoders themselves meet it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use sftvsrl_training::checkpoint;

use super::corrupt::{
    Step, copy_dir, cut_points, flip_points, flipped, path_name, paths, removed, replaced,
    value_at, wrong_type,
};
use super::{Case, Expect, args, jsonl, s};

/// What a case does to its copy of the run folder (the run folder given).
type Edit = Arc<dyn Fn(&Path) + Send + Sync>;

/// The run folder below a case's folder, and its checkpoint.
fn run_dir(dir: &Path) -> PathBuf {
    dir.join("runs").join("tiny")
}

fn checkpoint_of(run: &Path) -> PathBuf {
    run.join("checkpoints").join("step-000001")
}

/// The pristine run: a one-step SFT run into `dir/runs/tiny`; returns the resume command.
pub fn pristine(dir: &Path) -> Vec<String> {
    let first = jsonl::pristine(dir);
    let (code, err, _) = super::run_binary(&first, dir);
    assert_eq!(code, Some(0), "the pristine run: {err}");
    resume_args(dir, dir)
}

/// Resumes the run below `dir` on the pristine data in `pristine`.
fn resume_args(dir: &Path, pristine: &Path) -> Vec<String> {
    let config = jsonl::config(dir, &pristine.join("data.jsonl"));
    args(&["sft", &s(&config), "--plain", "--resume"])
}

/// A case that copies the pristine run into its folder, applies `edit` to the run folder and
/// resumes on the pristine data; the error must name `names` (a path relative to the run folder).
fn case(pristine: &Path, label: String, expect: Expect, names: &str, edit: Edit) -> Case {
    let pristine = pristine.to_path_buf();
    let names = names.to_string();
    Case::new(label, expect, move |dir: &Path| {
        let run = run_dir(dir);
        copy_dir(&run_dir(&pristine), &run);
        edit(&run);
        (resume_args(dir, &pristine), s(&run.join(&names)))
    })
}

/// An edit that writes `bytes` to `name` in the run folder, rewriting the checkpoint's
/// manifest afterwards when `seal`.
fn write(name: &str, bytes: Vec<u8>, seal: bool) -> Edit {
    let name = name.to_string();
    Arc::new(move |run: &Path| {
        std::fs::write(run.join(&name), &bytes).unwrap();
        if seal {
            checkpoint::write_manifest(&checkpoint_of(run)).unwrap();
        }
    })
}

fn remove(name: &str) -> Edit {
    let name = name.to_string();
    Arc::new(move |run: &Path| {
        let path = run.join(&name);
        match path.is_dir() {
            true => std::fs::remove_dir_all(path).unwrap(),
            false => std::fs::remove_file(path).unwrap(),
        }
    })
}

pub fn cases(pristine: &Path) -> Vec<Case> {
    let run = run_dir(pristine);
    let ckpt = "checkpoints/step-000001";
    let mut cases = Vec::new();
    let mut add = |label: String, expect: Expect, names: &str, edit: Edit| {
        cases.push(case(pristine, label, expect, names, edit));
    };

    for file in ["model.mpk", "optimizer.mpk", "state.json"] {
        let name = format!("{ckpt}/{file}");
        let bytes = std::fs::read(run.join(&name)).unwrap();
        for seal in [false, true] {
            let how = if seal { "sealed" } else { "unsealed" };
            // A sealed cut reaches the decoder, which names the checkpoint or the file.
            let names = if seal { ckpt } else { name.as_str() };
            for cut in cut_points(bytes.len(), &[], if seal { 16 } else { 6 }) {
                add(
                    format!("{file} cut at byte {cut} ({how})"),
                    Expect::Fails,
                    names,
                    write(&name, bytes[..cut].to_vec(), seal),
                );
            }
            for (k, at) in flip_points(0..bytes.len(), if seal { 16 } else { 6 }, 11)
                .into_iter()
                .enumerate()
            {
                add(
                    format!("{file} flip {k} at byte {at} ({how})"),
                    if seal { Expect::NoCrash } else { Expect::Fails },
                    names,
                    write(&name, flipped(&bytes, at), seal),
                );
            }
        }
        add(
            format!("{file} missing"),
            Expect::Fails,
            &name,
            remove(&name),
        );
    }

    // Parameter ids in the model record (MessagePack `"id": "<base32>"`), under a matching
    // manifest: not base32, and base32 of more than the id's 8 bytes.
    let model_name = format!("{ckpt}/model.mpk");
    let model = std::fs::read(run.join(&model_name)).unwrap();
    let at = model
        .windows(3)
        .position(|w| w == b"\xa2id")
        .expect("the record holds parameter ids")
        + 3;
    let len = usize::from(model[at] - 0xa0);
    for (label, id) in [
        ("not base32", "!".repeat(len)),
        ("of 15 bytes", "0".repeat(24)),
    ] {
        let mut bytes = model[..at].to_vec();
        bytes.push(0xa0 + id.len() as u8);
        bytes.extend(id.as_bytes());
        bytes.extend(&model[at + 1 + len..]);
        add(
            format!("model.mpk with a parameter id {label} (sealed)"),
            Expect::Fails,
            ckpt,
            write(&model_name, bytes, true),
        );
    }

    // state.json: every field of the wrong type or missing, under a matching manifest.
    let state_name = format!("{ckpt}/state.json");
    let state: Value = serde_json::from_slice(&std::fs::read(run.join(&state_name)).unwrap())
        .expect("the pristine state is JSON");
    for path in paths(&state, 2) {
        let field = path_name(&path);
        let wrong = replaced(&state, &path, wrong_type(value_at(&state, &path)));
        add(
            format!("state.json `{field}` of the wrong type"),
            Expect::Fails,
            &state_name,
            write(&state_name, wrong.to_string().into_bytes(), true),
        );
        if matches!(path.last(), Some(Step::Key(_))) {
            let less = removed(&state, &path);
            add(
                format!("state.json `{field}` removed"),
                Expect::Fails,
                &state_name,
                write(&state_name, less.to_string().into_bytes(), true),
            );
        }
    }

    // manifest.json: cut, of the wrong types, entries missing, unknown entries.
    let manifest_name = format!("{ckpt}/manifest.json");
    let manifest_bytes = std::fs::read(run.join(&manifest_name)).unwrap();
    for cut in cut_points(manifest_bytes.len(), &[], 8).into_iter().skip(1) {
        add(
            format!("manifest.json cut at byte {cut}"),
            Expect::Fails,
            &manifest_name,
            write(&manifest_name, manifest_bytes[..cut].to_vec(), false),
        );
    }
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    for path in paths(&manifest, 2) {
        let field = path_name(&path);
        let wrong = replaced(&manifest, &path, wrong_type(value_at(&manifest, &path)));
        add(
            format!("manifest.json `{field}` of the wrong type"),
            Expect::Fails,
            &manifest_name,
            write(&manifest_name, wrong.to_string().into_bytes(), false),
        );
        let less = removed(&manifest, &path);
        add(
            format!("manifest.json `{field}` removed"),
            Expect::Fails,
            &manifest_name,
            write(&manifest_name, less.to_string().into_bytes(), false),
        );
    }
    let mut extra = manifest.clone();
    extra["model.mpk"]["sha"] = Value::from("?");
    let mut foreign = manifest.clone();
    foreign["notes.txt"] = manifest["state.json"].clone();
    for (label, value) in [("an unknown field", extra), ("an unknown file", foreign)] {
        add(
            format!("manifest.json with {label}"),
            Expect::Fails,
            &manifest_name,
            write(&manifest_name, value.to_string().into_bytes(), false),
        );
    }

    // The run's own config and metrics; checkpoint folders that are not whole.
    let config = std::fs::read(run.join("config.toml")).unwrap();
    for cut in cut_points(config.len(), &[], 6) {
        add(
            format!("config.toml cut at byte {cut}"),
            Expect::NoCrash,
            "config.toml",
            write("config.toml", config[..cut].to_vec(), false),
        );
    }
    add(
        "config.toml not TOML".into(),
        Expect::Fails,
        "config.toml",
        write("config.toml", b"[model\nhidden_size = ".to_vec(), false),
    );
    add(
        "config.toml missing".into(),
        Expect::Fails,
        "config.toml",
        remove("config.toml"),
    );
    add(
        "metrics.jsonl not JSON".into(),
        Expect::NoCrash,
        "metrics.jsonl",
        write("metrics.jsonl", vec![0xff, b'{', b'\n', b'7'], false),
    );
    add(
        "a newer checkpoint folder, empty".into(),
        Expect::Fails,
        "checkpoints/step-000002",
        Arc::new(|run: &Path| std::fs::create_dir(run.join("checkpoints/step-000002")).unwrap()),
    );
    add(
        "a newer checkpoint that is a file".into(),
        Expect::Fails,
        "checkpoints/step-000002",
        Arc::new(|run: &Path| std::fs::write(run.join("checkpoints/step-000002"), b"x").unwrap()),
    );
    add(
        "the checkpoint without its manifest (written before manifests)".into(),
        Expect::NoCrash,
        &manifest_name,
        remove(&manifest_name),
    );
    cases
}
