//! The SFT run configuration: one TOML file, every field documented in `config/sft/*.toml`.
//! Unknown fields are errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sftvsrl_envs::gp::FaceRule;
use sftvsrl_envs::gp::expert::{ExpertSolution, ExpertStyle};
use sftvsrl_envs::gp::prompt::PromptLayout;
use sftvsrl_envs::gp::render::CardFaces;
use sftvsrl_envs::nav::{NavConfig, NavStyle};
use sftvsrl_model::{LlamaConfig, LoraConfig, ModelError, VisionConfig};

use crate::error::TrainError;
use crate::schedule::SftSchedule;
use crate::step::SftLoss;

/// A whole SFT run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// The run's name: everything is written to `<runs_dir>/<name>/`.
    pub name: String,
    /// The folder that holds runs.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    /// Seeds the model initialisation, the validation split and the data order.
    #[serde(default)]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// LoRA adapters to train instead of the whole model (optional; full fine-tuning when
    /// absent). On a vision-language model they adapt its language model, the projector
    /// trains fully and the vision tower is frozen.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// GeneralPoints episodes run with the trained model at the end (optional).
    #[serde(default)]
    pub eval: Option<GpEvalConfig>,
    /// Training batches and generation prompts are rounded up to a multiple of this many
    /// tokens, so the GPU backends compile kernels for few shapes (padding is masked and
    /// changes no result); above 1, a short micro-batch (the last of an epoch) is also padded
    /// to `train.micro_batch` rows. Default: 32 on wgpu and cuda, 1 (exact lengths) on the CPU.
    #[serde(default)]
    pub pad_to_multiple_of: Option<usize>,
}

/// Where the chat JSONL comes from and how it is cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A chat JSONL file (`{"messages": [{"role", "content"}, ...]}` per line).
    pub path: PathBuf,
    /// When `path` is absent, write GeneralPoints GP-L (ID) expert data there first.
    #[serde(default)]
    pub generate: Option<GenerateData>,
    /// When `path` is absent, write V-IRL expert data there first (not with `generate`).
    #[serde(default)]
    pub generate_nav: Option<GenerateNavData>,
    /// Fraction of the examples held out for validation.
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    /// Examples longer than this many tokens (prompt + response) are an error.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
}

/// Expert GeneralPoints data written when the data file is missing: GP-L, or GP-VL (the
/// cards shown as an image beside each example) with `vision`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateData {
    /// Number of examples.
    pub n: usize,
    /// GP-VL: each example's cards as an image (black suits, as the ID variant).
    #[serde(default)]
    pub vision: bool,
    /// With `vision`: the side of the images in pixels (the reference's 1200 by default; tiny
    /// models read far fewer pixels).
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// With `vision`: how the card faces are drawn (`reference`, or `large_rank` for tiny
    /// models; see config/gp/reference.toml).
    #[serde(default)]
    pub card_faces: CardFaces,
    /// Data set seed (episode seeds used for evaluation must differ from it).
    pub seed: u64,
    /// Which solution each answer teaches: `random` (as the reference data) or
    /// `hand_order` (a fixed one keeping the cards' order where it can; easier for small models).
    #[serde(default)]
    pub solution: ExpertSolution,
    /// `reference` prompts and answers, or `compact` ones (short, for tiny CPU models).
    #[serde(default)]
    pub prompt_layout: PromptLayout,
    /// Face-card rules, taken in turn: example `i` follows rule `i mod len` (e.g. a pretraining
    /// mix that leaves the OOD rule out). Default: the ID rule alone.
    #[serde(default = "default_face_rules")]
    pub face_rules: Vec<FaceRule>,
    /// How examples are presented beyond one prompt and one answer (all off by default):
    /// `revision = { fraction, max_failed }` shows failed attempts and the verifier's feedback
    /// before a share of the answers (the sequential-revision format a model needs for
    /// `verify_iter` above 1), `chain_of_thought = true` shows the arithmetic first,
    /// `prompt_variants = N` words each prompt in one of N ways (up to 4).
    #[serde(default)]
    pub style: ExpertStyle,
}

