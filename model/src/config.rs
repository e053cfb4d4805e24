//! The architecture hyperparameters of a Llama-family decoder, read from (and written back to) a
//! Hugging Face `config.json`. Llama 3.x, SmolLM2 and Qwen2.5 share this shape; they differ in
//! RoPE base and scaling, q/k/v biases and whether the output embedding is tied.

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{ModelError, read_json};

/// The largest size or count a config may declare (2^24): every product of two of them then
/// fits in a `usize`, and no corrupt value can ask for an impossible allocation.
pub const MAX_DIM: usize = 1 << 24;

/// Which Hugging Face architecture a checkpoint declares (`model_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelType {
    /// `LlamaForCausalLM`: Llama 3.x, SmolLM2, TinyLlama.
    Llama,
    /// `Qwen2ForCausalLM`: Qwen2 / Qwen2.5 (q/k/v projections carry biases).
    Qwen2,
}

impl ModelType {
    /// The `model_type` string of config.json.
    pub fn name(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Qwen2 => "qwen2",
        }
    }

    fn architecture(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
        }
    }
}

/// Llama 3.1/3.2 "by parts" RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// A Llama-family decoder's hyperparameters (the fields of HF `config.json` that matter).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    /// The output projection reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// The q/k/v projections have biases (always for Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// A small Llama for training from scratch on a CPU: tied embeddings, 4 layers of width 128.
    pub fn tiny(vocab_size: usize) -> Self {
        LlamaConfig {
            model_type: ModelType::Llama,
            vocab_size,
            hidden_size: 128,
            intermediate_size: 352,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 32,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }

    /// The tiny study's model (`config/study/gp-l-tiny.toml`): 2 layers of width 96, for
    /// benchmarks that should run what the README's main command trains.
    pub fn tiny_study(vocab_size: usize) -> Self {
        LlamaConfig {
            hidden_size: 96,
            intermediate_size: 256,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 24,
            ..LlamaConfig::tiny(vocab_size)
        }
    }

    /// The shape of SmolLM2-135M (for benchmarks with random weights).
    pub fn smollm2_135m() -> Self {
        LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rope_theta: 100_000.0,
            max_position_embeddings: 8192,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            ..LlamaConfig::tiny(49152)
        }
    }

    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        Self::from_json(&read_json(path)?, path)
    }

    /// Parses the JSON of a `config.json`; `path` only names the file in errors.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self, ModelError> {
        let err = |field: &str, msg: String| ModelError::config(path, field, msg);
        let model_type = match v.get("model_type").and_then(Value::as_str) {
            Some("llama") => ModelType::Llama,
            Some("qwen2") => ModelType::Qwen2,
            Some(other) => {
                return Err(err(
                    "model_type",
                    format!("`{other}` is not supported (llama, qwen2)"),
                ));
            }
            None => return Err(err("model_type", "missing".into())),
        };
        let usize_field = |field: &str| -> Result<usize, ModelError> {
            match v.get(field).and_then(Value::as_u64) {
                Some(n) if n > 0 => Ok(n as usize),
                Some(_) => Err(err(field, "must be positive".into())),
                None => Err(err(field, "missing or not an integer".into())),
            }
        };
        let opt_usize = |field: &str| -> Result<Option<usize>, ModelError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(_) => usize_field(field).map(Some),
            }
        };
        let opt_f64 = |field: &str| -> Result<Option<f64>, ModelError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| err(field, "not a number".into())),
            }
        };
        let opt_bool = |field: &str| -> Result<Option<bool>, ModelError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| err(field, "not a boolean".into())),
            }
        };

        match v.get("hidden_act") {
            None | Some(Value::Null) => {}
            Some(Value::String(act)) if act == "silu" => {}
            Some(other) => {
                return Err(err(
                    "hidden_act",
                    format!("`{other}` is not supported (silu)"),
                ));
            }
        }
        if opt_bool("mlp_bias")? == Some(true) {
            return Err(err("mlp_bias", "MLP biases are not supported".into()));
        }
        if opt_bool("use_sliding_window")? == Some(true) {
            return Err(err(
                "use_sliding_window",
                "sliding-window attention is not supported".into(),
            ));
        }

        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        let head_dim = opt_usize("head_dim")?.unwrap_or(hidden_size / num_attention_heads);

        // transformers 5 nests RoPE settings under `rope_parameters`; older files use
        // `rope_theta` plus `rope_scaling`.
        let rope_params = v.get("rope_parameters").filter(|p| !p.is_null());
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(t) => t
                .as_f64()
                .ok_or_else(|| err("rope_parameters.rope_theta", "not a number".into()))?,
            None => opt_f64("rope_theta")?.unwrap_or(10_000.0),
        };
        let scaling_field = if rope_params.is_some() {
            "rope_parameters"
        } else {
            "rope_scaling"
        };
        let rope_scaling = match rope_params.or_else(|| v.get("rope_scaling")) {
            None | Some(Value::Null) => None,
            Some(s) => parse_rope_scaling(s).map_err(|m| err(scaling_field, m))?,
        };

        let eos_token_ids = match v.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(x) => token_ids(x)
                .ok_or_else(|| err("eos_token_id", "not a token id or list of ids".into()))?,
        };
        let bos_token_id = match v.get("bos_token_id") {
            None | Some(Value::Null) => None,
            Some(x) => Some(
                x.as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| err("bos_token_id", "not a token id".into()))?,
            ),
        };

        let config = LlamaConfig {
            model_type,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: opt_usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: opt_bool("tie_word_embeddings")?.unwrap_or(false),
            attention_bias: match model_type {
                ModelType::Qwen2 => true,
                ModelType::Llama => opt_bool("attention_bias")?.unwrap_or(false),
            },
            bos_token_id,
            eos_token_ids,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what the model's shapes need: positive sizes, an even head size (RoPE rotates
    /// pairs) and query heads that group evenly over key/value heads. `path` names the file.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let err = |field: &str, msg: String| Err(ModelError::config(path, field, msg));
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((field, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return err(field, "must be positive".into());
        }
        let positions = ("max_position_embeddings", self.max_position_embeddings);
        if let Some((field, v)) = sizes.iter().chain([&positions]).find(|(_, v)| *v > MAX_DIM) {
            return err(
                field,
                format!("{v} is larger than {MAX_DIM} (a corrupt file?)"),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return err(
                "head_dim",
                format!("{} must be even for RoPE", self.head_dim),
            );
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return err(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            );
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return err(
                "rms_norm_eps",
                "rms_norm_eps and rope_theta must be positive".into(),
            );
        }
        Ok(())
    }

    /// The `config.json` transformers reads back for this model.
    pub fn to_hf_json(&self) -> Value {
        let rope_scaling = self.rope_scaling.map(|s| {
            json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings,
            })
        });
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut v = json!({
            "architectures": [self.model_type.architecture()],
            "model_type": self.model_type.name(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        });
        if self.model_type == ModelType::Llama {
            v["attention_bias"] = json!(self.attention_bias);
            v["mlp_bias"] = json!(false);
        }
        v
    }
}

