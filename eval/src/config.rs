//! The evaluation configuration: one TOML file (see `config/eval/`). Unknown fields are errors.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sftvsrl_envs::gp::prompt::PromptLayout;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::Sampling;
use sftvsrl_training::{parse_config, read_config};

use crate::error::EvalError;

/// A task variant that checkpoints are evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalVariant {
    /// GeneralPoints, text, face cards count 10 (in distribution).
    GpLId,
    /// GeneralPoints, text, face cards count 11/12/13 (rule out of distribution).
    GpLOodRule,
}

impl EvalVariant {
    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            EvalVariant::GpLId => "gp-l-id",
            EvalVariant::GpLOodRule => "gp-l-ood-rule",
        }
    }

    /// The environment settings of this variant with `verify_iter` graded attempts and prompts
    /// in `layout`.
    pub fn gp_config(self, verify_iter: u32, layout: PromptLayout) -> GpConfig {
        let variant = match self {
            EvalVariant::GpLId => Variant::Id,
            EvalVariant::GpLOodRule => Variant::RuleOod,
        };
        GpConfig {
            verify_iter,
            prompt_layout: layout,
            ..GpConfig::variant(variant, false)
        }
    }
}

/// How checkpoints are evaluated. The defaults are the reference protocol (paper-spec §5.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Variants evaluated, each as its own set of episodes.
    #[serde(default = "default_variants")]
    pub variants: Vec<EvalVariant>,
    /// Episodes per variant and verification setting (the reference plays 234).
    #[serde(default = "default_episodes")]
    pub episodes: usize,
    /// Episode `i` is dealt from seed `seed + i` (keep apart from training data seeds).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Graded attempts per episode; several values give a sweep (the reference uses 5).
    #[serde(default = "default_verify_iters")]
    pub verify_iters: Vec<u32>,
    /// Most tokens generated per model call.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Sampling temperature (0: greedy). The reference samples with the checkpoint's generation
    /// settings, inferred to be 0.6 / top-p 0.9.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Nucleus mass for sampling.
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// Episodes generated together.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Transcripts kept per variant for inspection.
    #[serde(default = "default_transcripts")]
    pub transcripts: usize,
    /// `reference` prompts, or `compact` ones for models trained on compact data.
    #[serde(default)]
    pub prompt_layout: PromptLayout,
    /// Prompt widths and KV caches are rounded up to a multiple of this many tokens, so the GPU
    /// backends compile kernels for few shapes (padding is masked and changes no result).
    /// Default: 32 on wgpu and cuda, 1 (exact lengths) on the CPU.
    #[serde(default)]
    pub pad_to_multiple_of: Option<usize>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

fn default_variants() -> Vec<EvalVariant> {
    vec![EvalVariant::GpLId, EvalVariant::GpLOodRule]
}
fn default_episodes() -> usize {
    234
}
fn default_seed() -> u64 {
    42
}
fn default_verify_iters() -> Vec<u32> {
    vec![5]
}
fn default_max_new_tokens() -> usize {
    256
}
fn default_temperature() -> f32 {
    0.6
}
fn default_top_p() -> f32 {
    0.9
}
fn default_batch() -> usize {
    32
}
fn default_transcripts() -> usize {
    3
}

impl EvalConfig {
    /// Reads and checks a TOML file; errors name the file and the field.
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        Ok(read_config(path, Self::validate)?)
    }

    /// Parses and checks TOML text (`origin` names it in errors).
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, EvalError> {
        Ok(parse_config(text, origin, Self::validate)?)
    }

    /// The sampling settings of every model call.
    pub fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
        }
    }

    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("episodes", self.episodes),
            ("max_new_tokens", self.max_new_tokens),
            ("batch", self.batch),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{field}` must be at least 1"));
        }
        if self.variants.is_empty() {
            return Err("`variants` must name at least one variant".into());
        }
        if self.verify_iters.is_empty() || self.verify_iters.contains(&0) {
            return Err("`verify_iters` must hold at least one value, each at least 1".into());
        }
        self.sampling()
            .validate()
            .map_err(|e| format!("`temperature` / `top_p`: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_protocol() {
        let c = EvalConfig::default();
        assert_eq!((c.episodes, c.seed, c.max_new_tokens), (234, 42, 256));
        assert_eq!(c.verify_iters, [5]);
        assert_eq!(c.gp_variants_names(), ["gp-l-id", "gp-l-ood-rule"]);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |text: &str| {
            EvalConfig::from_toml(text, Path::new("e.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("episode = 3").contains("episode"),
            "{}",
            err("episode = 3")
        );
        assert!(err("verify_iters = [0]").contains("verify_iters"));
        assert!(err("variants = [\"gp-x\"]").contains("gp-x"));
        assert!(err("temperature = -1.0").contains("temperature"));
    }

    #[test]
    fn shipped_configs_parse_and_the_reference_one_is_the_default() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/eval");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let config = EvalConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            if path.ends_with("gp-l.toml") {
                assert_eq!(config, EvalConfig::default());
            }
            seen += 1;
        }
        assert!(seen >= 2, "config/eval holds {seen} files");
    }

    impl EvalConfig {
        fn gp_variants_names(&self) -> Vec<&'static str> {
            self.variants.iter().map(|v| v.name()).collect()
        }
    }
}