/// Expert V-IRL-L data written when the data file is missing: one example per rail position
/// of episodes on the routes, as `sftvsrl data sft --env virl-l` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateNavData {
    /// Number of examples.
    pub n: usize,
    /// Data set seed: episode `i` is seeded from it (keep evaluation seeds apart).
    pub seed: u64,
    /// The route folder (the real V-IRL layout, or `sftvsrl nav world`).
    pub routes: PathBuf,
    /// Navigation settings (action rule, prompt layout, routes drawn, `vision` for V-IRL-VL's
    /// street-view grids …).
    #[serde(default)]
    pub nav: NavConfig,
    /// Turn rules taken in turn: example `i` follows rule `i mod len`, each setting `nav`'s
    /// `absolute_action` and `turn_words` (e.g. a pretraining mix that leaves the OOD rule's
    /// own words out). Empty: `nav`'s rule alone.
    #[serde(default)]
    pub turn_rules: Vec<TurnRule>,
    /// How examples are presented beyond the environment's prompt and answer (off by default):
    /// `chain_of_thought = true` opens each answer with route reasoning (what is in view, which
    /// instruction sentence applies), `prompt_variants = N` words each prompt in one of N ways
    /// (up to 4).
    #[serde(default, skip_serializing_if = "is_default")]
    pub style: NavStyle,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An action rule of navigation data: absolute or relative turns, named by the rule's own
/// words or by `turn_words` (see `NavConfig::turn_words`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnRule {
    pub absolute_action: bool,
    #[serde(default)]
    pub turn_words: Option<Vec<String>>,
}

impl GenerateNavData {
    /// The navigation settings of each turn rule, in turn (just `nav` without rules).
    pub fn rule_configs(&self) -> Vec<NavConfig> {
        if self.turn_rules.is_empty() {
            return vec![self.nav.clone()];
        }
        self.turn_rules
            .iter()
            .map(|r| NavConfig {
                absolute_action: r.absolute_action,
                turn_words: r.turn_words.clone(),
                ..self.nav.clone()
            })
            .collect()
    }
}

fn default_face_rules() -> Vec<FaceRule> {
    vec![FaceRule::Id]
}

/// The model: trained from scratch, or loaded from a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "init", rename_all = "snake_case")]
pub enum ModelConfig {
    /// A Llama with random weights and a word-level tokenizer built over the training data.
    Scratch {
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        /// Tokenizer: corpus pieces seen fewer times than this are left out.
        #[serde(default = "default_min_count")]
        min_count: usize,
        /// A vision tower and projector in front of the language model (`[model.vision]`): the
        /// model is then a vision-language model that reads the data's images.
        #[serde(default)]
        vision: Option<ScratchVision>,
        /// Further chat-JSONL data files (say, a later SFT stage's rewordings) whose words join
        /// the tokenizer after the training data's own, so that text only they use does not
        /// read as `<unk>`; the training data's ids stay as without them. A study fills it in
        /// with its SFT arms' own data.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        vocab_data: Vec<PathBuf>,
    },
    /// A Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.json) or GGUF.
    Pretrained {
        path: PathBuf,
        /// The `Today Date` of the system turn of Llama 3.1+ chat templates (default: the
        /// checkpoint's, else "26 Jul 2024"); saved with the trained model's template. An
        /// error for templates without one.
        #[serde(default)]
        chat_date: Option<String>,
    },
}

impl ModelConfig {
    /// The language model of a from-scratch model over `vocab_size` tokens (the tokenizer's
    /// special tokens and context length are the caller's); `None` for a pretrained one.
    pub fn scratch_llama(&self, vocab_size: usize) -> Option<LlamaConfig> {
        let ModelConfig::Scratch {
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            ..
        } = *self
        else {
            return None;
        };
        Some(LlamaConfig {
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim: hidden_size.checked_div(num_attention_heads).unwrap_or(0),
            ..LlamaConfig::tiny(vocab_size)
        })
    }

    /// Checks a from-scratch model's shapes as the Hugging Face loader checks a `config.json`
    /// (positive sizes, an even head size, key/value heads that group the query heads), and
    /// that the heads divide the width; the message names the `model.` field. A pretrained
    /// model is checked when it is loaded.
    pub(crate) fn check_scratch(&self) -> Result<(), String> {
        let Some(llama) = self.scratch_llama(1) else {
            return Ok(());
        };
        if llama.num_attention_heads > 0
            && !llama.hidden_size.is_multiple_of(llama.num_attention_heads)
        {
            return Err(format!(
                "`model.num_attention_heads` ({}) must divide `model.hidden_size` ({})",
                llama.num_attention_heads, llama.hidden_size
            ));
        }
        match llama.validate(Path::new("[model]")) {
            Err(ModelError::Config { field, message, .. }) if field == "head_dim" => Err(format!(
                "`model.hidden_size` / `model.num_attention_heads`, the head size: {message}"
            )),
            Err(ModelError::Config { field, message, .. }) => {
                Err(format!("`model.{field}`: {message}"))
            }
            Err(e) => Err(format!("`[model]`: {e}")),
            Ok(()) => Ok(()),
        }
    }
}

