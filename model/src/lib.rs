//! Language and vision-language models for sftvsrl, written once and generic over Burn backends.
//!
//! The language model is a Llama-family decoder ([`Llama`], configured by [`LlamaConfig`] from a
//! Hugging Face `config.json`) that covers Llama 3.x, SmolLM2, Qwen2.5 and tiny models trained
//! from scratch. [`generate`] runs batched sampling for rollouts; [`Llama::forward`] and
//! [`token_logprobs`] are the training-side forward pass.
//!
//! The vision-language model [`Vlm`] (configured by [`VlmConfig`]) is LLaVA-style: a SigLIP-like
//! [`VisionEncoder`], a projector that merges neighbouring patches and maps them to the text
//! width, and the same Llama decoder, whose input embeddings get each image's tokens in place of
//! its placeholder tokens ([`ImageSpans`]). [`ImageProcessor`] turns RGB images into pixels,
//! [`generate_vlm`] samples from image prompts, and [`save_vlm`] / [`load_vlm`] write and read
//! its checkpoints.

pub mod attention;
pub mod backbone;
pub mod bench;
pub mod cache;
pub mod chat_template;
pub mod config;
mod cpu_dispatch;
pub mod cubecl_config;
pub mod decoder_layer;
pub mod device;
pub mod error;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod gguf_model;
pub mod gguf_tokenizer;
pub mod gguf_write;
pub mod image_processor;
pub mod image_spans;
pub mod kernel_adamw;
pub mod kernel_attention;
pub mod kernel_logprobs;
pub mod kernel_matmul;
pub mod kernel_rms_norm;
pub mod kernel_rope;
pub mod kernel_swiglu;
mod layers;
pub mod llama;
pub mod lora;
mod mask;
pub mod mlp;
pub mod pretrained;
pub mod projector;
pub mod quant;
pub mod rope;
pub mod safetensors;
pub mod sampling;
pub mod tokenizer;
pub mod vision;
pub mod vision_layer;
pub mod vlm;
pub mod vlm_config;
pub mod weights;
pub mod word_level;

pub use backbone::{Backbone, LanguageModel, PretrainedBackbone, load_backbone, save_backbone};
pub use bench::{GenerateBenchConfig, GenerateBenchReport, bench_generate};
pub use cache::KvCache;
pub use chat_template::{ChatFormat, ChatPiece, ChatTemplate};
pub use config::{Llama3RopeScaling, LlamaConfig, ModelType};
pub use error::ModelError;
pub use export::{save_pretrained, save_vlm};
pub use generate::{
    FinishReason, GenerateConfig, GeneratedSequence, Generation, GenerationTiming, generate,
    generate_vlm,
};
pub use image_processor::ImageProcessor;
pub use image_spans::{ImageSpans, expand_image_placeholders};
pub use kernel_adamw::FusedAdamW;
pub use llama::{Llama, token_logprobs};
pub use lora::{LoraConfig, LoraTarget, apply_lora, apply_lora_vlm, lora_params, merge_lora};
pub use pretrained::{Pretrained, PretrainedVlm, is_vlm_checkpoint, load_pretrained, load_vlm};
pub use sampling::Sampling;
pub use tokenizer::{Tokenizer, TurnContent};
pub use vision::{VisionConfig, VisionEncoder};
pub use vlm::{Images, Vlm};
pub use vlm_config::{VLM_MODEL_TYPE, VlmConfig};
pub use weights::{ParamKind, ParamSource, RandomInit};
pub use word_level::{
    word_level_tokenizer, word_level_tokenizer_extended, word_level_tokenizer_with,
};

/// Helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// The largest absolute difference between two equally long slices.
    pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }
}
