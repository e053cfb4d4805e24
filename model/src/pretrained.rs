//! Loading a model with its tokenizer from a path: a Hugging Face checkpoint directory or a
//! GGUF file ([`load_pretrained`]), or a vision-language checkpoint directory with its image
//! processor ([`load_vlm`]).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde_json::Value;

use crate::config::{LlamaConfig, token_ids};
use crate::error::{ModelError, read_json};
use crate::gguf::GgufFile;
use crate::gguf_model::{GgufWeights, config_from_gguf};
use crate::gguf_tokenizer::tokenizer_from_gguf;
use crate::image_processor::ImageProcessor;
use crate::llama::Llama;
use crate::safetensors::SafetensorsDir;
use crate::tokenizer::Tokenizer;
use crate::vlm::Vlm;
use crate::vlm_config::{VLM_MODEL_TYPE, VlmConfig};
use crate::weights::check_all_read;

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

/// Whether `path` is a vision-language checkpoint directory (its `config.json` says
/// `model_type` `sftvsrl_vlm`), to be read with [`load_vlm`].
pub fn is_vlm_checkpoint(path: &Path) -> bool {
    let config = path.join("config.json");
    config.is_file() && read_json(&config).is_ok_and(|json| is_vlm_config(&json))
}

fn is_vlm_config(json: &Value) -> bool {
    json.get("model_type").and_then(Value::as_str) == Some(VLM_MODEL_TYPE)
}

fn load_hf_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<Pretrained<B>, ModelError> {
    let config_path = require(dir, "config.json", "the model's config.json")?;
    let json = read_json(&config_path)?;
    if is_vlm_config(&json) {
        return Err(ModelError::config(
            &config_path,
            "model_type",
            format!("`{VLM_MODEL_TYPE}` is a vision-language model: load it with load_vlm"),
        ));
    }
    let config = LlamaConfig::from_json(&json, &config_path)?;
    let mut weights = SafetensorsDir::open(dir)?;
    let model = Llama::load(&config, &mut weights, device)?;
    check_all_read(&weights, |n| hf_redundant(n, config.tie_word_embeddings))?;
    let (tokenizer, stop_tokens) = hf_tokenizer(dir, &config)?;
    Ok(Pretrained {
        model,
        tokenizer,
        stop_tokens,
    })
}

fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<Pretrained<B>, ModelError> {
    let gguf = GgufFile::open(path)?;
    let config = config_from_gguf(&gguf)?;
    let mut weights = GgufWeights::new(&gguf, &config);
    let model = Llama::load(&config, &mut weights, device)?;
    // `output.weight` beside tied embeddings: a copy of the embedding matrix.
    let tied = config.tie_word_embeddings;
    check_all_read(&weights, |n| tied && n == "output.weight")?;
    let tokenizer = if gguf.get("tokenizer.ggml.model").is_some() {
        Some(tokenizer_from_gguf(&gguf)?)
    } else {
        None
    };
    let stop_tokens = stop_tokens(&config, tokenizer.as_ref(), Vec::new(), path)?;
    Ok(Pretrained {
        model,
        tokenizer,
        stop_tokens,
    })
}

/// Tensors of a Hugging Face checkpoint that the model derives itself: RoPE's inverse
/// frequencies (older checkpoints store them) and, with tied embeddings, the output matrix.
fn hf_redundant(name: &str, tied: bool) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (tied && name.ends_with("lm_head.weight"))
}

/// A vision-language model and what it takes to prompt it.
#[derive(Debug)]
pub struct PretrainedVlm<B: Backend> {
    pub model: Vlm<B>,
    /// How images become the model's pixels (`preprocessor_config.json`).
    pub processor: ImageProcessor,
    /// `None` for a checkpoint without `tokenizer.json`.
    pub tokenizer: Option<Tokenizer>,
    /// Tokens that end a generated answer, gathered as [`Pretrained::stop_tokens`].
    pub stop_tokens: Vec<u32>,
}

