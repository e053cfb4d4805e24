//! The RL run configuration: one TOML file, every field documented in `config/rl/*.toml`.
//! Defaults reproduce the reference PPO recipe (paper-spec §4); every departure from it is a
//! named switch that is off by default. Unknown fields are errors.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sftvsrl_envs::gp::GpConfig;
use sftvsrl_envs::nav::NavConfig;
use sftvsrl_model::LoraConfig;

use super::distill::DistillConfig;
use crate::config::{GpEvalConfig, RunConfig};

/// A whole RL run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    /// The run's name: everything is written to `<runs_dir>/<name>/`.
    pub name: String,
    /// The folder that holds runs.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    /// Seeds the value head, the episodes, the sampler and the minibatch order.
    #[serde(default)]
    pub seed: u64,
    /// The starting policy: an SFT checkpoint folder (HF layout with `tokenizer.json`) or GGUF.
    pub policy: PathBuf,
    /// The `Today Date` of the system turn of Llama 3.1+ chat templates (default: the
    /// policy's, as its SFT run set it, else "26 Jul 2024"). An error for templates without
    /// one.
    #[serde(default)]
    pub chat_date: Option<String>,
    /// The task: `gp-l` (GeneralPoints, text) or `virl-l` (V-IRL navigation, text).
    #[serde(default)]
    pub env: EnvKind,
    /// GeneralPoints settings (`verify_iter`, rule, rewards …); the reference's by default.
    /// Only with `env = "gp-l"`.
    #[serde(default)]
    pub gp: GpConfig,
    /// Navigation settings (`verify_iter`, action rule, rewards …); the reference's by default.
    /// Only with `env = "virl-l"`.
    #[serde(default)]
    pub nav: NavConfig,
    /// The route folder of `env = "virl-l"` (`route_infos.json`, `gps_pano_mapping.pkl`, …):
    /// the real V-IRL data or a world from `sftvsrl nav world`.
    #[serde(default)]
    pub routes: Option<PathBuf>,
    #[serde(default)]
    pub rollout: RolloutConfig,
    #[serde(default)]
    pub ppo: PpoConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub value_head: ValueHeadConfig,
    /// Write a checkpoint every this many updates (and always after the last).
    #[serde(default = "one")]
    pub checkpoint_every: usize,
    /// Also write each checkpoint's policy in Hugging Face layout (`checkpoints/step-N/hf/`), so
    /// that it can be evaluated.
    #[serde(default)]
    pub export_checkpoints: bool,
    /// GeneralPoints ID episodes played greedily before the first and after the last update
    /// (`env = "gp-l"` only; evaluate navigation with `sftvsrl eval` or a study).
    #[serde(default)]
    pub eval: Option<GpEvalConfig>,
    /// LoRA adapters on the policy (as in SFT): only they, a vision-language model's projector
    /// and the value head are trained, and `final/` holds the merged weights. Full fine-tuning
    /// (every parameter, the vision tower's too: paper D.1) when absent.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Prompt widths, KV caches and PPO minibatches are rounded up to a multiple of this many
    /// tokens, so the GPU backends compile kernels for few shapes (padding is masked and
    /// changes no result); above 1, a short last minibatch of an epoch is also padded to
    /// `ppo.mini_batch_size` rows. Default: 32 on wgpu and cuda, 1 (exact lengths) on the CPU.
    #[serde(default)]
    pub pad_to_multiple_of: Option<usize>,
    /// On-policy distillation toward a teacher checkpoint in place of the verifier's reward
    /// (optional; see [`super::distill`]).
    #[serde(default)]
    pub distill: Option<DistillConfig>,
}

/// Which environment the policy plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvKind {
    /// GeneralPoints with the cards as text.
    #[default]
    #[serde(rename = "gp-l")]
    GpL,
    /// V-IRL navigation with observations as text.
    #[serde(rename = "virl-l")]
    VirlL,
}

/// How experience is collected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Environments stepped together: one batched generation per step (the reference runs 8
    /// processes of batch 1); in a multi-worker run (`sftvsrl rl --world-size`), each worker's.
    pub num_envs: usize,
    /// Steps per environment per update (reference 256); the buffer holds
    /// `num_envs × num_steps` model calls.
    pub num_steps: usize,
    /// Most tokens per response (reference 512).
    pub max_new_tokens: usize,
    /// Sampling temperature (reference 0.2); log-probs are scored at this temperature.
    pub temperature: f32,
    /// Nucleus sampling mass (reference: the checkpoint's generation config, inferred 0.9).
    pub top_p: f32,
}

