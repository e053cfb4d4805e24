//! Broken checkpoints give one clear error naming the file and the tensor or field, never a
//! panic.

use std::path::{Path, PathBuf};

use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::{ModelError, load_pretrained};

/// A scratch copy of fixture `name` that a test may damage.
fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dst = std::env::temp_dir().join(format!("sftvsrl-broken-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

fn load_error(dir: &Path) -> ModelError {
    let e = load_pretrained::<CpuBackend>(dir, &Default::default()).unwrap_err();
    std::fs::remove_dir_all(dir).ok();
    e
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn missing_path_and_missing_config() {
    let e = load_error(Path::new("/nonexistent/model"));
    assert!(e.to_string().contains("/nonexistent/model: missing"), "{e}");

    let dir = copy_fixture("tiny_qwen2", "noconfig");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = load_error(&dir);
    assert!(matches!(e, ModelError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("config.json: missing"), "{e}");
}

#[test]
fn truncated_weights_name_the_file() {
    let dir = copy_fixture("tiny_qwen2", "truncated");
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_error(&dir);
    assert!(matches!(e, ModelError::Safetensors { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn missing_shard_names_the_file() {
    let dir = copy_fixture("tiny_llama", "noshard");
    std::fs::remove_file(dir.join("model-00002-of-00004.safetensors")).unwrap();
    let e = load_error(&dir);
    assert!(
        e.to_string().contains("model-00002-of-00004.safetensors"),
        "{e}"
    );
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let dir = copy_fixture("tiny_qwen2", "shape");
    edit_config(&dir, |c| c["intermediate_size"] = 100.into());
    let e = load_error(&dir);
    assert!(matches!(e, ModelError::TensorShape { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("model.layers.0.mlp.gate_proj.weight") && msg.contains("[128, 64]"),
        "{msg}"
    );
}

#[test]
fn untied_config_without_lm_head_names_the_tensor() {
    let dir = copy_fixture("tiny_qwen2", "untied");
    edit_config(&dir, |c| c["tie_word_embeddings"] = false.into());
    let e = load_error(&dir);
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    assert!(e.to_string().contains("`lm_head.weight` is missing"), "{e}");
}

#[test]
fn bad_config_field_and_bad_tokenizer() {
    let dir = copy_fixture("tiny_qwen2", "badfield");
    edit_config(&dir, |c| c["num_key_value_heads"] = 3.into());
    let e = load_error(&dir);
    assert!(e.to_string().contains("field `num_key_value_heads`"), "{e}");

    let dir = copy_fixture("tiny_qwen2", "badtok");
    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    let e = load_error(&dir);
    assert!(matches!(e, ModelError::Json { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

#[test]
fn garbage_gguf_is_an_error() {
    let dir = std::env::temp_dir().join(format!("sftvsrl-badgguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.gguf");
    std::fs::write(
        &path,
        b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    )
    .unwrap();
    let e = load_error(&path);
    assert!(
        e.to_string().contains("model.gguf: not a valid GGUF file"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Tensors the model has no place for are an error, not dropped: here a config that claims
/// fewer layers than the checkpoint holds.
#[test]
fn tensors_the_model_does_not_read_are_refused() {
    let dir = copy_fixture("tiny_qwen2", "unread");
    edit_config(&dir, |c| c["num_hidden_layers"] = 1.into());
    let e = load_error(&dir);
    assert!(matches!(e, ModelError::UnusedTensors { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("model.safetensors") || msg.contains("tiny_qwen2") || msg.contains("unread"),
        "{msg}"
    );
    assert!(msg.contains("model.layers.1."), "{msg}");
    // The same checkpoint with its own config loads.
    let dir = copy_fixture("tiny_qwen2", "read");
    load_pretrained::<CpuBackend>(&dir, &Default::default()).unwrap();
    std::fs::remove_dir_all(dir).ok();
}
