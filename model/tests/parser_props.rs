//! The checkpoint parsers are total: any bytes given as a GGUF file, a safetensors file, a
//! `config.json` or a `tokenizer.json` give a model or an error, never a panic or an abort.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::gguf::{GgufFile, GgufValue};
use sftvsrl_model::gguf_model::config_from_gguf;
use sftvsrl_model::gguf_tokenizer::tokenizer_from_gguf;
use sftvsrl_model::gguf_write::GgufWriter;
use sftvsrl_model::safetensors::SafetensorsDir;
use sftvsrl_model::{LlamaConfig, Tokenizer, load_pretrained};

/// A folder for this test process, unique per test name.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sftvsrl-props-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens `bytes` as a GGUF file and reads everything it declares.
fn read_gguf(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    if let Ok(g) = GgufFile::open(path) {
        let names: Vec<String> = g.tensor_names().map(String::from).collect();
        for name in names {
            let _ = g.tensor_f32(&name);
        }
        let _ = config_from_gguf(&g);
        let _ = tokenizer_from_gguf(&g);
    }
    let _ = load_pretrained::<CpuBackend>(path, &Default::default());
}

/// A small valid GGUF file: hyperparameters, a tokenizer and two tensors.
fn small_gguf() -> Vec<u8> {
    let tokens = ["a", "b", "ab", "<|endoftext|>"].map(|t| GgufValue::String(t.into()));
    GgufWriter::new()
        .metadata("general.architecture", GgufValue::String("llama".into()))
        .metadata("llama.embedding_length", GgufValue::U32(4))
        .metadata("llama.block_count", GgufValue::U32(1))
        .metadata("llama.feed_forward_length", GgufValue::U32(8))
        .metadata("llama.attention.head_count", GgufValue::U32(2))
        .metadata("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .metadata("tokenizer.ggml.tokens", GgufValue::Array(tokens.to_vec()))
        .metadata(
            "tokenizer.ggml.merges",
            GgufValue::Array(vec![GgufValue::String("a b".into())]),
        )
        .metadata("tokenizer.ggml.eos_token_id", GgufValue::U32(3))
        .tensor("token_embd.weight", &[4, 4], vec![0.5; 16])
        .tensor("output_norm.weight", &[4], vec![1.0; 4])
        .encode()
        .bytes
}

/// A small valid safetensors file holding one F32 tensor.
fn small_safetensors() -> Vec<u8> {
    let header = br#"{"model.norm.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend([0u8; 8]);
    out
}

/// Opens a folder whose `model.safetensors` is `bytes` and reads every tensor it lists.
fn read_safetensors(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    if let Ok(st) = SafetensorsDir::open(dir) {
        let names: Vec<String> = st.names().map(String::from).collect();
        for name in names {
            let _ = st.read_f32(&name);
        }
    }
}

/// JSON text that is often almost valid: pieces of the formats, numbers at the edges of their
/// types, and noise.
fn jsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"dtype\"".to_string()),
        Just("\"F32\"".to_string()),
        Just("\"shape\"".to_string()),
        Just("\"data_offsets\"".to_string()),
        Just("\"model\"".to_string()),
        Just("\"vocab\"".to_string()),
        Just("\"type\"".to_string()),
        Just("\"BPE\"".to_string()),
        Just("\"merges\"".to_string()),
        Just("\"added_tokens\"".to_string()),
        Just("\"hidden_size\"".to_string()),
        Just("18446744073709551615".to_string()),
        Just("4294967295".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e308".to_string()),
        "\\PC{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_gguf(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = scratch("gguf-any");
        read_gguf(&dir.join("x.gguf"), &[b"GGUF\x03\0\0\0".as_slice(), &bytes].concat());
    }

    #[test]
    fn damaged_gguf(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>(), width in 1usize..9) {
        let mut bytes = small_gguf();
        // Overwrite `width` bytes from `at` (a length, a count, a type id …) with `byte`.
        let at = at.index(bytes.len());
        let end = (at + width).min(bytes.len());
        bytes[at..end].fill(byte);
        bytes.truncate(bytes.len() - cut.index(bytes.len() / 4));
        let dir = scratch("gguf-damaged");
        read_gguf(&dir.join("x.gguf"), &bytes);
    }

    #[test]
    fn any_safetensors_header(header in jsonish(), data in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        read_safetensors(&scratch("st-header"), &bytes);
    }

    #[test]
    fn damaged_safetensors(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in 0usize..8) {
        let mut bytes = small_safetensors();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        bytes.truncate(bytes.len() - cut);
        read_safetensors(&scratch("st-damaged"), &bytes);
    }

    #[test]
    fn any_config_json(text in jsonish()) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = LlamaConfig::from_json(&v, Path::new("config.json"));
        }
    }

    #[test]
    fn any_tokenizer_json(text in jsonish()) {
        let dir = scratch("tokenizer");
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, &text).unwrap();
        let _ = Tokenizer::from_file(&path);
    }
}