/// What the advantage is measured against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageKind {
    /// GAE on the value head's estimates (the reference).
    #[default]
    Gae,
    /// GRPO-style: Monte-Carlo returns minus the mean over a group of environments that play
    /// the same hands, at the same revision depth; no value head is trained.
    Group,
}

/// How GAE treats a step that hit the step limit (`truncated`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Mask = 1 − terminated: a truncated step bootstraps into the next episode's first value
    /// (the reference, `use_proper_time_limits=False`; paper-spec §8 Q1).
    #[default]
    Reference,
    /// A truncated step is terminal (mask 0).
    Terminal,
    /// a2c-ppo-acktr's `use_proper_time_limits=True`: the GAE accumulator is reset at a
    /// truncated step, so its return is its own value estimate.
    ProperTimeLimits,
}

/// What the PPO ratio is taken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioKind {
    /// One ratio per action from the λ-weighted sequence log-prob (the reference).
    #[default]
    Action,
    /// One ratio per response token, clipped per token and averaged over tokens (TRL-style).
    Token,
}

/// How advantages are whitened (mean 0, std 1) before the PPO epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Whitening {
    /// Over groups of `whiten_group_size` samples (the reference: each of its 8 processes
    /// whitens its own buffer of 256 samples).
    #[default]
    PerGroup,
    /// Over the whole buffer at once.
    Buffer,
    /// Not at all.
    Off,
}

/// The PPO algorithm (TRL names where they exist, the reference's otherwise).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Updates (collect, then optimise) in the run (reference 20 for GP).
    pub num_updates: usize,
    /// Discount (reference 0.9).
    pub gamma: f64,
    /// GAE λ (reference 0.95).
    pub lam: f64,
    pub truncation: Truncation,
    pub advantage: AdvantageKind,
    /// With `advantage = "group"`: environments per group (they play the same hands).
    pub group_size: usize,
    /// Advantage whitening: `per_group` (reference), `buffer` or `off`.
    pub whiten_advantages: Whitening,
    /// With `per_group`: samples per group (reference 256, one process's buffer). The buffer,
    /// environment by environment and each in time order, is cut into groups of this size; it
    /// must be a multiple of it, or no larger (then it is one group).
    pub whiten_group_size: usize,
    /// Policy ratio clip (reference 0.1).
    pub cliprange: f32,
    /// Value clip around the rollout value (reference 0.1).
    pub cliprange_value: f32,
    /// Value loss coefficient (reference 0.5, on top of the loss's own ½).
    pub vf_coef: f32,
    /// When any ratio in a minibatch exceeds this, only the clipped surrogate is used
    /// (reference 10).
    pub ratio_threshold: f32,
    /// Passes over the buffer per update (reference 4).
    pub num_ppo_epochs: usize,
    /// Samples per forward/backward pass (reference 1).
    pub mini_batch_size: usize,
    /// Samples whose gradients are averaged into one optimizer step, a multiple of
    /// `mini_batch_size` (reference 1024: gradient accumulation 128 × 1 sample on each of 8
    /// processes). With 8 × 256 samples and 4 epochs, an update takes 8 steps; a last step
    /// short of samples takes what is left.
    pub samples_per_step: usize,
    /// Clip the global L2 norm of each step's gradient to this; 0: no clipping (reference 1.0:
    /// DeepSpeed's `gradient_clipping`, which Accelerate fills with 1.0; the 0.01 of the
    /// reference's PPO config is never applied, docs/reference-behaviour.md §2).
    pub max_grad_norm: f32,
    /// Weight of the thought tokens in the action log-prob (reference 0.5).
    pub thought_prob_coef: f32,
    /// The answer key whose `"key":` tokens split thought from action. The reference always
    /// uses `formula`, for navigation too, where the key is never found and the split falls
    /// near the end (paper-spec §4.3, §8 D6); `action` is the split it intended there.
    pub answer_key: String,
    pub ratio: RatioKind,
    /// KL penalty to the frozen starting policy, subtracted from each step's reward (0: off,
    /// as the reference).
    pub kl_coef: f32,
    /// Entropy bonus (the reference configures 0.01 but never uses it: 0).
    pub entropy_coef: f32,
}

/// How far PyTorch's cosine schedule advances after each update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStepping {
    /// [`REFERENCE_PROCESSES`] scheduler steps per update (the reference: Accelerate steps a
    /// prepared scheduler once per process on every call, and 8 processes run; with t_max 100
    /// the rate reaches min_lr after update 12 and rises again; docs/reference-behaviour.md §1).
    #[default]
    PerProcess,
    /// One scheduler step per update (paper-spec §4.7's reading: barely decays in 20 updates).
    PerUpdate,
}

