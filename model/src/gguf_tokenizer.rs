//! The tokenizer embedded in a GGUF file (`tokenizer.ggml.*`), rebuilt as a Hugging Face
//! byte-level BPE tokenizer: vocabulary, merges, control tokens as special tokens, and the
//! pre-tokenizer that llama.cpp's `tokenizer.ggml.pre` names.

use serde_json::{Value, json};

use crate::chat_template::ChatTemplate;
use crate::error::ModelError;
use crate::gguf::{GgufFile, GgufValue};
use crate::gguf_model::token_id;
use crate::tokenizer::Tokenizer;

/// GGUF token types (`tokenizer.ggml.token_type`) that are special tokens.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer of `gguf` (BPE models, `tokenizer.ggml.model = "gpt2"`).
pub fn tokenizer_from_gguf(gguf: &GgufFile) -> Result<Tokenizer, ModelError> {
    let path = gguf.path();
    let err = |m: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        message: m,
    };
    let strings = |key: &str| -> Result<Vec<&str>, ModelError> {
        gguf.get_as(key, "an array of strings", GgufValue::as_array)?
            .ok_or_else(|| err(format!("metadata `{key}` is missing")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| err(format!("`{key}` holds a non-string")))
            })
            .collect()
    };
    let token_id = |key: &str| gguf.get_as(key, "a token id", token_id);

    match gguf.get_as("tokenizer.ggml.model", "a string", GgufValue::as_str)? {
        Some("gpt2") => {}
        Some(other) => {
            return Err(err(format!(
                "tokenizer model `{other}` is not supported (gpt2 byte-level BPE)"
            )));
        }
        None => return Err(err("metadata `tokenizer.ggml.model` is missing".into())),
    }
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i64> = match gguf.get_as(
        "tokenizer.ggml.token_type",
        "an array of integers",
        GgufValue::as_array,
    )? {
        Some(items) => items
            .iter()
            .map(|t| match *t {
                GgufValue::I32(x) => Ok(x as i64),
                ref other => other.as_u64().map(|x| x as i64).ok_or_else(|| {
                    err(format!(
                        "`tokenizer.ggml.token_type` holds {other:?}, not an integer"
                    ))
                }),
            })
            .collect::<Result<_, _>>()?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(err(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }

    let pre = gguf
        .get_as("tokenizer.ggml.pre", "a string", GgufValue::as_str)?
        .unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let pre_tokenizer = match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" | "llama3" | "smaug-bpe" => json!({"type": "Sequence", "pretokenizers": [
            split(LLAMA3_SPLIT), byte_level(false)]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(QWEN2_SPLIT), byte_level(false)]}),
        other => {
            return Err(err(format!(
                "pre-tokenizer `{other}` is not supported (default, gpt2, smollm, llama-bpe, qwen2)"
            )));
        }
    };

    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == CONTROL || **ty == USER_DEFINED)
        .map(|(i, (t, ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": *ty == CONTROL})
        })
        .collect();

    let name_of = |key: &str| -> Result<Option<String>, ModelError> {
        match token_id(key)? {
            None => Ok(None),
            Some(i) => tokens
                .get(i as usize)
                .map(|t| Some(t.to_string()))
                .ok_or_else(|| err(format!("`{key}` = {i} is outside the vocabulary"))),
        }
    };
    let bos = name_of("tokenizer.ggml.bos_token_id")?;
    let eos = name_of("tokenizer.ggml.eos_token_id")?;
    let add_bos = gguf
        .get_as(
            "tokenizer.ggml.add_bos_token",
            "a boolean",
            GgufValue::as_bool,
        )?
        .unwrap_or(false);
    let post_processor = match (&bos, add_bos) {
        (Some(b), true) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {b: {"id": b, "ids": [token_id("tokenizer.ggml.bos_token_id")?], "tokens": [b]}},
        }),
        _ => Value::Null,
    };

    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    });
    let jinja = gguf.get_as("tokenizer.chat_template", "a string", GgufValue::as_str)?;
    let template = ChatTemplate::detect(jinja, |t| tokens.contains(&t));
    Tokenizer::from_json(&json, bos, eos, Some(template), path)
}
