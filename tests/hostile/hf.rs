//! Hostile Hugging Face checkpoint folders, loaded by `sftvsrl import --model DIR`: a damaged
//! `model.safetensors` (cuts, flips, header lengths and header entries), `config.json`,
//! `generation_config.json`, `tokenizer_config.json`, a shard index, and missing files. The
//! tokenizer files have cases of their own ([`tokenizer_cases`]).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::corrupt::{
    copy_dir, cut_points, flip_points, flipped, path_name, paths, removed, replaced, steps,
    value_at, wrong_type,
};
use super::{Case, Expect, import_args};

/// What a case does to its copy of the checkpoint folder.
type Edit = Arc<dyn Fn(&Path) + Send + Sync>;

/// A case that copies `pristine` into its folder, applies `edit`, and imports the copy.
fn import(pristine: &Path, label: String, expect: Expect, edit: Edit) -> Case {
    let pristine = pristine.to_path_buf();
    Case::new(label, expect, move |dir: &Path| {
        let model = dir.join("model");
        copy_dir(&pristine, &model);
        edit(&model);
        import_args(&model, dir)
    })
}

/// An edit that writes `bytes` to file `name`.
fn write(name: &str, bytes: Vec<u8>) -> Edit {
    let name = name.to_string();
    Arc::new(move |dir: &Path| std::fs::write(dir.join(&name), &bytes).unwrap())
}