/// The vision side of a from-scratch vision-language model: a ViT over `image_size` images
/// (`n` for a square, or `[height, width]`) cut into `patch_size`² patches, and a projector
/// that merges `projector_merge`² neighbouring patches into one image token. Images are cut
/// to `crop` (`[x, y, width, height]` in source pixels, e.g. the band where the cards lie)
/// and resized to `image_size`; the run's log says so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScratchVision {
    pub image_size: ImageSide,
    #[serde(default)]
    pub crop: Option<[u32; 4]>,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "one")]
    pub projector_merge: usize,
}

impl ScratchVision {
    /// The vision tower's hyperparameters.
    pub fn vision_config(&self) -> VisionConfig {
        VisionConfig {
            image_size: self.image_size.height_width(),
            patch_size: self.patch_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: 1e-6,
            num_channels: 3,
        }
    }

    /// Checks the shapes before any data is made: positive sizes, patches that tile the image,
    /// heads that divide the width and a merge factor that divides the patch grid.
    fn check(&self) -> Result<(), String> {
        let vision = self.vision_config();
        vision
            .validate(Path::new("model.vision"))
            .map_err(|e| format!("`[model.vision]`: {e}"))?;
        vision
            .check_merge(self.projector_merge)
            .map_err(|e| format!("`model.vision.projector_merge`: {e}"))
    }
}

/// An image size: one side of a square, or `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSide {
    Square(usize),
    HeightWidth([usize; 2]),
}

impl ImageSide {
    /// `[height, width]`.
    pub fn height_width(self) -> [usize; 2] {
        match self {
            ImageSide::Square(s) => [s, s],
            ImageSide::HeightWidth(hw) => hw,
        }
    }
}

/// Optimisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Examples per forward/backward pass.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step (global batch = micro_batch × grad_accum).
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// `warmup_lr` (the reference: DeepSpeed's WarmupLR, log-rate warmup then constant, which
    /// replaces the cosine its script asks for; docs/reference-behaviour.md §3) or `cosine`
    /// (Hugging Face's: linear warmup, then a cosine decay to `lr × min_lr_ratio`).
    #[serde(default)]
    pub lr_schedule: SftSchedule,
    /// Warmup steps as a fraction of the run's optimizer steps (rounded up).
    #[serde(default = "default_warmup")]
    pub warmup_ratio: f64,
    /// With `lr_schedule = "cosine"`: the cosine decays to `lr × min_lr_ratio`.
    #[serde(default)]
    pub min_lr_ratio: f64,
    /// AdamW β1.
    #[serde(default = "default_beta1")]
    pub beta1: f32,
    /// AdamW β2 (the reference uses 0.98).
    #[serde(default = "default_beta2")]
    pub beta2: f32,
    /// AdamW ε (the reference uses 1e-7).
    #[serde(default = "default_epsilon")]
    pub epsilon: f32,
    /// AdamW decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f32,
    /// Clip the global L2 norm of each step's gradient to this, as PPO's `max_grad_norm`;
    /// 0: no clipping (reference 1.0: DeepSpeed's `gradient_clipping`, filled from the
    /// Trainer's default `max_grad_norm`; docs/reference-behaviour.md §4).
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f32,
    /// Log a metrics line every this many optimizer steps.
    #[serde(default = "one")]
    pub log_every: usize,
    /// Write a checkpoint every this many optimizer steps (and always at the end).
    pub checkpoint_every: usize,
    /// Also checkpoint at the first step whose training FLOPs reach each of these (ascending),
    /// and end the run at the last one: checkpoints at another run's compute (the study sets
    /// this for its SFT branch). Empty: steps alone decide.
    #[serde(default)]
    pub checkpoint_flops: Vec<f64>,
    /// Also write each checkpoint's model in Hugging Face layout (`checkpoints/step-N/hf/`), so
    /// that it can be evaluated.
    #[serde(default)]
    pub export_checkpoints: bool,
    /// At each validation, this many held-out prompts are answered by greedy decoding and their
    /// answer field compared with the expert's (0: skip).
    #[serde(default = "default_answer_match")]
    pub answer_match: usize,
    /// Stop after this many optimizer steps (the schedule still spans all epochs); for tests.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// The per-token loss: `nll` (default) or `dft` (the NLL scaled by the token's detached
    /// probability, arXiv 2508.05629; see [`crate::step::SftLoss`]).
    #[serde(default)]
    pub loss: SftLoss,
}

