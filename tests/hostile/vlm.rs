//! Hostile vision-language checkpoint folders, loaded by `sftvsrl eval --checkpoint DIR` (one
//! GP-VL episode): `preprocessor_config.json` and the vision part of `config.json` with every
//! field of the wrong type, missing, zero, negative or huge, and `model.safetensors` cut at the
//! vision tensors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::corrupt::{
    Step, copy_dir, cut_points, path_name, paths, removed, replaced, value_at, wrong_type,
};
use super::{Case, Expect, args, s};

/// What a case does to its copy of the checkpoint folder.
type Edit = Arc<dyn Fn(&Path) + Send + Sync>;

/// Trains a one-step vision-language model from scratch into `dir/runs/vl/final` and writes
/// the evaluation config; returns the pristine evaluation command.
pub fn pristine(dir: &Path) -> Vec<String> {
    let sft = format!(
        r#"name = "vl"
runs_dir = "{runs}"
[data]
path = "{data}"
valid_fraction = 0.0
[data.generate]
n = 4
seed = 0
vision = true
image_size = 128
card_faces = "large_rank"
solution = "hand_order"
prompt_layout = "compact"
[model]
init = "scratch"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[model.vision]
image_size = [48, 128]
crop = [0, 40, 128, 48]
patch_size = 16
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
projector_merge = 1
[train]
epochs = 1
micro_batch = 4
lr = 1e-3
checkpoint_every = 1
answer_match = 0
max_steps = 1
"#,
        runs = s(&dir.join("runs")),
        data = s(&dir.join("data/data.jsonl")),
    );
    let sft_path = dir.join("sft.toml");
    std::fs::write(&sft_path, sft).unwrap();
    let (code, err, _) = super::run_binary(&args(&["sft", &s(&sft_path), "--plain"]), dir);
    assert_eq!(code, Some(0), "the pristine vision-language run: {err}");
    let eval = "variants = [\"gp-vl-id\"]\nepisodes = 1\nseed = 1\nverify_iters = [1]\n\
                max_new_tokens = 4\ntemperature = 0.0\nbatch = 1\ntranscripts = 0\n\
                prompt_layout = \"compact\"\nimage_size = 128\ncard_faces = \"large_rank\"\n";
    std::fs::write(dir.join("eval.toml"), eval).unwrap();
    eval_args(&model_dir(dir), dir, dir)
}

fn model_dir(pristine: &Path) -> PathBuf {
    pristine.join("runs/vl/final")
}

fn eval_args(model: &Path, dir: &Path, pristine: &Path) -> Vec<String> {
    args(&[
        "eval",
        &s(&pristine.join("eval.toml")),
        "--checkpoint",
        &s(model),
        "--out",
        &s(&dir.join("out")),
    ])
}

/// A case that copies the pristine model into its folder, applies `edit` and evaluates it;
/// the error must name the file `names` of the copy (the copy itself when empty).
fn case(pristine: &Path, label: String, expect: Expect, names: &str, edit: Edit) -> Case {
    let pristine = pristine.to_path_buf();
    let names = names.to_string();
    Case::new(label, expect, move |dir: &Path| {
        let model = dir.join("model");
        copy_dir(&model_dir(&pristine), &model);
        edit(&model);
        let named = match names.as_str() {
            "" => model.clone(),
            file => model.join(file),
        };
        (eval_args(&model, dir, &pristine), s(&named))
    })
}

fn write_json(name: &str, value: Value) -> Edit {
    let name = name.to_string();
    Arc::new(move |dir: &Path| std::fs::write(dir.join(&name), value.to_string()).unwrap())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Values no size field may take.
fn bad_sizes() -> [(&'static str, Value); 4] {
    [
        ("zero", json!(0)),
        ("negative", json!(-3)),
        ("huge", json!(1u64 << 40)),
        ("fractional", json!(2.5)),
    ]
}

pub fn cases(pristine: &Path) -> Vec<Case> {
    let model = model_dir(pristine);
    let mut cases = Vec::new();
    let mut add = |label: String, expect: Expect, names: &str, edit: Edit| {
        cases.push(case(pristine, label, expect, names, edit));
    };

    // preprocessor_config.json: every field.
    let name = "preprocessor_config.json";
    let pre = read_json(&model.join(name));
    for path in paths(&pre, 2) {
        let field = path_name(&path);
        let here = value_at(&pre, &path);
        add(
            format!("{name} `{field}` of the wrong type"),
            Expect::Fails,
            name,
            write_json(name, replaced(&pre, &path, wrong_type(here))),
        );
        if matches!(path.last(), Some(Step::Key(_))) {
            add(
                format!("{name} `{field}` removed"),
                Expect::NoCrash,
                name,
                write_json(name, removed(&pre, &path)),
            );
        }
        if here.is_number() {
            for (what, value) in bad_sizes() {
                add(
                    format!("{name} `{field}` {what}"),
                    Expect::NoCrash,
                    name,
                    write_json(name, replaced(&pre, &path, value)),
                );
            }
        }
    }
    add(
        format!("{name} missing"),
        Expect::Fails,
        name,
        Arc::new(|dir: &Path| std::fs::remove_file(dir.join("preprocessor_config.json")).unwrap()),
    );

    // config.json: the vision fields.
    let name = "config.json";
    let config = read_json(&model.join(name));
    let vision_key = ["vision_config", "vision"]
        .into_iter()
        .find(|k| config.get(*k).is_some_and(Value::is_object))
        .expect("the pristine config has a vision section");
    for path in paths(&config[vision_key], 2) {
        let mut full = vec![Step::Key(vision_key.to_string())];
        full.extend(path);
        let field = path_name(&full);
        let here = value_at(&config, &full);
        add(
            format!("{name} `{field}` of the wrong type"),
            Expect::Fails,
            name,
            write_json(name, replaced(&config, &full, wrong_type(here))),
        );
        if matches!(full.last(), Some(Step::Key(_))) {
            add(
                format!("{name} `{field}` removed"),
                Expect::NoCrash,
                name,
                write_json(name, removed(&config, &full)),
            );
        }
        if here.is_u64() {
            // A size the weights cannot have may be reported against the weights: the error
            // names the folder.
            for (what, value) in bad_sizes() {
                add(
                    format!("{name} `{field}` {what}"),
                    Expect::Fails,
                    "",
                    write_json(name, replaced(&config, &full, value)),
                );
            }
        }
    }

    // model.safetensors: cut at and around the vision tensors.
    let name = "model.safetensors";
    let weights = std::fs::read(model.join(name)).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
    let boundaries: Vec<usize> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("vision") || k.contains("projector"))
        .map(|(_, v)| 8 + header_len + v["data_offsets"][0].as_u64().unwrap() as usize)
        .collect();
    assert!(
        !boundaries.is_empty(),
        "the pristine model has vision tensors"
    );
    for cut in cut_points(weights.len(), &boundaries, 0) {
        let bytes = weights[..cut].to_vec();
        add(
            format!("{name} cut at byte {cut}"),
            Expect::Fails,
            name,
            Arc::new(move |dir: &Path| {
                std::fs::write(dir.join("model.safetensors"), &bytes).unwrap()
            }),
        );
    }
    cases
}
