//! The evaluation configuration: one TOML file (see `config/eval/`). Unknown fields are errors.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sftvsrl_envs::gp::prompt::PromptLayout;
use sftvsrl_envs::gp::render::CardFaces;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_envs::nav::NavConfig;
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
    /// GeneralPoints, text, face cards all count 5: a rule new in every part.
    GpLOodFace5,
    /// GeneralPoints, text, face cards all count 7: a rule new in every part.
    GpLOodFace7,
    /// GeneralPoints, text, face cards all count 11 (every hand holds one): one of the tiny
    /// Inits' other training rules, for how much of them a branch retains.
    GpLRetainFace11,
    /// GeneralPoints, vision, black suits, face cards count 10 (in distribution).
    GpVlId,
    /// GeneralPoints, vision, face cards count 11/12/13 (rule out of distribution).
    GpVlOodRule,
    /// GeneralPoints, vision, red suits (visual out of distribution).
    GpVlOodVisual,
    /// GeneralPoints, vision, face cards all count 5.
    GpVlOodFace5,
    /// GeneralPoints, vision, face cards all count 7.
    GpVlOodFace7,
    /// V-IRL navigation, text, absolute turns (in distribution).
    VirlLId,
    /// V-IRL navigation, text, relative turns (rule out of distribution).
    VirlLOodRule,
    /// V-IRL navigation, street-view grids, absolute turns, the training city (in distribution).
    VirlVlId,
    /// V-IRL navigation, street-view grids, relative turns (rule out of distribution).
    VirlVlOodRule,
    /// V-IRL navigation, street-view grids, absolute turns in another city (`nav.ood_routes`,
    /// the role of the reference's VLN-mini): visual out of distribution.
    VirlVlOodVisual,
}

impl EvalVariant {
    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            EvalVariant::GpLId => "gp-l-id",
            EvalVariant::GpLOodRule => "gp-l-ood-rule",
            EvalVariant::GpVlId => "gp-vl-id",
            EvalVariant::GpVlOodRule => "gp-vl-ood-rule",
            EvalVariant::GpVlOodVisual => "gp-vl-ood-visual",
            EvalVariant::GpLOodFace5 => "gp-l-ood-face5",
            EvalVariant::GpLOodFace7 => "gp-l-ood-face7",
            EvalVariant::GpLRetainFace11 => "gp-l-retain-face11",
            EvalVariant::GpVlOodFace5 => "gp-vl-ood-face5",
            EvalVariant::GpVlOodFace7 => "gp-vl-ood-face7",
            EvalVariant::VirlLId => "virl-l-id",
            EvalVariant::VirlLOodRule => "virl-l-ood-rule",
            EvalVariant::VirlVlId => "virl-vl-id",
            EvalVariant::VirlVlOodRule => "virl-vl-ood-rule",
            EvalVariant::VirlVlOodVisual => "virl-vl-ood-visual",
        }
    }

    /// The task this variant plays, with its settings.
    pub fn task(self) -> Task {
        match self {
            EvalVariant::GpLId => Task::GeneralPoints(Variant::Id, false),
            EvalVariant::GpLOodRule => Task::GeneralPoints(Variant::RuleOod, false),
            EvalVariant::GpVlId => Task::GeneralPoints(Variant::Id, true),
            EvalVariant::GpVlOodRule => Task::GeneralPoints(Variant::RuleOod, true),
            EvalVariant::GpVlOodVisual => Task::GeneralPoints(Variant::VisualOod, true),
            EvalVariant::GpLOodFace5 => Task::GeneralPoints(Variant::AllFaces(5), false),
            EvalVariant::GpLOodFace7 => Task::GeneralPoints(Variant::AllFaces(7), false),
            EvalVariant::GpLRetainFace11 => Task::GeneralPoints(Variant::AllFaces(11), false),
            EvalVariant::GpVlOodFace5 => Task::GeneralPoints(Variant::AllFaces(5), true),
            EvalVariant::GpVlOodFace7 => Task::GeneralPoints(Variant::AllFaces(7), true),
            EvalVariant::VirlLId => Task::navigation(true, false, false),
            EvalVariant::VirlLOodRule => Task::navigation(false, false, false),
            EvalVariant::VirlVlId => Task::navigation(true, true, false),
            EvalVariant::VirlVlOodRule => Task::navigation(false, true, false),
            EvalVariant::VirlVlOodVisual => Task::navigation(true, true, true),
        }
    }

    /// Whether this is a navigation variant (evaluated with the `[nav]` protocol).
    pub fn is_navigation(self) -> bool {
        matches!(self.task(), Task::Navigation { .. })
    }

    /// Whether the model sees an image (a vision-language model is needed).
    pub fn is_vision(self) -> bool {
        matches!(
            self.task(),
            Task::GeneralPoints(_, true) | Task::Navigation { vision: true, .. }
        )
    }
}

/// The environment behind a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// GeneralPoints: the rule/visual variant, and whether the cards are shown as an image.
    GeneralPoints(Variant, bool),
    /// V-IRL navigation: the turn rule, street-view grids or text, and whether the routes are
    /// another city's (`nav.ood_routes`).
    Navigation {
        absolute_action: bool,
        vision: bool,
        other_city: bool,
    },
}

impl Task {
    fn navigation(absolute_action: bool, vision: bool, other_city: bool) -> Task {
        Task::Navigation {
            absolute_action,
            vision,
            other_city,
        }
    }
}

/// The environment settings of GeneralPoints `variant` (as text or as an image) with
/// `verify_iter` graded attempts, prompts in `layout` and images as `images` draws them.
pub fn gp_config(
    variant: Variant,
    vision: bool,
    verify_iter: u32,
    layout: PromptLayout,
    images: (u32, CardFaces),
) -> GpConfig {
    GpConfig {
        verify_iter,
        prompt_layout: layout,
        image_size: images.0,
        card_faces: images.1,
        ..GpConfig::variant(variant, vision)
    }
}