/// An edit that writes `value` as JSON file `name`.
fn write_json(name: &str, value: &Value) -> Edit {
    write(name, value.to_string().into_bytes())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A safetensors file from a header value and the data bytes.
fn safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

/// The fields of `config.json` the loader reads (any wrong value must be refused).
const CONFIG_FIELDS: [&str; 17] = [
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "max_position_embeddings",
    "tie_word_embeddings",
    "attention_bias",
    "bos_token_id",
    "eos_token_id",
    "hidden_act",
];

/// The shape fields of `config.json`: `vocab_size` to `head_dim` of [`CONFIG_FIELDS`].
const SIZES: &[&str] = CONFIG_FIELDS.split_at(8).0.split_at(1).1;

/// Cases for the weights, `config.json`, the generation and tokenizer configs, the index and
/// missing files of the checkpoint folder `pristine`.
pub fn cases(pristine: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |label: String, expect: Expect, edit: Edit| {
        cases.push(import(pristine, label, expect, edit));
    };

    // model.safetensors: cuts at its boundaries and across it, flips, bad header lengths.
    let weights = std::fs::read(pristine.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
    let data = weights[8 + header_len..].to_vec();
    let tensors: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let mut boundaries = vec![8, 8 + header_len];
    for name in &tensors {
        let offsets = &header[name.as_str()]["data_offsets"];
        boundaries.push(8 + header_len + offsets[0].as_u64().unwrap() as usize);
    }
    for cut in cut_points(weights.len(), &boundaries, 30) {
        add(
            format!("model.safetensors cut at byte {cut}"),
            Expect::Fails,
            write("model.safetensors", weights[..cut].to_vec()),
        );
    }
    for (k, at) in flip_points(0..8 + header_len, 30, 5)
        .into_iter()
        .enumerate()
    {
        add(
            format!("model.safetensors header flip {k} at byte {at}"),
            Expect::NoCrash,
            write("model.safetensors", flipped(&weights, at)),
        );
    }
    for n in [0, 1, 1 << 60, u64::MAX, weights.len() as u64] {
        let mut bytes = weights.clone();
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        add(
            format!("model.safetensors header length {n}"),
            Expect::Fails,
            write("model.safetensors", bytes),
        );
    }
    // Header entries: impossible dtypes, shapes and offsets.
    let entry_edits: Vec<(&str, &str, Value)> = vec![
        ("dtype I64", "dtype", json!("I64")),
        ("dtype F64", "dtype", json!("F64")),
        ("dtype BOOL", "dtype", json!("BOOL")),
        ("unknown dtype", "dtype", json!("Q4")),
        ("numeric dtype", "dtype", json!(7)),
        ("shape [2^60]", "shape", json!([1u64 << 60])),
        (
            "shape [2^32, 2^32]",
            "shape",
            json!([1u64 << 32, 1u64 << 32]),
        ),
        ("scalar shape", "shape", json!([])),
        ("negative shape", "shape", json!([-1])),
        ("string shape", "shape", json!("x")),
        ("offsets [0, 2^60]", "data_offsets", json!([0, 1u64 << 60])),
        ("reversed offsets", "data_offsets", json!([8, 0])),
        ("one offset", "data_offsets", json!([0])),
        ("string offsets", "data_offsets", json!(["a", "b"])),
        (
            "offsets past the end",
            "data_offsets",
            json!([0, data.len() + 64]),
        ),
    ];
    for (i, name) in tensors.iter().enumerate() {
        let edits = if i < 2 {
            &entry_edits[..]
        } else {
            &entry_edits[..1]
        };
        for (label, field, value) in edits {
            let h = replaced(&header, &steps(&[name, field]), value.clone());
            add(
                format!("tensor `{name}`: {label}"),
                Expect::Fails,
                write("model.safetensors", safetensors(&h, &data)),
            );
        }
    }
    for (label, h) in [
        ("header is a list", json!([])),
        ("header metadata of the wrong type", {
            let mut h = header.clone();
            h["__metadata__"] = json!(5);
            h
        }),
        (
            "header without its first tensor",
            removed(&header, &steps(&[&tensors[0]])),
        ),
    ] {
        add(
            format!("model.safetensors {label}"),
            Expect::Fails,
            write("model.safetensors", safetensors(&h, &data)),
        );
    }
    let mut not_utf8 = weights.clone();
    not_utf8[9] = 0xff;
    add(
        "model.safetensors header not UTF-8".into(),
        Expect::Fails,
        write("model.safetensors", not_utf8),
    );

    // config.json: every field of the wrong type, removed, or out of range.
    let config = read_json(&pristine.join("config.json"));
    for path in paths(&config, 2) {
        let name = path_name(&path);
        let read = CONFIG_FIELDS.iter().any(|f| {
            name == *f || name.starts_with(&format!("{f}.")) || name.starts_with(&format!("{f}["))
        });
        let expect = if read { Expect::Fails } else { Expect::NoCrash };
        let v = replaced(&config, &path, wrong_type(value_at(&config, &path)));
        add(
            format!("config.json `{name}` of the wrong type"),
            expect,
            write_json("config.json", &v),
        );
        let required = SIZES[..6].contains(&name.as_str()) || name == "model_type";
        let expect = if required {
            Expect::Fails
        } else {
            Expect::NoCrash
        };
        add(
            format!("config.json `{name}` removed"),
            expect,
            write_json("config.json", &removed(&config, &path)),
        );
    }
    for &field in SIZES {
        for bad in [
            json!(1u64 << 60),
            json!(u64::MAX),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(1e300),
        ] {
            let v = replaced(&config, &steps(&[field]), bad.clone());
            add(
                format!("config.json `{field}` = {bad}"),
                Expect::Fails,
                write_json("config.json", &v),
            );
        }
    }
    let mut edit = |label: &str, field: &str, bad: Value| {
        let v = replaced(&config, &steps(&[field]), bad);
        add(
            format!("config.json {label}"),
            Expect::Fails,
            write_json("config.json", &v),
        );
    };
    edit("bos id over 32 bits", "bos_token_id", json!(1u64 << 40));
    edit(
        "eos ids over 32 bits",
        "eos_token_id",
        json!([3, 1u64 << 40]),
    );
    edit("rope scaling as a list", "rope_scaling", json!([7]));
    edit(
        "llama3 rope scaling without numbers",
        "rope_scaling",
        json!({"rope_type": "llama3", "factor": "x"}),
    );
    edit(
        "unknown rope scaling",
        "rope_scaling",
        json!({"rope_type": "yarn"}),
    );
    edit("unknown model type", "model_type", json!("gpt9"));
    edit("unknown activation", "hidden_act", json!("gelu"));
    edit("negative epsilon", "rms_norm_eps", json!(-1.0));
    edit("odd head size", "head_dim", json!(7));
    edit(
        "kv heads not dividing heads",
        "num_key_value_heads",
        json!(3),
    );
    edit(
        "a vocabulary smaller than the tokenizer's",
        "vocab_size",
        json!(4),
    );
    // Each size alone plausible, their product past 64 bits.
    let mut v = config.clone();
    for field in ["num_attention_heads", "num_key_value_heads", "head_dim"] {
        v[field] = json!(1u64 << 33);
    }
    add(
        "config.json heads and head size of 2^33".into(),
        Expect::Fails,
        write_json("config.json", &v),
    );
    let config_text = config.to_string();
    for cut in cut_points(config_text.len(), &[], 6) {
        add(
            format!("config.json cut at byte {cut}"),
            Expect::Fails,
            write("config.json", config_text.as_bytes()[..cut].to_vec()),
        );
    }
    add(
        "config.json a list".into(),
        Expect::Fails,
        write_json("config.json", &json!([])),
    );
    add(
        "config.json not UTF-8".into(),
        Expect::Fails,
        write("config.json", vec![b'{', 0xff, b'}']),
    );

    // generation_config.json and tokenizer_config.json: the fields read, wrong.
    for (file, fields) in [
        ("generation_config.json", &["eos_token_id"][..]),
        (
            "tokenizer_config.json",
            &["bos_token", "eos_token", "chat_template"][..],
        ),
    ] {
        let value = read_json(&pristine.join(file));
        for path in paths(&value, 1) {
            let name = path_name(&path);
            let expect = if fields.contains(&name.as_str()) {
                Expect::Fails
            } else {
                Expect::NoCrash
            };
            let v = replaced(&value, &path, wrong_type(&value[name.as_str()]));
            add(
                format!("{file} `{name}` of the wrong type"),
                expect,
                write_json(file, &v),
            );
        }
        add(
            format!("{file} not JSON"),
            Expect::Fails,
            write(file, b"{\"eos".to_vec()),
        );
    }
    let tok_config = read_json(&pristine.join("tokenizer_config.json"));
    for (label, field, bad) in [
        (
            "a bos token outside the vocabulary",
            "bos_token",
            json!("<nope>"),
        ),
        (
            "an eos token outside the vocabulary",
            "eos_token",
            json!({"content": "<nope>"}),
        ),
        (
            "a listed template without a name",
            "chat_template",
            json!([{"template": "x"}]),
        ),
    ] {
        let v = replaced(&tok_config, &steps(&[field]), bad);
        add(
            format!("tokenizer_config.json {label}"),
            Expect::Fails,
            write_json("tokenizer_config.json", &v),
        );
    }
    add(
        "generation_config.json eos id over 32 bits".into(),
        Expect::Fails,
        write_json(
            "generation_config.json",
            &json!({"eos_token_id": 1u64 << 40}),
        ),
    );

    // A shard index that is wrong.
    for (label, index) in [
        ("weight_map missing", json!({})),
        ("weight_map a list", json!({"weight_map": []})),
        (
            "a file name that is a number",
            json!({"weight_map": {"x": 5}}),
        ),
        (
            "a shard that is missing",
            json!({"weight_map": {"x": "model-00002.safetensors"}}),
        ),
        (
            "a shard outside the folder",
            json!({"weight_map": {"x": "../../nope.safetensors"}}),
        ),
        (
            "a shard that is the folder itself",
            json!({"weight_map": {"x": "."}}),
        ),
    ] {
        add(
            format!("index: {label}"),
            Expect::Fails,
            write_json("model.safetensors.index.json", &index),
        );
    }

    // Missing or misplaced files.
    for file in ["config.json", "model.safetensors"] {
        let f = file.to_string();
        add(
            format!("{file} missing"),
            Expect::Fails,
            Arc::new(move |dir: &Path| std::fs::remove_file(dir.join(&f)).unwrap()),
        );
        let f = file.to_string();
        add(
            format!("{file} is a folder"),
            Expect::Fails,
            Arc::new(move |dir: &Path| {
                std::fs::remove_file(dir.join(&f)).unwrap();
                std::fs::create_dir(dir.join(&f)).unwrap();
            }),
        );
    }
    cases.push(Case::new(
        "the folder is missing",
        Expect::Fails,
        |dir: &Path| {
            let model = dir.join("no-such-model");
            import_args(&model, dir)
        },
    ));
    cases
}

/// Cases for `tokenizer.json` of the checkpoint folder `pristine`: cuts, every field to depth
/// three of the wrong type, and broken models, vocabularies and added tokens.
pub fn tokenizer_cases(pristine: &Path, kind: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |label: String, expect: Expect, edit: Edit| {
        cases.push(import(
            pristine,
            format!("{kind} tokenizer.json {label}"),
            expect,
            edit,
        ));
    };
    let text = std::fs::read(pristine.join("tokenizer.json")).unwrap();
    let tok: Value = serde_json::from_slice(&text).unwrap();
    for cut in cut_points(text.len(), &[], 12) {
        add(
            format!("cut at byte {cut}"),
            Expect::Fails,
            write("tokenizer.json", text[..cut].to_vec()),
        );
    }
    // Depth three reaches model.vocab.<token> and added_tokens[i].<field>; only the first
    // entries of the vocabulary are damaged, to keep the case count down.
    for path in paths(&tok, 3)
        .into_iter()
        .filter(|p| !path_name(p).starts_with("model.vocab."))
        .take(60)
    {
        let name = path_name(&path);
        let v = replaced(&tok, &path, wrong_type(value_at(&tok, &path)));
        add(
            format!("`{name}` of the wrong type"),
            Expect::NoCrash,
            write_json("tokenizer.json", &v),
        );
    }
    let mut edit = |label: &str, path: &[&str], bad: Value| {
        let v = replaced(&tok, &steps(path), bad);
        add(
            label.to_string(),
            Expect::Fails,
            write_json("tokenizer.json", &v),
        );
    };
    edit("unknown model type", &["model", "type"], json!("Nope"));
    edit("vocabulary a list", &["model", "vocab"], json!(["a", "b"]));
    edit("model a string", &["model"], json!("BPE"));
    edit(
        "unknown pre-tokenizer",
        &["pre_tokenizer"],
        json!({"type": "Nope"}),
    );
    edit("unknown decoder", &["decoder"], json!({"type": "Nope"}));
    edit(
        "unknown normalizer",
        &["normalizer"],
        json!({"type": "Nope"}),
    );
    edit(
        "unknown post-processor",
        &["post_processor"],
        json!({"type": "Nope"}),
    );
    edit(
        "an invalid split regex",
        &["pre_tokenizer"],
        json!({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated", "invert": false}),
    );
    edit(
        "added token id over 32 bits",
        &["added_tokens", "0", "id"],
        json!(1u64 << 40),
    );
    edit(
        "added token id far past the vocabulary",
        &["added_tokens", "0", "id"],
        json!(4_000_000_000u64),
    );
    edit(
        "added token id 2^32-1",
        &["added_tokens", "0", "id"],
        json!(u32::MAX),
    );
    edit(
        "added token content a number",
        &["added_tokens", "0", "content"],
        json!(5),
    );
    edit("added tokens an object", &["added_tokens"], json!({"a": 1}));
    edit("padding of the wrong type", &["padding"], json!(5));
    edit(
        "truncation with a string length",
        &["truncation"],
        json!({"max_length": "x"}),
    );
    let first_token = tok["model"]["vocab"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    edit(
        "a token id over 32 bits",
        &["model", "vocab", &first_token],
        json!(1u64 << 40),
    );
    edit(
        "a token id 2^32-1",
        &["model", "vocab", &first_token],
        json!(u32::MAX),
    );
    edit(
        "a negative token id",
        &["model", "vocab", &first_token],
        json!(-1),
    );
    edit(
        "an unknown-token that is not in the vocabulary",
        &["model", "unk_token"],
        json!("<nope-unk>"),
    );
    if tok["model"]["merges"].is_array() {
        edit(
            "a merge of unknown tokens",
            &["model", "merges"],
            json!(["zz qq"]),
        );
        edit("a merge that is a number", &["model", "merges"], json!([5]));
    }
    // More tokens than the model's embedding has rows.
    let mut big = tok.clone();
    let vocab = big["model"]["vocab"].as_object_mut().unwrap();
    let n = vocab.len();
    for i in 0..n + 10 {
        vocab.insert(format!("extra{i}"), json!(n + i));
    }
    add(
        "more tokens than embedding rows".into(),
        Expect::Fails,
        write_json("tokenizer.json", &big),
    );
    add(
        "not JSON".into(),
        Expect::Fails,
        write("tokenizer.json", b"not json".to_vec()),
    );
    add(
        "not UTF-8".into(),
        Expect::Fails,
        write("tokenizer.json", vec![b'{', 0xfe, b'}']),
    );
    add(
        "a folder".into(),
        Expect::Fails,
        Arc::new(|dir: &Path| {
            std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
            std::fs::create_dir(dir.join("tokenizer.json")).unwrap();
        }),
    );
    cases
}