/// Loads a vision-language checkpoint directory, as [`crate::save_vlm`] writes it:
/// `config.json` (`model_type` `sftvsrl_vlm`), the weights, `preprocessor_config.json`, and
/// optionally `tokenizer.json` and `generation_config.json`. ([`load_pretrained`] refuses
/// such a directory with an error pointing here.)
pub fn load_vlm<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<PretrainedVlm<B>, ModelError> {
    let config_path = require(dir, "config.json", "the model's config.json")?;
    let config = VlmConfig::from_file(&config_path)?;
    let processor_path = require(
        dir,
        "preprocessor_config.json",
        "the image processor's preprocessor_config.json",
    )?;
    let processor = ImageProcessor::from_file(&processor_path)?;
    let mut weights = SafetensorsDir::open(dir)?;
    let model = Vlm::load(&config, &mut weights, device)?;
    let tied = config.text_config.tie_word_embeddings;
    check_all_read(&weights, |n| hf_redundant(n, tied))?;
    let (tokenizer, stop_tokens) = hf_tokenizer(dir, &config.text_config)?;
    Ok(PretrainedVlm {
        model,
        processor,
        tokenizer,
        stop_tokens,
    })
}

/// `dir/name`, or an error saying it is missing and what it should hold.
fn require(dir: &Path, name: &str, what: &'static str) -> Result<PathBuf, ModelError> {
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile { path, what })
    }
}

/// The tokenizer of a checkpoint directory (if it has `tokenizer.json`) and the stop tokens
/// of `config`, `generation_config.json` and the tokenizer.
fn hf_tokenizer(
    dir: &Path,
    config: &LlamaConfig,
) -> Result<(Option<Tokenizer>, Vec<u32>), ModelError> {
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = if tokenizer_path.exists() {
        Some(Tokenizer::from_file(&tokenizer_path)?)
    } else {
        None
    };
    let mut generation_stops = Vec::new();
    let generation_path = dir.join("generation_config.json");
    if generation_path.exists() {
        let generation = read_json(&generation_path)?;
        match generation.get("eos_token_id") {
            None | Some(Value::Null) => {}
            Some(v) => generation_stops.extend(token_ids(v).ok_or_else(|| {
                ModelError::config(
                    &generation_path,
                    "eos_token_id",
                    "not a token id or list of ids",
                )
            })?),
        }
    }
    let stops = stop_tokens(
        config,
        tokenizer.as_ref(),
        generation_stops,
        &tokenizer_path,
    )?;
    Ok((tokenizer, stops))
}

