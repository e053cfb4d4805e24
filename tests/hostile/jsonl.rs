//! Hostile SFT data, read by `sftvsrl sft CONFIG` (a one-step run of a tiny language model
//! from scratch): every field of a chat line of the wrong type, cut lines, foreign lines, and
//! damaged or impossible images.

use std::path::Path;

use serde_json::{Value, json};

use super::corrupt::{
    Step, at_path, path_name, paths, removed, replaced, steps, value_at, wrong_type,
};
use super::nav::huge_png_header;
use super::{Case, Expect, args, s};

/// Files written beside the data: `(name, bytes)`, a name ending in `/` a folder.
type Files = Vec<(&'static str, Vec<u8>)>;

/// A chat line of the pristine data.
fn line() -> Value {
    json!({"messages": [
        {"role": "user", "content": "what is one plus two"},
        {"role": "assistant", "content": " three"}
    ]})
}

/// Writes the run's config into `dir` and returns its path; the run reads `data` and writes
/// below `dir/runs`.
pub fn config(dir: &Path, data: &Path) -> std::path::PathBuf {
    let text = format!(
        "name = \"tiny\"\nruns_dir = \"{}\"\n[data]\npath = \"{}\"\nvalid_fraction = 0.25\nmax_len = 64\n\
         [model]\ninit = \"scratch\"\nhidden_size = 16\nintermediate_size = 32\nnum_hidden_layers = 1\n\
         num_attention_heads = 2\nnum_key_value_heads = 1\n\
         [train]\nepochs = 1\nmicro_batch = 2\nlr = 1e-3\ncheckpoint_every = 1\nanswer_match = 0\nmax_steps = 1\n",
        s(&dir.join("runs")),
        s(data)
    );
    let path = dir.join("sft.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A case whose data is `first` followed by seven pristine lines (`files` are written beside
/// it first).
fn case(
    label: String,
    expect: Expect,
    first: Vec<u8>,
    files: Vec<(&'static str, Vec<u8>)>,
) -> Case {
    Case::new(label, expect, move |dir: &Path| {
        for (name, bytes) in &files {
            let path = dir.join(name);
            if name.ends_with('/') {
                std::fs::create_dir_all(path).unwrap();
            } else {
                std::fs::write(path, bytes).unwrap();
            }
        }
        let mut data = first.clone();
        for _ in 0..7 {
            data.push(b'\n');
            data.extend(line().to_string().into_bytes());
        }
        data.push(b'\n');
        let data_path = dir.join("data.jsonl");
        std::fs::write(&data_path, data).unwrap();
        (
            args(&["sft", &s(&config(dir, &dir.join("data.jsonl"))), "--plain"]),
            s(&data_path),
        )
    })
}

/// The pristine run's arguments.
pub fn pristine(dir: &Path) -> Vec<String> {
    let data: String = (0..8).map(|_| line().to_string() + "\n").collect();
    std::fs::write(dir.join("data.jsonl"), data).unwrap();
    args(&["sft", &s(&config(dir, &dir.join("data.jsonl"))), "--plain"])
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let pristine = line();
    let text = pristine.to_string();
    for path in paths(&pristine, 3) {
        let name = path_name(&path);
        let v = replaced(&pristine, &path, wrong_type(value_at(&pristine, &path)));
        cases.push(case(
            format!("`{name}` of the wrong type"),
            Expect::Fails,
            v.to_string().into_bytes(),
            vec![],
        ));
        if matches!(path.last(), Some(Step::Key(_))) {
            let v = removed(&pristine, &path);
            cases.push(case(
                format!("`{name}` removed"),
                Expect::Fails,
                v.to_string().into_bytes(),
                vec![],
            ));
        }
    }
    for (label, path, value) in [
        (
            "an unknown role",
            &["messages", "0", "role"][..],
            json!("robot"),
        ),
        (
            "a null content",
            &["messages", "1", "content"][..],
            Value::Null,
        ),
        ("no messages", &["messages"][..], json!([])),
        ("an unknown field", &["extra"][..], json!(1)),
        (
            "an unknown message field",
            &["messages", "0", "name"][..],
            json!("x"),
        ),
    ] {
        let mut v = pristine.clone();
        *at_path(&mut v, &steps(path)) = value;
        cases.push(case(
            label.into(),
            Expect::Fails,
            v.to_string().into_bytes(),
            vec![],
        ));
    }
    for cut in [1, 5, text.len() / 2, text.len() - 1] {
        cases.push(case(
            format!("the first line cut at byte {cut}"),
            Expect::Fails,
            text.as_bytes()[..cut].to_vec(),
            vec![],
        ));
    }
    for (label, first) in [
        ("a line that is a number", b"5".to_vec()),
        ("a line that is null", b"null".to_vec()),
        ("a line that is a list", b"[]".to_vec()),
        ("a line not in UTF-8", vec![b'{', 0xff, b'}']),
        ("a line of a NUL byte", vec![0]),
    ] {
        cases.push(case(label.into(), Expect::Fails, first, vec![]));
    }
    // Images (a language model refuses images, but the image is checked first).
    let with_image = |image: &str| {
        let mut v = pristine.clone();
        v["image"] = json!(image);
        v.to_string().into_bytes()
    };
    let images: Vec<(&str, Files)> = vec![
        ("a missing image", vec![]),
        ("an empty image", vec![("img.png", Vec::new())]),
        (
            "a text file as the image",
            vec![("img.png", b"not a png".to_vec())],
        ),
        (
            "a PNG declaring 2^31-1 pixels a side",
            vec![("img.png", huge_png_header())],
        ),
        ("a folder as the image", vec![("img.png/", Vec::new())]),
        (
            "a PNG signature only",
            vec![("img.png", b"\x89PNG\r\n\x1a\n".to_vec())],
        ),
    ];
    for (label, files) in images {
        cases.push(case(
            label.into(),
            Expect::Fails,
            with_image("img.png"),
            files,
        ));
    }
    cases.push(case(
        "an absolute image path outside the data".into(),
        Expect::Fails,
        with_image("/nonexistent/img.png"),
        vec![],
    ));
    cases.push(Case::new(
        "an empty data file",
        Expect::Fails,
        |dir: &Path| {
            std::fs::write(dir.join("data.jsonl"), b"").unwrap();
            (
                args(&["sft", &s(&config(dir, &dir.join("data.jsonl"))), "--plain"]),
                s(&dir.join("data.jsonl")),
            )
        },
    ));
    cases.push(Case::new(
        "a missing data file",
        Expect::Fails,
        |dir: &Path| {
            (
                args(&["sft", &s(&config(dir, &dir.join("data.jsonl"))), "--plain"]),
                s(&dir.join("data.jsonl")),
            )
        },
    ));
    cases
}
