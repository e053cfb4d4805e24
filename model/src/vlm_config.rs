//! The hyperparameters of a [`crate::Vlm`], read from (and written to) its checkpoint's
//! `config.json`: `"model_type": "sftvsrl_vlm"` with the language model's own config nested as
//! `text_config` and the vision encoder's as `vision_config`.

use std::path::Path;

use serde_json::{Value, json};

use crate::config::LlamaConfig;
use crate::error::{ModelError, read_json};
use crate::image_spans::ImageSpans;
use crate::vision::VisionConfig;

/// The `model_type` of a VLM checkpoint.
pub const VLM_MODEL_TYPE: &str = "sftvsrl_vlm";

/// A vision encoder, a projector and a Llama-family language model.
#[derive(Clone, Debug, PartialEq)]
pub struct VlmConfig {
    pub text_config: LlamaConfig,
    pub vision_config: VisionConfig,
    /// The placeholder token (an id of the text vocabulary) that image features replace.
    pub image_token_id: u32,
    /// Each `m × m` block of neighbouring patches becomes one image token (1: no merging).
    pub projector_merge: usize,
}

/// `error` with its configuration field nested under `parent` (`text_config.hidden_size`).
fn nested(error: ModelError, parent: &str) -> ModelError {
    match error {
        ModelError::Config {
            path,
            field,
            message,
        } => ModelError::Config {
            path,
            field: format!("{parent}.{field}"),
            message,
        },
        other => other,
    }
}

impl VlmConfig {
    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        Self::from_json(&read_json(path)?, path)
    }

    /// Parses the JSON of a `config.json`; `path` only names the file in errors.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self, ModelError> {
        let err = |field: &str, msg: &str| ModelError::config(path, field, msg);
        match v.get("model_type").and_then(Value::as_str) {
            Some(VLM_MODEL_TYPE) => {}
            Some(other) => {
                return Err(err(
                    "model_type",
                    &format!("`{other}` is not a vision-language model ({VLM_MODEL_TYPE})"),
                ));
            }
            None => return Err(err("model_type", "missing")),
        }
        let text = v
            .get("text_config")
            .filter(|t| t.is_object())
            .ok_or_else(|| err("text_config", "missing or not an object"))?;
        let text_config =
            LlamaConfig::from_json(text, path).map_err(|e| nested(e, "text_config"))?;
        let vision = v
            .get("vision_config")
            .ok_or_else(|| err("vision_config", "missing"))?;
        let vision_config: VisionConfig = serde_json::from_value(vision.clone())
            .map_err(|e| err("vision_config", &e.to_string()))?;
        let image_token_id = v
            .get("image_token_id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| err("image_token_id", "missing or not a token id"))?;
        let projector_merge = match v.get("projector_merge") {
            None | Some(Value::Null) => 1,
            Some(m) => m
                .as_u64()
                .ok_or_else(|| err("projector_merge", "not an integer"))?
                as usize,
        };
        let config = VlmConfig {
            text_config,
            vision_config,
            image_token_id,
            projector_merge,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// The `config.json` of this model.
    pub fn to_json(&self) -> Value {
        json!({
            "architectures": ["SftvsrlVlmForConditionalGeneration"],
            "model_type": VLM_MODEL_TYPE,
            "image_token_id": self.image_token_id,
            "projector_merge": self.projector_merge,
            "text_config": self.text_config.to_hf_json(),
            "vision_config": serde_json::to_value(&self.vision_config).expect("JSON serialises"),
        })
    }

    /// The [`ImageSpans`] of `images` images in the token `rows` of a batch.
    pub fn image_spans(&self, rows: &[&[u32]], images: usize) -> Result<ImageSpans, ModelError> {
        ImageSpans::find(rows, self.image_token_id, self.image_tokens(), images)
    }

    /// Placeholder tokens per image: the encoder's patches over `projector_merge²`.
    pub fn image_tokens(&self) -> usize {
        self.vision_config.num_patches() / (self.projector_merge * self.projector_merge)
    }

    /// Checks both nested configs, that the placeholder is in the text vocabulary and that
    /// the merge factor divides the patch grid. `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        self.text_config
            .validate(path)
            .map_err(|e| nested(e, "text_config"))?;
        self.vision_config
            .validate(path)
            .map_err(|e| nested(e, "vision_config"))?;
        let vocab = self.text_config.vocab_size;
        if self.image_token_id as usize >= vocab {
            return Err(ModelError::config(
                path,
                "image_token_id",
                format!(
                    "{} is outside the text vocabulary of {vocab}",
                    self.image_token_id
                ),
            ));
        }
        self.vision_config
            .check_merge(self.projector_merge)
            .map_err(|message| ModelError::config(path, "projector_merge", message))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vision::tests::tiny_vision;

    /// A tiny VLM: the vision encoder of `tiny_vision` (a 2×3 grid of patches, width 32)
    /// unmerged, so 6 tokens per image, and a 2-layer language model of width 48 whose
    /// placeholder is token 5.
    pub(crate) fn tiny_vlm() -> VlmConfig {
        VlmConfig {
            text_config: LlamaConfig {
                hidden_size: 48,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 12,
                tie_word_embeddings: false,
                ..LlamaConfig::tiny(40)
            },
            vision_config: tiny_vision(),
            image_token_id: 5,
            projector_merge: 1,
        }
    }

    #[test]
    fn json_round_trips_and_counts_image_tokens() {
        let mut c = tiny_vlm();
        assert_eq!(c.image_tokens(), 6);
        c.vision_config.image_size = [16, 32];
        c.projector_merge = 2;
        assert_eq!(c.image_tokens(), 2);
        let v = c.to_json();
        assert_eq!(v["model_type"], "sftvsrl_vlm");
        assert_eq!(v["text_config"]["model_type"], "llama");
        assert_eq!(v["vision_config"]["image_size"], json!([16, 32]));
        assert_eq!(VlmConfig::from_json(&v, Path::new("c")).unwrap(), c);
    }

    #[test]
    fn errors_name_the_nested_field() {
        let path = Path::new("m/config.json");
        let check = |edit: &dyn Fn(&mut Value), expected: &str| {
            let mut v = tiny_vlm().to_json();
            edit(&mut v);
            let e = VlmConfig::from_json(&v, path).unwrap_err().to_string();
            assert!(e.starts_with("m/config.json: field "), "{e}");
            assert!(e.contains(expected), "{e} lacks {expected}");
        };
        check(
            &|v| v["text_config"]["hidden_size"] = json!(0),
            "`text_config.hidden_size`: must be positive",
        );
        check(
            &|v| v["vision_config"]["patch_size"] = json!(5),
            "`vision_config.image_size`: 16 is not a multiple of patch_size 5",
        );
        check(
            &|v| v["vision_config"]["hidden_sise"] = json!(5),
            "`vision_config`: unknown field `hidden_sise`",
        );
        check(
            &|v| v["image_token_id"] = json!(40),
            "`image_token_id`: 40 is outside the text vocabulary of 40",
        );
        check(
            &|v| v["projector_merge"] = json!(2),
            "`projector_merge`: 2 does not divide the 2×3 patch grid",
        );
        check(
            &|v| v["model_type"] = json!("llama"),
            "`model_type`: `llama` is not a vision-language model",
        );
        check(
            &|v| {
                v.as_object_mut().unwrap().remove("vision_config");
            },
            "`vision_config`: missing",
        );
    }
}