/// Checks the tokenizer fits the embedding and gathers the stop tokens: `config`'s EOS ids,
/// then `extra`, then the tokenizer's, without repeats.
fn stop_tokens(
    config: &LlamaConfig,
    tokenizer: Option<&Tokenizer>,
    extra: Vec<u32>,
    tokenizer_path: &Path,
) -> Result<Vec<u32>, ModelError> {
    let vocab = config.vocab_size;
    let mut stop_tokens = config.eos_token_ids.clone();
    stop_tokens.extend(extra);
    if let Some(t) = tokenizer {
        if t.id_bound() > vocab as u64 {
            return Err(ModelError::Tokenizer {
                path: tokenizer_path.to_path_buf(),
                message: format!(
                    "token ids up to {}, but the model's embedding has only {vocab} rows",
                    t.id_bound() - 1
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
    Ok(stop_tokens)
}

#[cfg(test)]
mod tests {
    use safetensors::SafeTensors;
    use safetensors::tensor::TensorView;

    use super::*;
    use crate::device::CpuBackend;
    use crate::export::save_vlm;
    use crate::vision::tests::pixels;
    use crate::vlm::tests::{left_padded, prompts};
    use crate::vlm_config::tests::tiny_vlm;

    type B = CpuBackend;

    /// A fresh directory under the system's temporary folder.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sftvsrl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn logits(model: &Vlm<B>) -> Vec<f32> {
        let (padded, ids, mask) = left_padded::<B>(&prompts());
        let rows: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
        let spans = model.image_spans(&rows, 3).unwrap();
        let images = pixels::<B>(&model.config().vision_config, 3, 0);
        model
            .forward(ids, mask, Some((images, &spans)))
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap()
    }

    /// Rewrites `dir/model.safetensors` with `edit` applied to its (name, shape, bytes) list.
    fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
            .collect();
        edit(&mut tensors);
        let views = tensors.iter().map(|(name, shape, data)| {
            let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
            (name.clone(), view)
        });
        safetensors::serialize_to_file(views, None, &path).unwrap();
    }

    #[test]
    fn a_saved_vlm_loads_back_with_identical_logits() {
        let device = Default::default();
        let model = Vlm::<B>::init(&tiny_vlm(), 5, &device);
        let mut processor = ImageProcessor::new([16, 24]);
        processor.crop = Some([0, 0, 32, 32]);
        let dir = temp_dir("vlm-round-trip");
        let written = save_vlm(&model, &processor, None, &[3], &dir).unwrap();
        assert_eq!(written.len(), 4);

        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let shape = |name: &str| file.tensor(name).map(|t| t.shape().to_vec()).ok();
        assert_eq!(
            shape("vision_tower.embeddings.patch_embedding.weight"),
            Some(vec![32, 3, 8, 8])
        );
        assert_eq!(
            shape("vision_tower.embeddings.position_embedding.weight"),
            Some(vec![6, 32])
        );
        for (name, expected) in [
            (
                "vision_tower.encoder.layers.1.self_attn.out_proj.weight",
                vec![32, 32],
            ),
            ("vision_tower.encoder.layers.0.layer_norm1.bias", vec![32]),
            ("vision_tower.encoder.layers.0.mlp.fc1.weight", vec![48, 32]),
            ("vision_tower.post_layernorm.weight", vec![32]),
            ("multi_modal_projector.linear_1.weight", vec![48, 32]),
            ("multi_modal_projector.linear_2.bias", vec![48]),
            (
                "language_model.model.layers.1.self_attn.q_proj.weight",
                vec![48, 48],
            ),
            ("language_model.model.embed_tokens.weight", vec![40, 48]),
            ("language_model.lm_head.weight", vec![40, 48]),
        ] {
            assert_eq!(shape(name), Some(expected), "{name}");
        }

        let loaded = load_vlm::<B>(&dir, &device).unwrap();
        assert_eq!(loaded.processor, processor);
        assert_eq!(loaded.stop_tokens, [3]);
        assert_eq!(loaded.model.config(), model.config());
        assert_eq!(logits(&loaded.model), logits(&model));

        let e = load_pretrained::<B>(&dir, &device).unwrap_err().to_string();
        assert!(
            e.ends_with("is a vision-language model: load it with load_vlm"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_vlm_checkpoints_name_the_file_and_tensor_or_field() {
        let device = Default::default();
        let model = Vlm::<B>::init(&tiny_vlm(), 5, &device);
        let dir = temp_dir("vlm-bad");
        let save = || save_vlm(&model, &ImageProcessor::new([16, 24]), None, &[], &dir).unwrap();
        let error = || load_vlm::<B>(&dir, &device).unwrap_err().to_string();

        save();
        let missing = "vision_tower.encoder.layers.1.layer_norm2.bias";
        edit_weights(&dir, |t| t.retain(|(name, _, _)| name != missing));
        assert_eq!(
            error(),
            format!("{}: tensor `{missing}` is missing", dir.display())
        );

        save();
        let reshaped = "multi_modal_projector.linear_1.weight";
        edit_weights(&dir, |t| {
            let entry = t.iter_mut().find(|(name, _, _)| name == reshaped).unwrap();
            entry.1 = vec![32, 48];
        });
        assert!(error().ends_with(&format!(
            "tensor `{reshaped}` has shape [32, 48], expected [48, 32]"
        )));

        save();
        let config_path = dir.join("config.json");
        let mut config = read_json(&config_path).unwrap();
        config["vision_config"]["num_attention_heads"] = serde_json::json!(3);
        std::fs::write(&config_path, config.to_string()).unwrap();
        assert_eq!(
            error(),
            format!(
                "{}: field `vision_config.num_attention_heads`: 3 does not divide hidden_size 32",
                config_path.display()
            )
        );

        save();
        std::fs::remove_file(dir.join("preprocessor_config.json")).unwrap();
        assert!(
            error().contains("preprocessor_config.json: missing"),
            "{}",
            error()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
