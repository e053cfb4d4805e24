//! The network a training run optimises: a language model, or a vision-language model whose
//! prompts may carry images. SFT, PPO and their checkpoints are written once against
//! [`Backbone`]; the two kinds differ only in how input ids become embeddings.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor, backend::Backend};

use crate::error::ModelError;
use crate::export::{save_pretrained, save_vlm};
use crate::image_processor::ImageProcessor;
use crate::llama::Llama;
use crate::lora::{LoraConfig, apply_lora, apply_lora_vlm, lora_params, merge_lora};
use crate::pretrained::{is_vlm_checkpoint, load_pretrained, load_vlm};
use crate::tokenizer::Tokenizer;
use crate::vlm::{Images, Vlm};
use crate::vlm_config::VlmConfig;

/// A language model or a vision-language model, as one module (one optimizer, one record).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Backbone<B: Backend> {
    Text(Llama<B>),
    Vision(Vlm<B>),
}

impl<B: Backend> Backbone<B> {
    /// The decoder and output head (the whole model for a language model).
    pub fn language_model(&self) -> &Llama<B> {
        match self {
            Backbone::Text(m) => m,
            Backbone::Vision(m) => m.language_model(),
        }
    }

    /// The model with its language model replaced by `f` of it (LoRA adapters, merging).
    pub fn map_language_model(self, f: impl FnOnce(Llama<B>) -> Llama<B>) -> Self {
        match self {
            Backbone::Text(m) => Backbone::Text(f(m)),
            Backbone::Vision(m) => Backbone::Vision(m.map_language_model(f)),
        }
    }

    /// The vision-language model's hyperparameters; `None` for a language model.
    pub fn vision_config(&self) -> Option<&VlmConfig> {
        match self {
            Backbone::Text(_) => None,
            Backbone::Vision(m) => Some(m.config()),
        }
    }

    /// The width of the final hidden states (the value head's input).
    pub fn hidden_size(&self) -> usize {
        self.language_model().config().hidden_size
    }

    /// The final (normalised) hidden states `[batch, seq, hidden]` of right- or left-padded
    /// rows, with each image's tokens in place of its placeholders. Errors if a language model
    /// is given images, or the images do not fit the model or the rows ([`crate::vlm::Vlm::embed`]).
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        match self {
            Backbone::Text(m) => m.hidden_states(input_ids, attention_mask, images),
            Backbone::Vision(m) => m.forward_hidden(input_ids, attention_mask, images),
        }
    }

    /// Next-token logits `[batch, seq, vocab]` of final hidden states.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.language_model().logits(hidden)
    }

    /// The model with any LoRA adapters folded into its weights.
    pub fn merged(self) -> Self {
        self.map_language_model(merge_lora)
    }

    /// The model prepared for LoRA training: fresh adapters on the language model, every base
    /// weight frozen; a vision-language model keeps its projector trainable and freezes its
    /// vision tower ([`apply_lora_vlm`]).
    pub fn with_lora(self, config: &LoraConfig, seed: u64, device: &B::Device) -> Self {
        match self {
            Backbone::Text(m) => Backbone::Text(apply_lora(m, config, seed, device)),
            Backbone::Vision(m) => Backbone::Vision(apply_lora_vlm(m, config, seed, device)),
        }
    }

    /// The parameters LoRA training updates: the adapters, and a vision-language model's
    /// projector. `None` without adapters (every parameter trains).
    pub fn lora_trainable_params(&self) -> Option<usize> {
        let adapters = lora_params(self.language_model());
        let projector = match self {
            Backbone::Text(_) => 0,
            Backbone::Vision(m) => m.multi_modal_projector.num_params(),
        };
        (adapters > 0).then_some(adapters + projector)
    }
}

/// What the training losses need of a model: final hidden states of padded token rows (with
/// images in place of their placeholders, for a model that reads them) and the output head.
pub trait LanguageModel<B: Backend> {
    /// The final (normalised) hidden states `[batch, seq, hidden]`; errors on images the
    /// model cannot read (see [`Backbone::forward_hidden`]).
    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError>;

    /// Next-token logits `[batch, seq, vocab]` of final hidden states.
    fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;
}

impl<B: Backend> LanguageModel<B> for Backbone<B> {
    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward_hidden(input_ids, attention_mask, images)
    }

    fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.logits(hidden)
    }
}

/// A language model reads no images: given some, it is an error (refused earlier, when
/// batches are built for it).
impl<B: Backend> LanguageModel<B> for Llama<B> {
    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        if images.is_some_and(|(p, _)| p.dims()[0] > 0) {
            return Err(ModelError::Input(
                "a language model cannot read images".into(),
            ));
        }
        Ok(self.forward_hidden(input_ids, attention_mask))
    }

    fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.logits(hidden)
    }
}

/// A checkpoint loaded for training: the model, its image processor (vision-language models)
/// and its tokenizer.
#[derive(Debug)]
pub struct PretrainedBackbone<B: Backend> {
    pub model: Backbone<B>,
    pub processor: Option<ImageProcessor>,
    pub tokenizer: Option<Tokenizer>,
    pub stop_tokens: Vec<u32>,
}

/// Loads a checkpoint of either kind: a vision-language folder (`model_type` `sftvsrl_vlm`)
/// as [`load_vlm`] reads it, anything else as [`load_pretrained`] does.
pub fn load_backbone<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<PretrainedBackbone<B>, ModelError> {
    if is_vlm_checkpoint(path) {
        let loaded = load_vlm(path, device)?;
        return Ok(PretrainedBackbone {
            model: Backbone::Vision(loaded.model),
            processor: Some(loaded.processor),
            tokenizer: loaded.tokenizer,
            stop_tokens: loaded.stop_tokens,
        });
    }
    let loaded = load_pretrained(path, device)?;
    Ok(PretrainedBackbone {
        model: Backbone::Text(loaded.model),
        processor: None,
        tokenizer: loaded.tokenizer,
        stop_tokens: loaded.stop_tokens,
    })
}

/// Saves `model` in Hugging Face layout ([`save_pretrained`] or [`save_vlm`], which needs the
/// image `processor`); returns the files written.
pub fn save_backbone<B: Backend>(
    model: &Backbone<B>,
    processor: Option<&ImageProcessor>,
    tokenizer: Option<&Tokenizer>,
    stop_tokens: &[u32],
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    match (model, processor) {
        (Backbone::Text(m), _) => save_pretrained(m, tokenizer, stop_tokens, dir),
        (Backbone::Vision(m), Some(p)) => save_vlm(m, p, tokenizer, stop_tokens, dir),
        (Backbone::Vision(_), None) => Err(ModelError::Input(
            "a vision-language model is saved with its image processor".into(),
        )),
    }
}