/// The protocol of the navigation variants (paper-spec §5.2): episode `i` draws its route with
/// seed `seed + i` (wrapping modulo 2^64); each position allows `env.verify_iter` graded attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavEval {
    /// The route folder (`route_infos.json`, `gps_pano_mapping.pkl`, ...): the real V-IRL data
    /// or a synthetic world from `sftvsrl nav world`. Required by the navigation variants.
    #[serde(default)]
    pub routes: Option<PathBuf>,
    /// Another city's route folder, for `virl-vl-ood-visual` (the reference's VLN-mini, or a
    /// synthetic world of the other look). All its routes are unseen: `env.route_range`
    /// applies to `routes` only.
    #[serde(default)]
    pub ood_routes: Option<PathBuf>,
    /// Episodes per variant (the reference evaluates 48 random routes).
    #[serde(default = "default_nav_episodes")]
    pub episodes: usize,
    /// The reference evaluates with seed 12.
    #[serde(default = "default_nav_seed")]
    pub seed: u64,
    /// Environment settings (`[nav.env]`, the fields of a navigation config). `vision` and
    /// `absolute_action` belong to the variant and may not be set here.
    #[serde(default)]
    pub env: NavConfig,
}

impl Default for NavEval {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

fn default_nav_episodes() -> usize {
    48
}
fn default_nav_seed() -> u64 {
    12
}

impl NavEval {
    /// The environment settings of a navigation variant: its turn rule, whether it shows
    /// street views, and whether it walks the other city (whose routes are all held out).
    pub fn env_config(&self, absolute_action: bool, vision: bool, other_city: bool) -> NavConfig {
        let route_range = if other_city {
            None
        } else {
            self.env.route_range
        };
        NavConfig {
            absolute_action,
            vision,
            route_range,
            ..self.env.clone()
        }
    }

    /// The route folder of a navigation variant.
    pub fn routes(&self, other_city: bool) -> Result<&Path, String> {
        let (dir, field) = if other_city {
            (&self.ood_routes, "nav.ood_routes")
        } else {
            (&self.routes, "nav.routes")
        };
        dir.as_deref().ok_or_else(|| {
            format!(
                "`{field}` must name a route folder for the navigation variants (make one with \
                 `sftvsrl nav world`)"
            )
        })
    }

    fn validate(&self) -> Result<(), String> {
        if self.episodes == 0 {
            return Err("`nav.episodes` must be at least 1".into());
        }
        let defaults = NavConfig::default();
        if self.env.vision != defaults.vision
            || self.env.absolute_action != defaults.absolute_action
        {
            return Err(
                "`nav.env.vision` and `nav.env.absolute_action` are set by each variant \
                 (virl-l-id, virl-vl-ood-rule, ...); leave them out"
                    .into(),
            );
        }
        self.env.validate().map_err(|e| format!("`nav.env`: {e}"))
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
    /// Episode `i` is dealt from seed `seed + i`, wrapping modulo 2^64 (keep apart from
    /// training data seeds).
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
    /// GeneralPoints prompts: `reference`, or `compact` for models trained on compact data.
    #[serde(default)]
    pub prompt_layout: PromptLayout,
    /// The side of GP-VL's card images in pixels (the reference's 1200; the model's processor
    /// resizes them to its own input size). Use the training data's.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// How GP-VL's card faces are drawn: `reference`, or `large_rank` for tiny models (use the
    /// training data's).
    #[serde(default)]
    pub card_faces: CardFaces,
    /// The navigation variants' protocol (`[nav]`); `episodes`, `seed` and `verify_iters`
    /// above are GeneralPoints'.
    #[serde(default)]
    pub nav: NavEval,
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
fn default_image_size() -> u32 {
    1200
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

    /// Episodes played in all: every GeneralPoints variant once per verification setting,
    /// every navigation variant once.
    pub fn total_episodes(&self) -> usize {
        self.variants
            .iter()
            .map(|v| {
                if v.is_navigation() {
                    self.nav.episodes
                } else {
                    self.episodes * self.verify_iters.len()
                }
            })
            .sum()
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
        for v in &self.variants {
            if let Task::Navigation { other_city, .. } = v.task() {
                self.nav.routes(other_city)?;
            }
        }
        if self.variants.iter().any(|v| v.is_navigation()) {
            self.nav.validate()?;
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
        // The visual-OOD city is its own route folder; the others use `nav.routes`.
        let nav = "variants = [\"virl-vl-id\", \"virl-vl-ood-visual\"]\n[nav]\nroutes = \"r\"\n";
        assert!(err(nav).contains("`nav.ood_routes`"), "{}", err(nav));
        let both = format!("{nav}ood_routes = \"o\"\nenv = {{ route_range = [0, 5] }}\n");
        let c = EvalConfig::from_toml(&both, Path::new("e.toml")).unwrap();
        assert!(
            c.variants
                .iter()
                .all(|v| v.is_vision() && v.is_navigation())
        );
        assert_eq!(c.nav.routes(true).unwrap(), Path::new("o"));
        assert_eq!(c.nav.env_config(true, true, true).route_range, None);
        let id = c.nav.env_config(true, true, false);
        assert_eq!((id.route_range, id.vision), (Some([0, 5]), true));
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
            if path.ends_with("virl-l.toml") {
                let id = config.nav.env_config(true, false, false);
                assert_eq!(id, NavConfig::default());
                assert_eq!((config.nav.episodes, config.nav.seed), (48, 12));
                assert_eq!(config.total_episodes(), 96);
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
