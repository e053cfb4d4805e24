//! Writing a model back as a Hugging Face checkpoint directory (`config.json`,
//! `generation_config.json`, `model.safetensors` in f32, and the tokenizer files), loadable by
//! transformers and by [`crate::load_pretrained`]. Files are written under temporary names and
//! renamed, so an interrupted export never leaves a half-written file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, backend::Backend};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

use crate::error::ModelError;
use crate::llama::Llama;
use crate::lora::{lora_params, merge_lora};
use crate::tokenizer::Tokenizer;

/// Writes `bytes` to `path` through a temporary file in the same folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// Collects every parameter under its HF name, in HF layout.
#[derive(Default)]
struct HfTensors {
    path: Vec<String>,
    containers: Vec<String>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
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
        if parts.last().map(String::as_str) == Some("gamma") {
            *parts.last_mut().expect("non-empty") = "weight".into();
        }
        if parts == ["lm_head"] {
            parts.push("weight".into());
        } else {
            parts.insert(0, "model".into());
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
        self.tensors.push((parts.join("."), shape, values));
    }
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
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut written = Vec::new();

    let mut collected = HfTensors::default();
    if lora_params(model) > 0 {
        merge_lora(model.clone()).visit(&mut collected);
    } else {
        model.visit(&mut collected);
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = collected
        .tensors
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
    written.push(weights);

    let config = dir.join("config.json");
    let text = serde_json::to_string_pretty(&model.config().to_hf_json()).expect("JSON serialises");
    write_atomic(&config, text.as_bytes())?;
    written.push(config);

    let generation = dir.join("generation_config.json");
    let text = serde_json::to_string_pretty(&json!({
        "bos_token_id": model.config().bos_token_id,
        "eos_token_id": stop_tokens,
    }))
    .expect("JSON serialises");
    write_atomic(&generation, text.as_bytes())?;
    written.push(generation);

    if let Some(tokenizer) = tokenizer {
        written.extend(tokenizer.save(dir)?);
    }
    Ok(written)
}