/// GeneralPoints ID episodes played by the trained model with greedy decoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpEvalConfig {
    /// Number of episodes.
    pub episodes: usize,
    /// Episode `i` is dealt from seed `seed + i` (wrapping modulo 2^64); keep these apart
    /// from the data seeds.
    pub seed: u64,
    /// Graded attempts per episode (sequential revision); the reference uses 5.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Most tokens generated per attempt.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Episodes generated together.
    #[serde(default = "default_eval_batch")]
    pub batch: usize,
    /// The prompt layout of the episodes (use the training data's).
    #[serde(default)]
    pub prompt_layout: PromptLayout,
    /// GP-VL (a vision-language model's episodes): the side of the card images in pixels.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// GP-VL: how the card faces are drawn (use the training data's).
    #[serde(default)]
    pub card_faces: CardFaces,
}

fn default_image_size() -> u32 {
    1200
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_valid_fraction() -> f64 {
    0.05
}
fn default_max_len() -> usize {
    1024
}
fn default_min_count() -> usize {
    1
}
fn one() -> usize {
    1
}
fn default_warmup() -> f64 {
    0.03
}
fn default_max_grad_norm() -> f32 {
    1.0
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.98
}
fn default_epsilon() -> f32 {
    1e-7
}
fn default_answer_match() -> usize {
    32
}
fn default_attempts() -> u32 {
    5
}
fn default_max_new_tokens() -> usize {
    96
}
fn default_eval_batch() -> usize {
    32
}

/// Reads a TOML config file and checks it with `validate`; errors name the file and the field.
pub fn read_config<T: DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    parse_config(&text, path, validate)
}

/// Parses TOML config text and checks it with `validate` (`origin` names it in errors).
pub fn parse_config<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, TrainError> {
    let config: T = toml::from_str(text).map_err(|e| TrainError::Config {
        path: origin.to_path_buf(),
        message: e.message().to_string(),
    })?;
    validate(&config).map_err(|message| TrainError::Config {
        path: origin.to_path_buf(),
        message,
    })?;
    Ok(config)
}

/// A run's TOML configuration: read and checked (errors name the file and the field), written
/// back into the run folder, and the folder itself.
pub trait RunConfig: Serialize + DeserializeOwned {
    /// Checks the values; the message names the field.
    fn validate(&self) -> Result<(), String>;

    /// The run's name and the folder that holds runs.
    fn name_and_runs_dir(&self) -> (&str, &Path);

    /// The dotted fields that fix the shapes of the run's checkpointed tensors (the model and
    /// where it comes from, LoRA, the value head): `--resume` refuses a config that changed
    /// one of them (see [`crate::resume_check`]).
    fn checkpoint_fields(&self) -> Vec<&'static str>;

    /// Reads and checks a TOML file; errors name the file and the field.
    fn from_file(path: &Path) -> Result<Self, TrainError> {
        read_config(path, Self::validate)
    }

    /// Parses and checks TOML text (`origin` names it in errors).
    fn from_toml(text: &str, origin: &Path) -> Result<Self, TrainError> {
        parse_config(text, origin, Self::validate)
    }

    /// The resolved config as TOML (written into the run folder).
    fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises")
    }

    /// The run folder.
    fn run_dir(&self) -> PathBuf {
        let (name, runs_dir) = self.name_and_runs_dir();
        runs_dir.join(name)
    }

    /// Worker `rank`'s own config in a multi-worker run: worker 0 is the run; worker `r > 0`
    /// writes `<name>.rank-<r>/` and leaves out `eval`.
    fn for_worker(&self, rank: usize) -> Self {
        let mut table = self.table();
        if rank > 0 {
            let name = format!("{}.rank-{rank}", self.name_and_runs_dir().0);
            table.insert("name".into(), name.into());
            table.remove("eval");
        }
        table.try_into().expect("a config reads back")
    }

    /// A checksum of what every worker's config must agree on: all but the fields
    /// [`RunConfig::for_worker`] sets per worker.
    fn worker_fingerprint(&self) -> u32 {
        let mut table = self.table();
        table.remove("name");
        table.remove("eval");
        crc32fast::hash(toml::to_string(&table).expect("TOML").as_bytes())
    }

    /// The config as a TOML table.
    fn table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("the config serialises")
    }
}

