//! The policies the episode engine plays: a language model, a vision-language model with its
//! pixel cache, and scripted policies that answer from a rule (tests drive rollouts,
//! evaluation and the study with them, at known success rates).

use std::sync::Arc;

use burn::tensor::{Tensor, backend::Backend};
use image::RgbImage;
use sftvsrl_envs::Transcript;
use sftvsrl_model::generate::{FinishReason, GeneratedSequence, Generation};
use sftvsrl_model::{
    Backbone, GenerateConfig, Llama, ModelError, Tokenizer, Vlm, VlmConfig, generate, generate_vlm,
};

use crate::engine::{Policy, Responses};
use crate::error::TrainError;
use crate::pixels::PixelCache;
use crate::rl::value_head::ValueHead;

/// A language model, with the value head of PPO when it has one (values read from the final
/// hidden state of each prompt's last token).
pub struct TextPolicy<'a, B: Backend> {
    pub model: &'a Llama<B>,
    pub value_head: Option<&'a ValueHead<B>>,
    pub device: &'a B::Device,
}

impl<'a, B: Backend> TextPolicy<'a, B> {
    /// A language model without a value head.
    pub fn new(model: &'a Llama<B>, device: &'a B::Device) -> Self {
        TextPolicy {
            model,
            value_head: None,
            device,
        }
    }
}

impl<B: Backend> Policy for TextPolicy<'_, B> {
    fn respond(
        &mut self,
        prompts: &[Vec<u32>],
        _transcripts: &[&Transcript],
        config: &GenerateConfig,
    ) -> Result<Responses, ModelError> {
        let out = generate(self.model, prompts, config, self.device)?;
        Ok(Responses {
            values: self
                .value_head
                .map(|h| values(h, out.prompt_hidden))
                .transpose()?,
            sequences: out.sequences,
        })
    }
}

/// A vision-language model, the cache that turns the episodes' images into its pixels, and
/// the value head of PPO when it has one.
pub struct VisionPolicy<'a, B: Backend> {
    pub model: &'a Vlm<B>,
    pub pixels: &'a PixelCache,
    pub value_head: Option<&'a ValueHead<B>>,
    pub device: &'a B::Device,
}

impl<B: Backend> Policy for VisionPolicy<'_, B> {
    fn sees_images(&self) -> bool {
        true
    }

    fn model_prompt(&self, chat: Vec<u32>, image: Option<&RgbImage>) -> Vec<u32> {
        match image {
            Some(_) => vision_prompt(self.model.config(), chat),
            None => chat,
        }
    }

    fn respond(
        &mut self,
        prompts: &[Vec<u32>],
        transcripts: &[&Transcript],
        config: &GenerateConfig,
    ) -> Result<Responses, ModelError> {
        let images: Vec<&Arc<RgbImage>> = transcripts
            .iter()
            .filter_map(|t| t.image.as_ref())
            .collect();
        self.pixels.prune();
        let out = generate_vision(
            self.model,
            self.pixels,
            prompts,
            &images,
            config,
            self.device,
        )?;
        Ok(Responses {
            values: self
                .value_head
                .map(|h| values(h, out.prompt_hidden))
                .transpose()?,
            sequences: out.sequences,
        })
    }
}

/// [`generate_vlm`] for `prompts` showing `images` (in order), their pixels from `pixels`.
fn generate_vision<B: Backend>(
    model: &Vlm<B>,
    pixels: &PixelCache,
    prompts: &[Vec<u32>],
    images: &[&Arc<RgbImage>],
    config: &GenerateConfig,
    device: &B::Device,
) -> Result<Generation<B>, ModelError> {
    let pixels = match images.is_empty() {
        true => None,
        false => Some(pixels.tensor(images, device)?),
    };
    generate_vlm(model, prompts, pixels, config, device)
}

/// The value head's estimates of final hidden states `[batch, hidden]`.
fn values<B: Backend>(head: &ValueHead<B>, hidden: Tensor<B, 2>) -> Result<Vec<f32>, ModelError> {
    head.forward(hidden)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| ModelError::Generation(format!("value head output: {e:?}")))
}

/// The policy that plays `model`'s backbone (a language or vision-language model), with the
/// value head of PPO when `critic` is given. A vision-language model needs `pixels`.
pub fn backbone_policy<'a, B: Backend>(
    model: &'a Backbone<B>,
    critic: Option<&'a ValueHead<B>>,
    pixels: Option<&'a PixelCache>,
    device: &'a B::Device,
) -> Result<Box<dyn Policy + 'a>, TrainError> {
    Ok(match model {
        Backbone::Text(model) => Box::new(TextPolicy {
            model,
            value_head: critic,
            device,
        }),
        Backbone::Vision(model) => Box::new(VisionPolicy {
            model,
            pixels: pixels.ok_or_else(|| {
                TrainError::Invalid("a vision-language policy needs its image processor".into())
            })?,
            value_head: critic,
            device,
        }),
    })
}

/// The prompt of a vision-language model for a chat that comes with an image: the image's
/// placeholder tokens first, then the chat's tokens. Training and evaluation share this layout.
pub fn vision_prompt(config: &VlmConfig, chat: Vec<u32>) -> Vec<u32> {
    let mut ids = vec![config.image_token_id; config.image_tokens()];
    ids.extend(chat);
    ids
}

/// A policy that answers each conversation with the text a rule gives, encoded with the
/// tokenizer and closed with the first stop token. Log-probs and values are 0.
pub struct ScriptedPolicy<F> {
    pub tokenizer: Tokenizer,
    pub answer: F,
    /// Whether it plays vision tasks (its rule may know what the images show).
    pub sees_images: bool,
}

impl<F: FnMut(&Transcript) -> String> Policy for ScriptedPolicy<F> {
    fn sees_images(&self) -> bool {
        self.sees_images
    }

    fn respond(
        &mut self,
        prompts: &[Vec<u32>],
        transcripts: &[&Transcript],
        config: &GenerateConfig,
    ) -> Result<Responses, ModelError> {
        let sequences = transcripts
            .iter()
            .map(|t| {
                let mut tokens = self.tokenizer.encode_text(&(self.answer)(t))?;
                tokens.truncate(config.max_new_tokens.saturating_sub(1));
                tokens.extend(config.stop_tokens.first());
                Ok(GeneratedSequence {
                    logprobs: vec![0.0; tokens.len()],
                    tokens,
                    finish: FinishReason::Stop,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Responses {
            sequences,
            values: Some(vec![0.0; prompts.len()]),
        })
    }
}
