//! What a run starts from: the data file (written first when asked for), the tokenizer and the
//! model (from scratch or a checkpoint).

use std::path::Path;

use burn::tensor::backend::Backend;
use sftvsrl_envs::Rng;
use sftvsrl_envs::expert::write_jsonl;
use sftvsrl_envs::gp::episode::check_config;
use sftvsrl_envs::gp::expert::styled_example;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_envs::nav::{self, NavError};
use sftvsrl_model::word_level::IMAGE;
use sftvsrl_model::{
    Backbone, ImageProcessor, Llama, LlamaConfig, Tokenizer, Vlm, VlmConfig, load_backbone,
    word_level_tokenizer_extended,
};

use crate::config::{DataConfig, ModelConfig, ScratchVision};
use crate::data::{ChatExample, read_chat_jsonl};
use crate::error::TrainError;

/// Writes expert data to `data.path` when it is missing and `data.generate` (GP-L or GP-VL:
/// example `i` follows face-card rule `i mod len` of `face_rules`) or `data.generate_nav`
/// (V-IRL-L or V-IRL-VL) asks for it.
pub fn ensure_data(data: &DataConfig) -> Result<(), TrainError> {
    if data.path.exists() {
        return Ok(());
    }
    let dir = data.path.parent().unwrap_or(Path::new("."));
    if let Some(g) = &data.generate_nav {
        let invalid = |e: NavError| TrainError::Invalid(format!("data.generate_nav: {e}"));
        // One stream of expert episodes per turn rule; example i comes from stream i mod len.
        let rules = g.rule_configs();
        let mut streams = rules
            .iter()
            .enumerate()
            .map(|(k, nav)| {
                let seed = match rules.len() {
                    1 => g.seed,
                    _ => Rng::derive(g.seed, k as u64).next_u64(),
                };
                let n = g.n.div_ceil(rules.len());
                nav::expert_examples(&g.routes, nav.vision, n, seed, nav).map(|s| s.styled(g.style))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let mut failure = None;
        let examples = (0..g.n)
            .map_while(|i| streams[i % rules.len()].next())
            .map_while(|r| r.map_err(|e| failure = Some(e)).ok());
        let (written, _) = write_jsonl(examples, dir).map_err(|e| TrainError::io(dir, e))?;
        if let Some(e) = failure {
            let _ = std::fs::remove_file(&written);
            return Err(invalid(e));
        }
        return rename(&written, &data.path);
    }
    let Some(generate) = &data.generate else {
        return Err(TrainError::io(
            &data.path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such data file"),
        ));
    };
    let configs: Vec<GpConfig> = generate
        .face_rules
        .iter()
        .map(|&face_cards| GpConfig {
            face_cards,
            prompt_layout: generate.prompt_layout,
            image_size: generate.image_size,
            card_faces: generate.card_faces,
            ..GpConfig::variant(Variant::Id, generate.vision)
        })
        .collect();
    for cfg in &configs {
        check_config(cfg).map_err(|e| TrainError::Invalid(format!("data.generate: {e}")))?;
    }
    let examples = (0..generate.n as u64).map(|i| {
        let cfg = &configs[i as usize % configs.len()];
        styled_example(cfg, generate.seed, i, generate.solution, &generate.style)
    });
    let (written, _) = write_jsonl(examples, dir).map_err(|e| TrainError::io(dir, e))?;
    rename(&written, &data.path)
}

/// Moves a written data file to the configured path.
fn rename(written: &Path, path: &Path) -> Result<(), TrainError> {
    if written != path {
        std::fs::rename(written, path).map_err(|e| TrainError::io(path, e))?;
    }
    Ok(())
}

/// A model, its image processor (vision-language models) and its tokenizer.
pub struct ModelAndTokenizer<B: Backend> {
    pub model: Backbone<B>,
    pub processor: Option<ImageProcessor>,
    pub tokenizer: Tokenizer,
}

/// Builds the model of `config`: from scratch (seeded, with a word-level tokenizer over
/// `examples`, and a vision tower when `[model.vision]` asks for one) or loaded from a
/// checkpoint of either kind.
pub fn build_model<B: Backend>(
    config: &ModelConfig,
    examples: &[ChatExample],
    max_len: usize,
    seed: u64,
    device: &B::Device,
) -> Result<ModelAndTokenizer<B>, TrainError> {
    match config {
        ModelConfig::Scratch {
            min_count,
            vision,
            vocab_data,
            ..
        } => {
            // Checked when a config file is read; again here for configs built in code.
            config.check_scratch().map_err(TrainError::Invalid)?;
            let later = vocab_data
                .iter()
                .map(|path| {
                    read_chat_jsonl(path).map_err(|e| {
                        TrainError::Invalid(format!("`model.vocab_data` {}: {e}", path.display()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let extra: &[&str] = match vision {
                Some(_) => &[IMAGE],
                None => &[],
            };
            let tokenizer = word_level_tokenizer_extended(
                texts(examples),
                later.iter().flat_map(|examples| texts(examples)),
                *min_count,
                extra,
            )?;
            let llama = LlamaConfig {
                max_position_embeddings: max_len.max(2048),
                bos_token_id: tokenizer.bos_id(),
                eos_token_ids: tokenizer.eos_id().into_iter().collect(),
                ..config
                    .scratch_llama(tokenizer.vocab_size())
                    .expect("a from-scratch model")
            };
            let (model, processor) = match vision {
                None => (Backbone::Text(Llama::init(&llama, seed, device)), None),
                Some(v) => {
                    let config = scratch_vlm(v, llama, &tokenizer)?;
                    let [h, w] = v.image_size.height_width();
                    let mut processor = ImageProcessor::new([h as u32, w as u32]);
                    processor.crop = v.crop;
                    processor
                        .validate(Path::new("model.vision"))
                        .map_err(|e| TrainError::Invalid(format!("`[model.vision]`: {e}")))?;
                    let vlm = Vlm::init(&config, seed, device);
                    (Backbone::Vision(vlm), Some(processor))
                }
            };
            Ok(ModelAndTokenizer {
                model,
                processor,
                tokenizer,
            })
        }
        ModelConfig::Pretrained { path, chat_date } => {
            let loaded = load_backbone::<B>(path, device)?;
            let mut tokenizer = loaded.tokenizer.ok_or_else(|| TrainError::Config {
                path: path.clone(),
                message: "the checkpoint has no tokenizer.json".into(),
            })?;
            if let Some(date) = chat_date {
                tokenizer
                    .set_chat_date(date)
                    .map_err(|e| TrainError::Invalid(format!("`model.chat_date`: {e}")))?;
            }
            Ok(ModelAndTokenizer {
                model: loaded.model,
                processor: loaded.processor,
                tokenizer,
            })
        }
    }
}

/// Every text of `examples`: system turns, prompt turns and answers.
fn texts(examples: &[ChatExample]) -> impl Iterator<Item = &str> {
    examples.iter().flat_map(|e| {
        e.system
            .iter()
            .map(String::as_str)
            .chain(e.prompt.iter().map(|t| t.text.as_str()))
            .chain([e.response.as_str()])
    })
}

/// The config of a from-scratch vision-language model around the language model `text`,
/// its placeholder the tokenizer's [`IMAGE`] token.
fn scratch_vlm(
    v: &ScratchVision,
    text: LlamaConfig,
    tokenizer: &Tokenizer,
) -> Result<VlmConfig, TrainError> {
    let config = VlmConfig {
        text_config: text,
        vision_config: v.vision_config(),
        image_token_id: tokenizer
            .token_id(IMAGE)
            .expect("the tokenizer has the image token"),
        projector_merge: v.projector_merge,
    };
    config
        .validate(Path::new("model.vision"))
        .map_err(|e| TrainError::Invalid(format!("`[model.vision]`: {e}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use sftvsrl_envs::{Role, Turn};

    use super::*;

    fn example(prompt: &str, response: &str) -> ChatExample {
        ChatExample {
            system: None,
            prompt: vec![Turn {
                role: Role::User,
                text: prompt.into(),
            }],
            response: response.into(),
            image: None,
        }
    }

    fn scratch(vocab_data: Vec<std::path::PathBuf>) -> ModelConfig {
        ModelConfig::Scratch {
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            min_count: 1,
            vision: None,
            vocab_data,
        }
    }

    /// `model.vocab_data`'s words join the vocabulary after the training data's, whose ids
    /// stay; a missing file is an error that names the field.
    #[test]
    fn vocab_data_extends_the_vocabulary_and_keeps_the_training_ids() {
        let dir = std::env::temp_dir().join(format!("sftvsrl-vocab-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let later = dir.join("later.jsonl");
        let line = r#"{"messages":[{"role":"user","content":"note each card once"},{"role":"assistant","content":"thought"}]}"#;
        std::fs::write(&later, format!("{line}\n")).unwrap();
        let examples = [example("cards 3 and K", "formula 3*8")];
        let device = Default::default();
        let build = |config: &ModelConfig| {
            build_model::<NdArray>(config, &examples, 64, 0, &device).map(|m| m.tokenizer)
        };
        let plain = build(&scratch(Vec::new())).unwrap();
        let wide = build(&scratch(vec![later.clone()])).unwrap();
        let unk = wide.token_id(sftvsrl_model::word_level::UNK).unwrap();
        for text in ["note each card once", "thought"] {
            assert!(!wide.encode_text(text).unwrap().contains(&unk), "{text}");
            assert!(plain.encode_text(text).unwrap().contains(&unk), "{text}");
        }
        let own = "cards 3 and K";
        assert_eq!(
            wide.encode_text(own).unwrap(),
            plain.encode_text(own).unwrap()
        );

        let missing = dir.join("missing.jsonl");
        let Err(e) = build(&scratch(vec![missing])) else {
            panic!("a missing vocab_data file must fail");
        };
        let e = e.to_string();
        assert!(
            e.contains("model.vocab_data") && e.contains("missing.jsonl"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
