//! What a run starts from: the data file (written first when asked for), the tokenizer and the
//! model (from scratch or a checkpoint).

use std::path::Path;

use burn::tensor::backend::Backend;
use sftvsrl_envs::expert::write_jsonl;
use sftvsrl_envs::gp::episode::check_config;
use sftvsrl_envs::gp::expert::expert_example;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::{Llama, LlamaConfig, Tokenizer, load_pretrained, word_level_tokenizer};

use crate::config::{DataConfig, ModelConfig};
use crate::data::ChatExample;
use crate::error::SftError;

/// Writes GP-L expert data to `data.path` when it is missing and `data.generate` asks for it;
/// example `i` follows face-card rule `i mod len` of `face_rules`.
pub fn ensure_data(data: &DataConfig) -> Result<(), SftError> {
    if data.path.exists() {
        return Ok(());
    }
    let Some(generate) = &data.generate else {
        return Err(SftError::io(
            &data.path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such data file"),
        ));
    };
    let dir = data.path.parent().unwrap_or(Path::new("."));
    let configs: Vec<GpConfig> = generate
        .face_rules
        .iter()
        .map(|&face_cards| GpConfig {
            face_cards,
            prompt_layout: generate.prompt_layout,
            ..GpConfig::variant(Variant::Id, false)
        })
        .collect();
    for cfg in &configs {
        check_config(cfg).map_err(|e| SftError::Invalid(format!("data.generate: {e}")))?;
    }
    let examples = (0..generate.n as u64).map(|i| {
        let cfg = &configs[i as usize % configs.len()];
        expert_example(cfg, generate.seed, i, generate.solution)
    });
    let (written, _) = write_jsonl(examples, dir).map_err(|e| SftError::io(dir, e))?;
    if written != data.path {
        std::fs::rename(&written, &data.path).map_err(|e| SftError::io(&data.path, e))?;
    }
    Ok(())
}

/// A model and its tokenizer.
pub struct ModelAndTokenizer<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: Tokenizer,
}

/// Builds the model of `config`: from scratch (seeded, with a word-level tokenizer over
/// `examples`) or loaded from a checkpoint.
pub fn build_model<B: Backend>(
    config: &ModelConfig,
    examples: &[ChatExample],
    max_len: usize,
    seed: u64,
    device: &B::Device,
) -> Result<ModelAndTokenizer<B>, SftError> {
    match config {
        ModelConfig::Scratch {
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            min_count,
        } => {
            let corpus: Vec<&str> = examples
                .iter()
                .flat_map(|e| {
                    e.system
                        .iter()
                        .map(String::as_str)
                        .chain(e.prompt.iter().map(|t| t.text.as_str()))
                        .chain([e.response.as_str()])
                })
                .collect();
            let tokenizer = word_level_tokenizer(corpus, *min_count)?;
            let llama = LlamaConfig {
                hidden_size: *hidden_size,
                intermediate_size: *intermediate_size,
                num_hidden_layers: *num_hidden_layers,
                num_attention_heads: *num_attention_heads,
                num_key_value_heads: *num_key_value_heads,
                head_dim: hidden_size / num_attention_heads,
                max_position_embeddings: max_len.max(2048),
                bos_token_id: tokenizer.bos_id(),
                eos_token_ids: tokenizer.eos_id().into_iter().collect(),
                ..LlamaConfig::tiny(tokenizer.vocab_size())
            };
            Ok(ModelAndTokenizer {
                model: Llama::init(&llama, seed, device),
                tokenizer,
            })
        }
        ModelConfig::Pretrained { path } => {
            let loaded = load_pretrained::<B>(path, device)?;
            let tokenizer = loaded.tokenizer.ok_or_else(|| SftError::Config {
                path: path.clone(),
                message: "the checkpoint has no tokenizer.json".into(),
            })?;
            Ok(ModelAndTokenizer {
                model: loaded.model,
                tokenizer,
            })
        }
    }
}
