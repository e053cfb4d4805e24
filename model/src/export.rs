//! Writing a model back as a Hugging Face checkpoint directory (`config.json`,
//! `generation_config.json`, `model.safetensors` in f32, and the tokenizer files), loadable by
//! transformers and by [`crate::load_pretrained`]; a vision-language model adds
//! `preprocessor_config.json` and loads with [`crate::load_vlm`]. Files are written under temporary names and
//! renamed, so an interrupted export never leaves a half-written file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, backend::Backend};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

use crate::error::ModelError;
use crate::image_processor::ImageProcessor;
use crate::llama::Llama;
use crate::lora::{lora_params, merge_lora};
use crate::tokenizer::Tokenizer;
use crate::vlm::Vlm;

/// Writes `bytes` to `path` through a temporary file in the same folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let write = || {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        // On disk before the rename, so that a crash leaves the old file or the new one.
        file.sync_all()
    };
    write().map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// Collects every parameter under its Burn module path (norm scales and shifts renamed to HF's
/// `weight` and `bias`), in HF layout.
#[derive(Default)]
struct HfTensors {
    path: Vec<String>,
    containers: Vec<String>,
    tensors: Vec<(Vec<String>, Vec<usize>, Vec<f32>)>,
}

impl<B: Backend> ModuleVisitor<B> for HfTensors {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let mut parts = self.path.clone();
        let is_linear_weight = self.containers.last().map(String::as_str) == Some("Struct:Linear")
            && parts.last().map(String::as_str) == Some("weight");
        if let Some(last) = parts.last_mut() {
            match last.as_str() {
                "gamma" => *last = "weight".into(),
                "beta" => *last = "bias".into(),
                _ => {}
            }
        }
        // Burn keeps linear weights as [in, out]; HF as [out, in].
        let tensor = if is_linear_weight {
            param.val().transpose()
        } else {
            param.val()
        };
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("converted to f32");
        self.tensors.push((parts, shape, values));
    }
}

/// The HF name of a [`Llama`] parameter at module path `parts`.
fn llama_name(parts: &[String]) -> String {
    if parts == ["lm_head"] {
        "lm_head.weight".into()
    } else {
        format!("model.{}", parts.join("."))
    }
}

/// The HF name of a [`Vlm`] parameter at module path `parts`: the language model's own
/// names under `language_model.`, the other parts' paths as they are.
fn vlm_name(parts: &[String]) -> String {
    match parts.split_first() {
        Some((first, rest)) if first == "language_model" => {
            format!("language_model.{}", llama_name(rest))
        }
        _ => parts.join("."),
    }
}

/// Every parameter of `module` under the HF name `name` gives its module path.
fn hf_tensors<B: Backend, M: Module<B>>(
    module: &M,
    name: fn(&[String]) -> String,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut collected = HfTensors::default();
    module.visit(&mut collected);
    collected
        .tensors
        .into_iter()
        .map(|(parts, shape, values)| (name(&parts), shape, values))
        .collect()
}

/// Writes `dir/model.safetensors` (f32) of named tensors.
fn write_safetensors(
    dir: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Result<PathBuf, ModelError> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| ModelError::tensor(dir, name, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weights = dir.join("model.safetensors");
    let tmp = weights.with_extension("tmp");
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| {
        ModelError::Safetensors {
            path: tmp.clone(),
            message: e.to_string(),
        }
    })?;
    std::fs::rename(&tmp, &weights).map_err(|e| ModelError::io(&weights, e))?;
    Ok(weights)
}

/// Writes `name` in `dir` as pretty JSON.
fn write_json(dir: &Path, name: &str, value: &Value) -> Result<PathBuf, ModelError> {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Writes a checkpoint's weights, `config.json`, `generation_config.json` (`bos` and the
/// stop tokens as `eos_token_id`) and tokenizer files into `dir`; returns the files written.
fn write_checkpoint(
    dir: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    config: &Value,
    bos: Option<u32>,
    stop_tokens: &[u32],
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<PathBuf>, ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut written = vec![write_safetensors(dir, tensors)?];
    written.push(write_json(dir, "config.json", config)?);
    let generation = json!({"bos_token_id": bos, "eos_token_id": stop_tokens});
    written.push(write_json(dir, "generation_config.json", &generation)?);
    if let Some(tokenizer) = tokenizer {
        written.extend(tokenizer.save(dir)?);
    }
    Ok(written)
}

/// Saves `model` (and `tokenizer`) into `dir` in Hugging Face layout; returns the files
/// written. LoRA adapters are merged into the weights written, so the result is an ordinary
/// checkpoint. `stop_tokens` become `generation_config.json`'s `eos_token_id`.
pub fn save_pretrained<B: Backend>(
    model: &Llama<B>,
    tokenizer: Option<&Tokenizer>,
    stop_tokens: &[u32],
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    let tensors = if lora_params(model) > 0 {
        hf_tensors(&merge_lora(model.clone()), llama_name)
    } else {
        hf_tensors(model, llama_name)
    };
    let config = model.config();
    write_checkpoint(
        dir,
        tensors,
        &config.to_hf_json(),
        config.bos_token_id,
        stop_tokens,
        tokenizer,
    )
}

/// [`save_pretrained`] for a vision-language model: `config.json` is the [`VlmConfig`]'s
/// (`model_type` `sftvsrl_vlm`), the tensors are named `vision_tower.*`,
/// `multi_modal_projector.*` and `language_model.*`, and `processor` is written as
/// `preprocessor_config.json`. Loaded back by [`crate::load_vlm`].
///
/// [`VlmConfig`]: crate::VlmConfig
pub fn save_vlm<B: Backend>(
    model: &Vlm<B>,
    processor: &ImageProcessor,
    tokenizer: Option<&Tokenizer>,
    stop_tokens: &[u32],
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    let tensors = if lora_params(model.language_model()) > 0 {
        hf_tensors(&model.clone().map_language_model(merge_lora), vlm_name)
    } else {
        hf_tensors(model, vlm_name)
    };
    let config = model.config();
    let mut written = write_checkpoint(
        dir,
        tensors,
        &config.to_json(),
        config.text_config.bos_token_id,
        stop_tokens,
        tokenizer,
    )?;
    written.push(write_json(
        dir,
        "preprocessor_config.json",
        &processor.to_json(),
    )?);
    Ok(written)
}
