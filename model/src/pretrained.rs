//! Loading a model with its tokenizer from a path: a Hugging Face checkpoint directory or a
//! GGUF file.

use std::path::Path;

use burn::tensor::backend::Backend;
use serde_json::Value;

use crate::config::{LlamaConfig, token_ids};
use crate::error::{ModelError, read_json};
use crate::gguf::GgufFile;
use crate::gguf_model::{GgufWeights, config_from_gguf};
use crate::gguf_tokenizer::tokenizer_from_gguf;
use crate::llama::Llama;
use crate::safetensors::SafetensorsDir;
use crate::tokenizer::Tokenizer;

/// A model and what it takes to prompt it.
#[derive(Debug)]
pub struct Pretrained<B: Backend> {
    pub model: Llama<B>,
    /// `None` for a checkpoint without `tokenizer.json` (e.g. the golden test fixtures).
    pub tokenizer: Option<Tokenizer>,
    /// Tokens that end a generated answer: the EOS ids of `config.json` and
    /// `generation_config.json`, and the tokenizer's EOS and end-of-turn tokens.
    pub stop_tokens: Vec<u32>,
}

/// Loads `path`: a directory with `config.json`, `model.safetensors` (or shards with
/// `model.safetensors.index.json`) and optionally `tokenizer.json` and
/// `generation_config.json`; or a `.gguf` file with its embedded tokenizer.
pub fn load_pretrained<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<Pretrained<B>, ModelError> {
    if path.is_dir() {
        load_hf_dir(path, device)
    } else if path.is_file() {
        load_gguf(path, device)
    } else {
        Err(ModelError::MissingFile {
            path: path.to_path_buf(),
            what: "a checkpoint directory or a .gguf file",
        })
    }
}

fn load_hf_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<Pretrained<B>, ModelError> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(ModelError::MissingFile {
            path: config_path,
            what: "the model's config.json",
        });
    }
    let config = LlamaConfig::from_file(&config_path)?;
    let mut weights = SafetensorsDir::open(dir)?;
    let model = Llama::load(&config, &mut weights, device)?;

    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = if tokenizer_path.exists() {
        Some(Tokenizer::from_file(&tokenizer_path)?)
    } else {
        None
    };
    let mut stop_tokens = config.eos_token_ids.clone();
    let generation_path = dir.join("generation_config.json");
    if generation_path.exists() {
        let generation = read_json(&generation_path)?;
        match generation.get("eos_token_id") {
            None | Some(Value::Null) => {}
            Some(v) => stop_tokens.extend(token_ids(v).ok_or_else(|| {
                ModelError::config(
                    &generation_path,
                    "eos_token_id",
                    "not a token id or list of ids",
                )
            })?),
        }
    }
    finish(model, tokenizer, stop_tokens, &tokenizer_path)
}

fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<Pretrained<B>, ModelError> {
    let gguf = GgufFile::open(path)?;
    let config = config_from_gguf(&gguf)?;
    let model = Llama::load(&config, &mut GgufWeights::new(&gguf, &config), device)?;
    let tokenizer = if gguf.get("tokenizer.ggml.model").is_some() {
        Some(tokenizer_from_gguf(&gguf)?)
    } else {
        None
    };
    finish(model, tokenizer, config.eos_token_ids.clone(), path)
}

/// Checks the tokenizer fits the embedding and gathers the stop tokens.
fn finish<B: Backend>(
    model: Llama<B>,
    tokenizer: Option<Tokenizer>,
    mut stop_tokens: Vec<u32>,
    tokenizer_path: &Path,
) -> Result<Pretrained<B>, ModelError> {
    let vocab = model.config().vocab_size;
    if let Some(t) = &tokenizer {
        if t.vocab_size() > vocab {
            return Err(ModelError::Tokenizer {
                path: tokenizer_path.to_path_buf(),
                message: format!(
                    "{} tokens, but the model's embedding has only {vocab} rows",
                    t.vocab_size()
                ),
            });
        }
        stop_tokens.extend(t.stop_tokens());
    }
    let mut seen = Vec::new();
    stop_tokens.retain(|t| {
        let new = !seen.contains(t);
        seen.push(*t);
        new
    });
    Ok(Pretrained {
        model,
        tokenizer,
        stop_tokens,
    })
}