/// A token id or a list of them (`eos_token_id` may be either).
pub(crate) fn token_ids(v: &Value) -> Option<Vec<u32>> {
    match v {
        Value::Array(items) => items.iter().map(one_token_id).collect(),
        x => one_token_id(x).map(|id| vec![id]),
    }
}

fn one_token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|id| u32::try_from(id).ok())
}

fn parse_rope_scaling(s: &Value) -> Result<Option<Llama3RopeScaling>, String> {
    if !s.is_object() {
        return Err(format!("expected an object, found {s}"));
    }
    let kind = match s.get("rope_type").or_else(|| s.get("type")) {
        None | Some(Value::Null) => "default",
        Some(kind) => kind
            .as_str()
            .ok_or_else(|| format!("`rope_type` {kind} is not a string"))?,
    };
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let num = |k: &str| {
                s.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("llama3 scaling needs a number `{k}`"))
            };
            Ok(Some(Llama3RopeScaling {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: s
                    .get("original_max_position_embeddings")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(
                        "llama3 scaling needs a whole number `original_max_position_embeddings`",
                    )?,
            }))
        }
        other => Err(format!(
            "RoPE scaling `{other}` is not supported (default, llama3)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qwen2_and_round_trips() {
        let v = json!({
            "model_type": "qwen2", "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
            "eos_token_id": [5, 6], "hidden_act": "silu", "use_sliding_window": false
        });
        let c = LlamaConfig::from_json(&v, Path::new("config.json")).unwrap();
        assert_eq!(c.model_type, ModelType::Qwen2);
        assert!(c.attention_bias && c.tie_word_embeddings);
        assert_eq!((c.head_dim, c.eos_token_ids.clone()), (16, vec![5, 6]));
        let back = LlamaConfig::from_json(&c.to_hf_json(), Path::new("x")).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn reads_llama3_scaling_in_both_spellings() {
        let base = json!({
            "model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2,
        });
        let scaling = json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let mut old = base.clone();
        old["rope_theta"] = json!(500000.0);
        old["rope_scaling"] = scaling.clone();
        let mut new = base;
        new["rope_parameters"] = scaling;
        new["rope_parameters"]["rope_theta"] = json!(500000.0);
        let a = LlamaConfig::from_json(&old, Path::new("a")).unwrap();
        let b = LlamaConfig::from_json(&new, Path::new("b")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_scaling.unwrap().factor, 32.0);
        assert_eq!(a.num_key_value_heads, 2);
    }

    #[test]
    fn errors_name_file_and_field() {
        let v = json!({"model_type": "llama", "vocab_size": 10});
        let e = LlamaConfig::from_json(&v, Path::new("dir/config.json")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dir/config.json: field `hidden_size`: missing or not an integer"
        );
        let v = json!({"model_type": "gpt2"});
        let e = LlamaConfig::from_json(&v, Path::new("c.json")).unwrap_err();
        assert!(e.to_string().contains("`gpt2` is not supported"), "{e}");
    }
}