/// The reference's process count: the cosine advances this many steps per update with
/// [`ScheduleStepping::PerProcess`].
pub const REFERENCE_PROCESSES: usize = 8;

impl ScheduleStepping {
    /// Scheduler steps per update.
    pub fn steps_per_update(self) -> usize {
        match self {
            ScheduleStepping::PerProcess => REFERENCE_PROCESSES,
            ScheduleStepping::PerUpdate => 1,
        }
    }
}

/// Adam with PyTorch's cosine schedule, advanced after each update (the rate is constant
/// within an update).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Initial learning rate (reference 1e-6).
    pub lr: f64,
    /// Cosine floor (reference 1e-9).
    pub min_lr: f64,
    /// Scheduler steps from lr to min_lr; the rate rises again after them (reference 100 for
    /// GP, 20 for V-IRL).
    pub t_max: usize,
    /// Scheduler steps per update: `per_process` (reference, 8) or `per_update` (1).
    pub schedule_stepping: ScheduleStepping,
    /// Adam β1, β2, ε (reference 0.9, 0.999, 1e-7; no weight decay).
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
}

/// The value head MLP on the last prompt token's final hidden state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueHeadConfig {
    /// Hidden layer widths, each followed by a ReLU (reference 1024, 512).
    pub hidden: Vec<usize>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            num_envs: 8,
            num_steps: 256,
            max_new_tokens: 512,
            temperature: 0.2,
            top_p: 0.9,
        }
    }
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            num_updates: 20,
            gamma: 0.9,
            lam: 0.95,
            truncation: Truncation::Reference,
            advantage: AdvantageKind::Gae,
            group_size: 1,
            whiten_advantages: Whitening::PerGroup,
            whiten_group_size: 256,
            cliprange: 0.1,
            cliprange_value: 0.1,
            vf_coef: 0.5,
            ratio_threshold: 10.0,
            num_ppo_epochs: 4,
            mini_batch_size: 1,
            samples_per_step: 1024,
            max_grad_norm: 1.0,
            thought_prob_coef: 0.5,
            answer_key: "formula".into(),
            ratio: RatioKind::Action,
            kl_coef: 0.0,
            entropy_coef: 0.0,
        }
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-6,
            min_lr: 1e-9,
            t_max: 100,
            schedule_stepping: ScheduleStepping::PerProcess,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Default for ValueHeadConfig {
    fn default() -> Self {
        ValueHeadConfig {
            hidden: vec![1024, 512],
        }
    }
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn one() -> usize {
    1
}

impl RlConfig {
    /// The settings of the task not chosen are errors, not silently ignored.
    fn check_task(&self) -> Result<(), String> {
        match self.env {
            EnvKind::GpL => {
                if self.nav != NavConfig::default() || self.routes.is_some() {
                    return Err("`nav` and `routes` belong to env = \"virl-l\"".into());
                }
                if self.gp.verify_iter == 0 {
                    return Err("`gp.verify_iter` must be at least 1".into());
                }
            }
            EnvKind::VirlL => {
                if self.gp != GpConfig::default() {
                    return Err("`gp` belongs to env = \"gp-l\"".into());
                }
                if self.eval.is_some() {
                    return Err("`eval` plays GeneralPoints: evaluate navigation with \
                                `sftvsrl eval` or a study"
                        .into());
                }
                if self.routes.is_none() {
                    return Err("`routes`: env = \"virl-l\" needs a route folder".into());
                }
                if self.nav.verify_iter == 0 {
                    return Err("`nav.verify_iter` must be at least 1".into());
                }
                self.nav.validate().map_err(|e| format!("`nav`: {e}"))?;
            }
        }
        Ok(())
    }
}

impl RunConfig for RlConfig {
    fn name_and_runs_dir(&self) -> (&str, &Path) {
        (&self.name, &self.runs_dir)
    }

    /// The starting policy, LoRA and the value head.
    fn checkpoint_fields(&self) -> Vec<&'static str> {
        vec!["policy", "lora", "value_head"]
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(lora) = &self.lora {
            lora.check()?;
        }
        let (r, p, o) = (&self.rollout, &self.ppo, &self.optim);
        let positive = [
            ("rollout.num_envs", r.num_envs),
            ("rollout.num_steps", r.num_steps),
            ("rollout.max_new_tokens", r.max_new_tokens),
            ("ppo.num_updates", p.num_updates),
            ("ppo.group_size", p.group_size),
            ("ppo.num_ppo_epochs", p.num_ppo_epochs),
            ("ppo.mini_batch_size", p.mini_batch_size),
            ("ppo.samples_per_step", p.samples_per_step),
            ("ppo.whiten_group_size", p.whiten_group_size),
            ("optim.t_max", o.t_max),
            ("checkpoint_every", self.checkpoint_every),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{field}` must be at least 1"));
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err("`name` must be a non-empty folder name".into());
        }
        self.check_task()?;
        if !(r.temperature.is_finite() && r.temperature > 0.0) {
            return Err("`rollout.temperature` must be positive (PPO needs sampling)".into());
        }
        if !(r.top_p > 0.0 && r.top_p <= 1.0) {
            return Err("`rollout.top_p` must be in (0, 1]".into());
        }
        let unit = [("ppo.gamma", p.gamma), ("ppo.lam", p.lam)];
        if let Some((field, _)) = unit.iter().find(|(_, v)| !(0.0..=1.0).contains(v)) {
            return Err(format!("`{field}` must be in [0, 1]"));
        }
        let non_negative = [
            ("ppo.cliprange", p.cliprange),
            ("ppo.cliprange_value", p.cliprange_value),
            ("ppo.vf_coef", p.vf_coef),
            ("ppo.thought_prob_coef", p.thought_prob_coef),
            ("ppo.kl_coef", p.kl_coef),
            ("ppo.entropy_coef", p.entropy_coef),
            ("ppo.max_grad_norm", p.max_grad_norm),
        ];
        if let Some((field, _)) = non_negative
            .iter()
            .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
        {
            return Err(format!("`{field}` must be a finite number >= 0"));
        }
        let positive_f = [
            ("ppo.ratio_threshold", p.ratio_threshold),
            ("optim.epsilon", o.epsilon),
        ];
        if let Some((field, _)) = positive_f
            .iter()
            .find(|(_, v)| !(v.is_finite() && *v > 0.0))
        {
            return Err(format!("`{field}` must be a positive number"));
        }
        if !(o.lr.is_finite() && o.lr > 0.0 && o.min_lr >= 0.0 && o.min_lr <= o.lr) {
            return Err("`optim.lr` must be positive and `optim.min_lr` in [0, lr]".into());
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err("`optim.beta1` and `optim.beta2` must be in [0, 1)".into());
        }
        if p.answer_key.is_empty() {
            return Err("`ppo.answer_key` must not be empty".into());
        }
        if let Some(d) = &self.distill {
            d.validate()?;
            if p.kl_coef > 0.0 {
                return Err(
                    "`distill` replaces the reward by the KL from the teacher: set \
                            `ppo.kl_coef` to 0"
                        .into(),
                );
            }
        }
        if p.samples_per_step % p.mini_batch_size != 0 {
            return Err(format!(
                "`ppo.samples_per_step` ({}) must be a multiple of `ppo.mini_batch_size` ({})",
                p.samples_per_step, p.mini_batch_size
            ));
        }
        let buffer = r.num_envs * r.num_steps;
        let group = p.whiten_group_size;
        if p.whiten_advantages == Whitening::PerGroup && group < 2 {
            return Err("`ppo.whiten_group_size` must be at least 2".into());
        }
        if p.whiten_advantages != Whitening::PerGroup
            && group != PpoConfig::default().whiten_group_size
        {
            return Err(
                "`ppo.whiten_group_size` applies to `ppo.whiten_advantages = \"per_group\"` only"
                    .into(),
            );
        }
        if p.whiten_advantages == Whitening::PerGroup && buffer > group && buffer % group != 0 {
            return Err(format!(
                "`ppo.whiten_group_size` ({group}) must divide the buffer of \
                 rollout.num_envs × rollout.num_steps = {buffer} samples (or be at least as \
                 large), or set `ppo.whiten_advantages` = \"buffer\""
            ));
        }
        if p.advantage == AdvantageKind::Group && p.truncation != Truncation::Reference {
            return Err(
                "`ppo.truncation` applies to `ppo.advantage = \"gae\"` only (group \
                        advantages are Monte-Carlo returns of whole episodes)"
                    .into(),
            );
        }
        if p.advantage == AdvantageKind::Group && r.num_envs % p.group_size != 0 {
            return Err("`ppo.group_size` must divide `rollout.num_envs`".into());
        }
        if self.value_head.hidden.contains(&0) {
            return Err("`value_head.hidden` widths must be at least 1".into());
        }
        self.eval.as_ref().map_or(Ok(()), GpEvalConfig::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"t\"\npolicy = \"runs/sft/final\"\n";

    fn parse(text: &str) -> Result<RlConfig, String> {
        RlConfig::from_toml(text, Path::new("rl.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_reference_recipe() {
        let c = parse(BASE).unwrap();
        let p = &c.ppo;
        assert_eq!((p.gamma, p.lam), (0.9, 0.95));
        assert_eq!((p.cliprange, p.cliprange_value, p.vf_coef), (0.1, 0.1, 0.5));
        assert_eq!(
            (p.num_ppo_epochs, p.mini_batch_size, p.samples_per_step),
            (4, 1, 1024)
        );
        assert_eq!(
            (p.whiten_advantages, p.whiten_group_size),
            (Whitening::PerGroup, 256)
        );
        // docs/reference-behaviour.md §1 and §2.
        assert_eq!((p.max_grad_norm, p.thought_prob_coef), (1.0, 0.5));
        assert_eq!(c.optim.schedule_stepping.steps_per_update(), 8);
        assert_eq!((p.kl_coef, p.entropy_coef, p.num_updates), (0.0, 0.0, 20));
        assert_eq!(p.truncation, Truncation::Reference);
        assert_eq!(
            (p.advantage, p.ratio),
            (AdvantageKind::Gae, RatioKind::Action)
        );
        assert_eq!(
            (c.optim.lr, c.optim.min_lr, c.optim.t_max),
            (1e-6, 1e-9, 100)
        );
        assert_eq!(c.optim.epsilon, 1e-7);
        assert_eq!(
            (c.rollout.temperature, c.rollout.max_new_tokens),
            (0.2, 512)
        );
        assert_eq!(c.value_head.hidden, vec![1024, 512]);
        assert_eq!(c.gp.verify_iter, 5);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rl");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            RlConfig::from_file(&entry.unwrap().path()).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
        assert!(seen >= 1, "config/rl is empty");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse(&format!("{BASE}[ppo]\nclip_range = 0.2\n")).unwrap_err();
        assert!(
            e.starts_with("rl.toml: ") && e.contains("clip_range"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[ppo]\nsamples_per_step = 0\n")).unwrap_err();
        assert!(e.contains("ppo.samples_per_step"), "{e}");
        let e = parse(&format!(
            "{BASE}[ppo]\nmini_batch_size = 3\nsamples_per_step = 1024\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("ppo.samples_per_step") && e.contains("(3)"),
            "{e}"
        );
        // 8 × 100 samples do not split into groups of 256; a smaller buffer is one group.
        let e = parse(&format!("{BASE}[rollout]\nnum_steps = 100\n")).unwrap_err();
        assert!(
            e.contains("ppo.whiten_group_size") && e.contains("800"),
            "{e}"
        );
        parse(&format!("{BASE}[rollout]\nnum_steps = 20\n")).unwrap();
        parse(&format!(
            "{BASE}[rollout]\nnum_steps = 100\n[ppo]\nwhiten_advantages = \"buffer\"\n"
        ))
        .unwrap();
        let e = parse(&format!(
            "{BASE}[ppo]\nwhiten_advantages = \"off\"\nwhiten_group_size = 64\n"
        ))
        .unwrap_err();
        assert!(e.contains("ppo.whiten_group_size"), "{e}");
        let e = parse(&format!("{BASE}[ppo]\nmax_grad_norm = -1.0\n")).unwrap_err();
        assert!(e.contains("ppo.max_grad_norm"), "{e}");
        let e = parse(&format!("{BASE}[ppo]\ngrad_accum = 128\n")).unwrap_err();
        assert!(e.contains("grad_accum"), "{e}");
        let e = parse(&format!("{BASE}[ppo]\ntruncation = \"magic\"\n")).unwrap_err();
        assert!(e.contains("magic"), "{e}");
        let e = parse(&format!(
            "{BASE}[ppo]\nadvantage = \"group\"\ngroup_size = 4\ntruncation = \"terminal\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("ppo.truncation"), "{e}");
        let e = parse(&format!("{BASE}[rollout]\ntemperature = 0.0\n")).unwrap_err();
        assert!(e.contains("rollout.temperature"), "{e}");
        parse(&format!("{BASE}[gp]\nvision = true\n")).expect("GP-VL trains a VLM policy");
        let e = parse("name = \"t\"\n").unwrap_err();
        assert!(e.contains("policy"), "{e}");
        let e = parse(&format!(
            "{BASE}[rollout]\nnum_envs = 6\n[ppo]\nadvantage = \"group\"\ngroup_size = 4\n"
        ))
        .unwrap_err();
        assert!(e.contains("ppo.group_size"), "{e}");
    }
}