impl GpEvalConfig {
    /// Checks that every count is at least 1 (errors name the `eval.` field).
    pub fn validate(&self) -> Result<(), String> {
        if self.episodes == 0 || self.batch == 0 || self.attempts == 0 || self.max_new_tokens == 0 {
            return Err("`eval.episodes`, `eval.batch`, `eval.attempts` and \
                        `eval.max_new_tokens` must be at least 1"
                .into());
        }
        Ok(())
    }
}

impl RunConfig for SftConfig {
    fn name_and_runs_dir(&self) -> (&str, &Path) {
        (&self.name, &self.runs_dir)
    }

    /// The model and LoRA; for a from-scratch model also the data, whose words make the
    /// vocabulary (and so the embedding's shape).
    fn checkpoint_fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["model", "lora"];
        if let ModelConfig::Scratch { .. } = self.model {
            fields.extend(["data.path", "data.generate", "data.generate_nav"]);
        }
        fields
    }

    fn validate(&self) -> Result<(), String> {
        let t = &self.train;
        let positive = [
            ("train.epochs", t.epochs),
            ("train.micro_batch", t.micro_batch),
            ("train.grad_accum", t.grad_accum),
            ("train.log_every", t.log_every),
            ("train.checkpoint_every", t.checkpoint_every),
            ("data.max_len", self.data.max_len),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{field}` must be at least 1"));
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err("`name` must be a non-empty folder name".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err("`train.lr` must be a positive number".into());
        }
        let unit = [
            ("train.warmup_ratio", t.warmup_ratio),
            ("train.min_lr_ratio", t.min_lr_ratio),
            ("data.valid_fraction", self.data.valid_fraction),
        ];
        if let Some((field, _)) = unit.iter().find(|(_, v)| !(0.0..1.0).contains(v)) {
            return Err(format!("`{field}` must be in [0, 1)"));
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return Err("`train.beta1` and `train.beta2` must be in [0, 1)".into());
        }
        if !(t.epsilon.is_finite() && t.epsilon > 0.0) {
            return Err("`train.epsilon` must be positive".into());
        }
        if let Some(g) = &self.data.generate {
            if g.face_rules.is_empty() {
                return Err("`data.generate.face_rules` must name at least one rule".into());
            }
            g.style
                .validate()
                .map_err(|e| format!("`data.generate.style`: {e}"))?;
        }
        if let Some(g) = &self.data.generate_nav {
            if self.data.generate.is_some() {
                return Err("`data.generate` and `data.generate_nav` exclude each other".into());
            }
            for (i, nav) in g.rule_configs().iter().enumerate() {
                nav.validate().map_err(|e| match g.turn_rules.is_empty() {
                    true => format!("`data.generate_nav.nav`: {e}"),
                    false => format!("`data.generate_nav.turn_rules[{i}]`: {e}"),
                })?;
            }
            g.style
                .validate()
                .map_err(|e| format!("`data.generate_nav.style`: {e}"))?;
        }
        let flops = &t.checkpoint_flops;
        if flops.iter().any(|f| !(f.is_finite() && *f > 0.0)) || !flops.is_sorted() {
            return Err("`train.checkpoint_flops` must be positive and ascending".into());
        }
        if !(t.max_grad_norm.is_finite() && t.max_grad_norm >= 0.0) {
            return Err(
                "`train.max_grad_norm` must be a finite number >= 0 (0: no clipping)".into(),
            );
        }
        if t.lr_schedule != SftSchedule::Cosine && t.min_lr_ratio != 0.0 {
            return Err(
                "`train.min_lr_ratio` applies to `train.lr_schedule = \"cosine\"` only".into(),
            );
        }
        self.model.check_scratch()?;
        if let ModelConfig::Scratch {
            vision: Some(v), ..
        } = &self.model
        {
            v.check()?;
        }
        if let Some(lora) = &self.lora {
            lora.check()?;
        }
        self.eval.as_ref().map_or(Ok(()), GpEvalConfig::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
[data]
path = "d.jsonl"
[model]
init = "pretrained"
path = "m"
[train]
epochs = 1
micro_batch = 2
lr = 1e-3
checkpoint_every = 5
"#;

    fn parse(text: &str) -> Result<SftConfig, String> {
        SftConfig::from_toml(text, Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_reference_recipe() {
        let c = parse(BASE).unwrap();
        assert_eq!(
            (c.train.beta1, c.train.beta2, c.train.epsilon),
            (0.9, 0.98, 1e-7)
        );
        assert_eq!((c.train.weight_decay, c.train.warmup_ratio), (0.0, 0.03));
        // docs/reference-behaviour.md §3 and §4.
        assert_eq!(c.train.lr_schedule, SftSchedule::WarmupLr);
        assert_eq!(c.train.max_grad_norm, 1.0);
        assert_eq!(c.run_dir(), PathBuf::from("runs/t"));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn face_rule_mixes_need_a_rule() {
        let generate = "[data.generate]\nn = 4\nseed = 0\nface_rules = []\n";
        let text = BASE.replace("[model]", &format!("{generate}[model]"));
        let e = parse(&text).unwrap_err();
        assert!(e.contains("data.generate.face_rules"), "{e}");
        let mix = "face_rules = [\"id\", { custom = [11, 11, 11] }]";
        let c = parse(&text.replace("face_rules = []", mix)).unwrap();
        let rules = &c.data.generate.unwrap().face_rules;
        assert_eq!(rules, &[FaceRule::Id, FaceRule::Custom([11, 11, 11])]);
    }

    #[test]
    fn data_styles_are_checked_and_round_trip() {
        let generate = "[data.generate]\nn = 4\nseed = 0\n\
                        style = { revision = { fraction = 0.25, max_failed = 3 }, \
                        chain_of_thought = true, prompt_variants = 4 }\n";
        let text = BASE.replace("[model]", &format!("{generate}[model]"));
        let c = parse(&text).unwrap();
        let style = c.data.generate.as_ref().unwrap().style;
        assert_eq!(style.revision.map(|r| r.max_failed), Some(3));
        assert!(style.chain_of_thought);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        for (bad, field) in [
            ("fraction = 0.25", "revision.fraction"),
            ("max_failed = 3", "revision.max_failed"),
            ("prompt_variants = 4", "prompt_variants"),
        ] {
            let worse = bad
                .replace("0.25", "1.5")
                .replace("= 3", "= 0")
                .replace("= 4", "= 9");
            let e = parse(&text.replace(bad, &worse)).unwrap_err();
            assert!(
                e.contains("data.generate.style") && e.contains(field),
                "{e}"
            );
        }
        let e = parse(&text.replace("chain_of_thought", "chain_of_thoughts")).unwrap_err();
        assert!(e.contains("chain_of_thoughts"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse(&format!("{BASE}learning_rate = 1\n")).unwrap_err();
        assert!(
            e.starts_with("c.toml: ") && e.contains("learning_rate"),
            "{e}"
        );
        let e = parse(&BASE.replace("micro_batch = 2", "micro_batch = 0")).unwrap_err();
        assert!(e.contains("train.micro_batch"), "{e}");
        let e = parse(&BASE.replace("lr = 1e-3", "lr = -1.0")).unwrap_err();
        assert!(e.contains("train.lr"), "{e}");
        let marks = "checkpoint_every = 5\ncheckpoint_flops = [2e9, 1e9]";
        let e = parse(&BASE.replace("checkpoint_every = 5", marks)).unwrap_err();
        assert!(e.contains("train.checkpoint_flops"), "{e}");
        let e = parse(&format!("{BASE}max_grad_norm = -1.0\n")).unwrap_err();
        assert!(e.contains("train.max_grad_norm"), "{e}");
        let e = parse(&format!("{BASE}min_lr_ratio = 0.1\n")).unwrap_err();
        assert!(e.contains("train.min_lr_ratio"), "{e}");
        parse(&format!(
            "{BASE}min_lr_ratio = 0.1\nlr_schedule = \"cosine\"\n"
        ))
        .unwrap();
        let e = parse(&format!("{BASE}grad_clip_norm = 1.0\n")).unwrap_err();
        assert!(e.contains("grad_clip_norm"), "{e}");
        let e = parse(&BASE.replace("epochs = 1\n", "")).unwrap_err();
        assert!(e.contains("epochs"), "{e}");
        let e = parse(&BASE.replace("init = \"pretrained\"", "init = \"magic\"")).unwrap_err();
        assert!(e.contains("magic"), "{e}");
        // A from-scratch VLM's shapes are checked when the file is read, before any data.
        let scratch = |vision: &str| {
            BASE.replace(
                "init = \"pretrained\"\npath = \"m\"",
                &format!(
                    "init = \"scratch\"\nhidden_size = 8\nintermediate_size = 8\n\
                     num_hidden_layers = 1\nnum_attention_heads = 2\nnum_key_value_heads = 1\n\
                     vision = {{ image_size = 32, hidden_size = 8, intermediate_size = 8, \
                     num_hidden_layers = 1, num_attention_heads = 2, {vision} }}"
                ),
            )
        };
        parse(&scratch("patch_size = 8, projector_merge = 2")).unwrap();
        let e = parse(&scratch("patch_size = 6")).unwrap_err();
        assert!(
            e.contains("[model.vision]") && e.contains("image_size"),
            "{e}"
        );
        let e = parse(&scratch("patch_size = 8, projector_merge = 3")).unwrap_err();
        assert!(e.contains("model.vision.projector_merge"), "{e}");
    }

    /// Shapes the Hugging Face loader would refuse are refused when the file is read (they
    /// panicked in RoPE or the attention before).
    #[test]
    fn scratch_shapes_are_checked_as_the_loader_checks_them() {
        let scratch = |hidden: usize, inter: usize, layers: usize, heads: usize, kv: usize| {
            parse(&BASE.replace(
                "init = \"pretrained\"\npath = \"m\"",
                &format!(
                    "init = \"scratch\"\nhidden_size = {hidden}\nintermediate_size = {inter}\n\
                     num_hidden_layers = {layers}\nnum_attention_heads = {heads}\n\
                     num_key_value_heads = {kv}"
                ),
            ))
        };
        scratch(16, 32, 1, 2, 1).unwrap();
        for (shape, field) in [
            ((6, 32, 1, 2, 1), "head size"),
            ((0, 32, 1, 2, 1), "model.hidden_size"),
            ((16, 0, 1, 2, 1), "model.intermediate_size"),
            ((16, 32, 0, 2, 1), "model.num_hidden_layers"),
            ((16, 32, 1, 0, 1), "model.num_attention_heads"),
            ((16, 32, 1, 2, 0), "model.num_key_value_heads"),
            ((16, 32, 1, 3, 1), "model.num_attention_heads"),
            ((16, 32, 1, 4, 3), "model.num_key_value_heads"),
        ] {
            let (h, i, l, a, k) = shape;
            let e = scratch(h, i, l, a, k).unwrap_err();
            assert!(
                e.starts_with("c.toml: ") && e.contains(field),
                "{shape:?}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn lora_section_is_optional_and_checked() {
        use sftvsrl_model::LoraTarget;
        assert_eq!(parse(BASE).unwrap().lora, None);
        let c = parse(&format!("{BASE}[lora]\nrank = 8\nalpha = 16.0\n")).unwrap();
        let lora = c.lora.as_ref().unwrap();
        assert_eq!((lora.rank, lora.alpha, lora.targets.len()), (8, 16.0, 4));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let c = parse(&format!(
            "{BASE}[lora]\nrank = 2\nalpha = 2.0\ntargets = [\"gate_proj\", \"o_proj\"]\n"
        ))
        .unwrap();
        let targets = c.lora.unwrap().targets;
        assert_eq!(targets, vec![LoraTarget::GateProj, LoraTarget::OProj]);
        for (section, field) in [
            ("rank = 0\nalpha = 1.0", "lora.rank"),
            ("rank = 4\nalpha = 0.0", "lora.alpha"),
            ("rank = 4", "alpha"),
            ("rank = 4\nalpha = 8.0\ndropout = 0.1", "dropout"),
            ("rank = 4\nalpha = 8.0\ntargets = [\"w_proj\"]", "w_proj"),
            ("rank = 4\nalpha = 8.0\ntargets = []", "lora.targets"),
        ] {
            let e = parse(&format!("{BASE}[lora]\n{section}\n")).unwrap_err();
            assert!(e.starts_with("c.toml: ") && e.contains(field), "{e}");
        }
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sft");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let config = SftConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push((config.name, config.lora.is_some()));
        }
        names.sort();
        assert!(
            names.contains(&("gp-l-smollm2-lora".into(), true)),
            "{names:?}"
        );
        assert!(names.contains(&("gp-l-smollm2".into(), false)), "{names:?}");
    }
}
