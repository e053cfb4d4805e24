//! The study configuration: one TOML file holding the Init run, the two branches and the
//! evaluation protocol (see `config/study/`). Each stage section is an ordinary run config
//! (`config/sft/`, `config/rl/`) less what the study decides itself: the run's name and folder,
//! the branches' starting model, and (when left out) the data file's place.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sftvsrl_training::rl::RlConfig;
use sftvsrl_training::{
    ModelConfig, RunConfig, SelfSftConfig, SftConfig, TrainError, parse_config,
};

use sftvsrl_envs::nav::world::WorldSpec;
use sftvsrl_envs::nav::world::logo::LandmarkLook;
use sftvsrl_envs::nav::world::style::CityStyle;

use super::run::Branch;
use crate::config::EvalConfig;
use crate::error::EvalError;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    name: String,
    #[serde(default = "default_runs_dir")]
    runs_dir: PathBuf,
    init: toml::Table,
    sft: toml::Table,
    rl: toml::Table,
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    sft_lrs: Option<Vec<f64>>,
    #[serde(default)]
    arms: toml::Table,
    #[serde(default = "default_kl_prompts")]
    kl_prompts: usize,
    #[serde(default)]
    eval: EvalConfig,
    #[serde(default)]
    world: Option<WorldFile>,
    #[serde(default)]
    ood_world: Option<WorldFile>,
}

/// A synthetic navigation world the study generates (as `sftvsrl nav world` does): `[world]`
/// into `<study>/world/`, which every navigation stage uses, and `[ood_world]` into
/// `<study>/ood-world/`, the other city of the `virl-vl-ood-visual` variant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorldFile {
    /// `nyc` (the training city's look) or `worldwide`.
    #[serde(default = "default_style")]
    style: String,
    routes: usize,
    seed: u64,
    /// Panorama width in pixels (text tasks never look at them: keep it small).
    #[serde(default = "default_pano_width")]
    pano_width: u32,
    /// `signs` (names lettered on storefronts) or `logos` (readable by tiny models).
    #[serde(default = "default_landmarks")]
    landmarks: String,
    /// The style whose business names the city takes, when not its own (`nyc`, `worldwide`).
    #[serde(default)]
    names: Option<String>,
    /// Compass heading of the avenues in degrees, in place of the style's.
    #[serde(default)]
    grid_heading: Option<f64>,
}

impl WorldFile {
    /// The generator's spec; errors name the field within `section`.
    fn spec(&self, section: &str) -> Result<WorldSpec, String> {
        let style = |field: &str, value: &str| {
            value
                .parse::<CityStyle>()
                .map_err(|e| format!("[{section}] {field}: {e}"))
        };
        let spec = WorldSpec {
            style: style("style", &self.style)?,
            routes: self.routes,
            seed: self.seed,
            pano_width: self.pano_width,
            landmarks: self
                .landmarks
                .parse::<LandmarkLook>()
                .map_err(|e| format!("[{section}] landmarks: {e}"))?,
            names: self
                .names
                .as_deref()
                .map(|n| style("names", n))
                .transpose()?,
            grid_heading: self.grid_heading,
        };
        spec.validate().map_err(|e| format!("[{section}] {e}"))?;
        Ok(spec)
    }
}

/// Whether an Init section trains a language model from scratch (no `[init.model.vision]`).
fn scratch_language_model(init: &toml::Table) -> bool {
    let model = init.get("model").and_then(toml::Value::as_table);
    model.is_some_and(|m| {
        m.get("init").and_then(toml::Value::as_str) == Some("scratch") && !m.contains_key("vision")
    })
}

fn default_style() -> String {
    "nyc".into()
}
fn default_pano_width() -> u32 {
    256
}
fn default_landmarks() -> String {
    "signs".into()
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_kl_prompts() -> usize {
    64
}

/// A resolved study: every stage's own run config, with names, folders and starting points
/// filled in.
#[derive(Clone, Debug)]
pub struct Study {
    pub name: String,
    /// `<runs_dir>/<name>/`: the stages' runs (`init/`, `rl/`, `sft/`), `evals/`, the report.
    pub dir: PathBuf,
    /// The Init: SFT from the configured model, typically on a mix of rules without the OOD one.
    pub init: SftConfig,
    /// The SFT branch: SFT from the Init's final model, checkpointed at the RL branch's compute.
    pub sft: SftConfig,
    /// The RL branch: PPO from the Init's final model.
    pub rl: RlConfig,
    /// `seeds`: every branch runs once per seed, its `seed` replaced ([`Study::rl_runs`],
    /// [`Study::sft_runs`]); `None`: once, at the branch section's own seed.
    pub seeds: Option<Vec<u64>>,
    /// `sft_lrs`: the SFT branch runs at each learning rate, its `train.lr` replaced; `None`:
    /// at its own.
    pub sft_lrs: Option<Vec<f64>>,
    /// `[arms.<name>]`: further branches, each the RL or SFT branch with some settings changed
    /// (GRPO, another loss, other data), run at every seed beside the two branches.
    pub arms: Vec<Arm>,
    /// `self_sft` of the SFT arms that train on their start model's own verified episodes
    /// (written to the arm's `data.path` before its first run), by arm name.
    pub self_sft: Vec<(String, SelfSftConfig)>,
    /// RL arms distilled from one of the study's runs (`distill.teacher` naming it): arm name
    /// and teacher run; their runs follow every other branch run.
    pub teachers: Vec<(String, String)>,
    /// Where the study writes the Init's base model (the Init's architecture and tokenizer with
    /// fresh random weights) when an arm starts `from = "base"` and the Init trains from
    /// scratch; a pretrained Init's base is its own checkpoint, and this is `None`.
    pub base_model: Option<PathBuf>,
    /// `kl_prompts`: every checkpoint's KL from the Init is measured on this many ID training
    /// prompts (0: not measured); see [`super::kl`].
    pub kl_prompts: usize,
    /// How every checkpoint is evaluated.
    pub eval: EvalConfig,
    /// The navigation world generated into [`Study::world_dir`] before the Init, if any.
    pub world: Option<WorldSpec>,
    /// The other city generated into [`Study::ood_world_dir`], if any.
    pub ood_world: Option<WorldSpec>,
    /// The study TOML as given (kept beside the report).
    pub source: String,
}

impl Study {
    /// Where the study's generated navigation world is.
    pub fn world_dir(&self) -> PathBuf {
        self.dir.join(WORLD_DIR)
    }

    /// Where the study's generated visual-OOD city is.
    pub fn ood_world_dir(&self) -> PathBuf {
        self.dir.join(OOD_WORLD_DIR)
    }

    /// Reads and resolves a study TOML; errors name the file, the section and the field.
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(&text, path)
    }

    /// Parses and resolves study TOML text (`origin` names it in errors).
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, EvalError> {
        let file: StudyFile = parse_config(text, origin, |f: &StudyFile| {
            if f.name.is_empty() || f.name.contains(['/', '\\']) {
                return Err("`name` must be a non-empty folder name".into());
            }
            check_sweep("seeds", f.seeds.as_deref(), |_| true)?;
            check_sweep("sft_lrs", f.sft_lrs.as_deref(), |lr| {
                lr.is_finite() && lr > 0.0
            })?;
            if let Some(v) = f.eval.variants.iter().find(|v| v.is_vision())
                && scratch_language_model(&f.init)
            {
                return Err(format!(
                    "[eval] variants: `{}` shows images, but [init.model] trains a language \
                     model from scratch: give it a [init.model.vision] section",
                    v.name()
                ));
            }
            Ok(())
        })?;
        let spec = |w: &Option<WorldFile>, section| {
            let spec = w.as_ref().map(|w| w.spec(section)).transpose();
            spec.map_err(|message| TrainError::Config {
                path: origin.to_path_buf(),
                message,
            })
        };
        let world = spec(&file.world, "world")?;
        let ood_world = spec(&file.ood_world, "ood_world")?;
        let dir = file.runs_dir.join(&file.name);
        let init_model = dir.join("init").join("final");
        let world_dir = dir.join(WORLD_DIR);
        let routes = world.as_ref().map(|_| world_dir.as_path());
        let stage = |section| Stage {
            origin,
            section,
            dir: &dir,
            routes,
        };
        let mut init: SftConfig = stage("init").resolve(file.init, Vec::new())?;
        let starts = |model: &Path| {
            let table = toml::Table::from_iter([
                ("init".to_string(), "pretrained".into()),
                ("path".to_string(), path_value(model)),
            ]);
            (
                vec![("model", toml::Value::from(table))],
                vec![("policy", path_value(model))],
            )
        };
        let (sft_start, rl_start) = starts(&init_model);
        // The Init's base model: a pretrained Init's own checkpoint, or one the study writes.
        let (base_model, base_path) = match &init.model {
            ModelConfig::Pretrained { path, .. } => (None, path.clone()),
            ModelConfig::Scratch { .. } => (Some(dir.join(BASE_DIR)), dir.join(BASE_DIR)),
        };
        let (sft_base, rl_base) = starts(&base_path);
        let names: Vec<&str> = file.arms.keys().map(String::as_str).collect();
        let mut arms = Vec::new();
        let (mut self_sft, mut teachers, mut from_base) = (Vec::new(), Vec::new(), false);
        let mut vocab_data = Vec::new();
        for (name, arm) in &file.arms {
            let arm_stage = stage(name);
            let spec = arm_override(name, arm).map_err(|e| arm_stage.error(e))?;
            from_base |= spec.from_base;
            let (base, start) = match (spec.branch, spec.from_base) {
                (Branch::Rl, false) => (&file.rl, &rl_start),
                (Branch::Rl, true) => (&file.rl, &rl_base),
                (_, false) => (&file.sft, &sft_start),
                (_, true) => (&file.sft, &sft_base),
            };
            // An SFT arm that sets data of its own (not self-SFT's samples) writes it itself.
            let own_data = spec.self_sft.is_none() && spec.over.contains_key("data");
            let mut table = base.clone();
            if let Some(toml::Value::Table(data)) = table.get_mut("data")
                && !data.contains_key("path")
            {
                // A self-SFT arm writes its own data; another SFT arm trains on the SFT
                // branch's unless it names its own.
                let folder = match spec.self_sft.is_some() {
                    true => name.as_str(),
                    false => "sft",
                };
                if spec.self_sft.is_some() {
                    data.remove("generate");
                    data.remove("generate_nav");
                }
                if !own_data {
                    let file = dir.join("data").join(folder).join("data.jsonl");
                    data.insert("path".into(), path_value(&file));
                }
            }
            merge(&mut table, spec.over);
            arms.push(match spec.branch {
                Branch::Rl => {
                    let mut c: RlConfig = arm_stage.resolve(table, start.clone())?;
                    c.export_checkpoints = true;
                    if let Some(d) = &c.distill
                        && d.teacher == Path::new("sft")
                        && file.sft_lrs.is_some()
                    {
                        return Err(arm_stage
                            .error("`distill.teacher = \"sft\"` is ambiguous with `sft_lrs`: name a checkpoint folder")
                            .into());
                    }
                    if let Some(d) = &c.distill
                        && let Some(run) = study_run(&d.teacher, &names, file.sft_lrs.is_some())
                    {
                        if run == name.as_str() {
                            return Err(arm_stage
                                .error("`distill.teacher` names the arm itself")
                                .into());
                        }
                        teachers.push((name.clone(), run.to_string()));
                    }
                    Arm::Rl(c)
                }
                _ => {
                    let mut c: SftConfig = arm_stage.resolve(table, start.clone())?;
                    c.train.export_checkpoints = true;
                    if let Some(config) = spec.self_sft {
                        self_sft.push((name.clone(), config));
                    }
                    if own_data {
                        vocab_data.push(c.data.path.clone());
                    }
                    Arm::Sft(c)
                }
            });
        }
        // Distillation from a distilled arm would need an order of its own: refused.
        if let Some((arm, run)) = teachers
            .iter()
            .find(|(_, t)| teachers.iter().any(|(a, _)| a == t))
        {
            return Err(stage(arm)
                .error(format!(
                    "`distill.teacher` names `{run}`, itself distilled from a run"
                ))
                .into());
        }
        // A from-scratch Init's vocabulary also covers the words only the SFT arms' own data
        // uses (rewordings, thoughts), after its own (see `model.vocab_data`).
        if let ModelConfig::Scratch { vocab_data: v, .. } = &mut init.model {
            v.extend(vocab_data);
        }
        let mut sft: SftConfig = stage("sft").resolve(file.sft, sft_start)?;
        let mut rl: RlConfig = stage("rl").resolve(file.rl, rl_start)?;
        if let Some((arm, _)) = self_sft.first()
            && (rl.gp.vision || rl.nav.vision)
        {
            return Err(stage(arm)
                .error("`self_sft` plays the RL branch's task, which shows images: self-SFT data is text only")
                .into());
        }
        sft.train.export_checkpoints = true;
        rl.export_checkpoints = true;
        let mut eval = file.eval;
        if let Some(routes) = routes
            && eval.variants.iter().any(|v| v.is_navigation())
        {
            if eval.nav.routes.is_some() {
                return Err(stage("eval").error(ROUTES_OWNED).into());
            }
            eval.nav.routes = Some(routes.to_path_buf());
        }
        if ood_world.is_some() {
            if eval.nav.ood_routes.is_some() {
                return Err(stage("eval").error(OOD_ROUTES_OWNED).into());
            }
            eval.nav.ood_routes = Some(dir.join(OOD_WORLD_DIR));
        }
        eval.validate().map_err(|e| stage("eval").error(e))?;
        Ok(Study {
            name: file.name,
            dir,
            init,
            sft,
            rl,
            seeds: file.seeds,
            sft_lrs: file.sft_lrs,
            arms,
            self_sft,
            teachers,
            base_model: base_model.filter(|_| from_base),
            kl_prompts: file.kl_prompts,
            eval,
            world,
            ood_world,
            source: text.to_string(),
        })
    }

    /// The RL branch's runs, one per seed, each in its own folder: `rl/`, or `rl-seed<S>/`
    /// when `seeds` is given; then the RL arms' runs, `<name>[-seed<S>]/`.
    pub fn rl_runs(&self) -> Vec<BranchRun<RlConfig>> {
        let arms = self.arms.iter().filter_map(|a| match a {
            Arm::Rl(c) => Some(c),
            Arm::Sft(_) => None,
        });
        let bases = std::iter::once(&self.rl).chain(arms);
        let mut runs = self.per_seed(
            bases.map(|c| (c.name.clone(), c.seed, c.optim.lr, c.clone())),
            |c, seed, name| (c.seed, c.name) = (seed, name),
        );
        for run in &mut runs {
            let seed = run.seed;
            if let (Some(d), Some(teacher)) = (&mut run.config.distill, self.teacher_of(&run.arm)) {
                d.teacher = self.run_folder(teacher, seed).join("final");
            }
        }
        runs
    }

    /// The study run an arm is distilled from, if it names one.
    pub fn teacher_of(&self, arm: &str) -> Option<&str> {
        let found = self.teachers.iter().find(|(a, _)| a == arm);
        found.map(|(_, t)| t.as_str())
    }

    /// The folder of run `arm` (a branch or arm name) at `seed`: `init/` for the Init.
    pub fn run_folder(&self, arm: &str, seed: u64) -> PathBuf {
        match (arm, &self.seeds) {
            ("init", _) | (_, None) => self.dir.join(arm),
            (_, Some(_)) => self.dir.join(format!("{arm}-seed{seed}")),
        }
    }

    /// The SFT branch's runs, one per learning rate and seed (learning rate first), each in its
    /// own folder: `sft/`, with `-lr<LR>` when `sft_lrs` is given and `-seed<S>` when `seeds`
    /// is; then the SFT arms' runs, `<name>[-seed<S>]/`.
    pub fn sft_runs(&self) -> Vec<BranchRun<SftConfig>> {
        let lrs: Vec<(f64, String)> = match &self.sft_lrs {
            Some(lrs) => lrs.iter().map(|&lr| (lr, format!("-lr{lr:e}"))).collect(),
            None => vec![(self.sft.train.lr, String::new())],
        };
        let swept = lrs.into_iter().map(|(lr, suffix)| {
            let mut config = self.sft.clone();
            config.train.lr = lr;
            (format!("sft{suffix}"), config.seed, lr, config)
        });
        let arms = self.arms.iter().filter_map(|a| match a {
            Arm::Sft(c) => Some((c.name.clone(), c.seed, c.train.lr, c.clone())),
            Arm::Rl(_) => None,
        });
        self.per_seed(swept.chain(arms), |c, seed, name| {
            (c.seed, c.name) = (seed, name)
        })
    }

    /// Every `(arm, own seed, lr, config)` at each of the study's seeds: `set` gives a copy its
    /// seed and folder name (`<arm>[-seed<S>]`).
    fn per_seed<C: Clone>(
        &self,
        bases: impl Iterator<Item = (String, u64, f64, C)>,
        set: impl Fn(&mut C, u64, String),
    ) -> Vec<BranchRun<C>> {
        let mut runs = Vec::new();
        for (arm, own, lr, base) in bases {
            for (seed, suffix) in self.run_seeds(own) {
                let mut config = base.clone();
                set(&mut config, seed, format!("{arm}{suffix}"));
                runs.push(BranchRun {
                    arm: arm.clone(),
                    seed,
                    lr,
                    config,
                });
            }
        }
        runs
    }

    /// The seeds a branch runs at, each with its folder suffix.
    fn run_seeds(&self, own: u64) -> Vec<(u64, String)> {
        match &self.seeds {
            Some(seeds) => seeds.iter().map(|&s| (s, format!("-seed{s}"))).collect(),
            None => vec![(own, String::new())],
        }
    }
}

/// A further branch of the study (`[arms.<name>]`): the RL or the SFT branch's settings with
/// the arm's merged over them; its runs are in `<name>[-seed<S>]/`.
#[derive(Clone, Debug)]
pub enum Arm {
    Rl(RlConfig),
    Sft(SftConfig),
}

/// Names the study's own folders take, which no arm may.
const RESERVED: [&str; 8] = [
    "init",
    BASE_DIR,
    "rl",
    "sft",
    "data",
    "evals",
    WORLD_DIR,
    OOD_WORLD_DIR,
];

/// What `[arms.<name>]` asks for.
struct ArmSpec {
    branch: Branch,
    /// The settings merged over the branch's section.
    over: toml::Table,
    /// `from = "base"`: the arm starts from the Init's base model, not from the Init.
    from_base: bool,
    /// `self_sft`: an SFT arm trained on its start model's own verified episodes.
    self_sft: Option<SelfSftConfig>,
}

/// The run a `distill.teacher` names when it is one of the study's own (`init`, `rl`, `sft`
/// without a learning-rate sweep, or an arm), rather than a checkpoint folder.
fn study_run<'a>(teacher: &'a Path, arms: &[&str], swept: bool) -> Option<&'a str> {
    let name = teacher.to_str()?;
    let own = ["init", "rl"].contains(&name) || (name == "sft" && !swept);
    (own || arms.contains(&name)).then_some(name)
}

/// An arm's branch and the settings it changes: `[arms.<name>]` holds exactly one of `rl` and
/// `sft`, a table merged over that branch's section, and optionally `from` (`"init"`, the
/// default, or `"base"`) and, for an SFT arm, `self_sft`.
fn arm_override(name: &str, arm: &toml::Value) -> Result<ArmSpec, String> {
    let well_formed = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty()
        || !well_formed
        || RESERVED.contains(&name)
        || ["rl-", "sft-", "init-"].iter().any(|p| name.starts_with(p))
        || name.contains("-seed")
    {
        return Err(format!(
            "arm name `{name}`: use lowercase letters, digits and `-`, not a name of the \
             study's own folders ({}) nor one starting with `rl-`, `sft-` or holding `-seed`",
            RESERVED.join(", ")
        ));
    }
    let Some(table) = arm.as_table() else {
        return Err("an arm is a table holding `rl` or `sft`".into());
    };
    let mut table = table.clone();
    let from_base = match table.remove("from") {
        None => false,
        Some(toml::Value::String(s)) if s == "init" => false,
        Some(toml::Value::String(s)) if s == "base" => true,
        Some(other) => {
            return Err(format!(
                "`from` is \"init\" (the default) or \"base\" (the Init's base model), not {other}"
            ));
        }
    };
    let self_sft = table
        .remove("self_sft")
        .map(|v| {
            let config: SelfSftConfig = v
                .try_into()
                .map_err(|e: toml::de::Error| format!("`self_sft`: {}", e.message()))?;
            config.validate().map(|()| config)
        })
        .transpose()?;
    let mut keys = table.keys();
    let (branch, over) = match (keys.next().map(String::as_str), keys.next()) {
        (Some("rl"), None) => (Branch::Rl, &table["rl"]),
        (Some("sft"), None) => (Branch::Sft, &table["sft"]),
        _ => {
            return Err(format!(
                "holds {:?}: an arm holds exactly one of `rl` and `sft` (the branch it \
                 changes), besides `from` and `self_sft`",
                table.keys().collect::<Vec<_>>()
            ));
        }
    };
    if self_sft.is_some() && branch == Branch::Rl {
        return Err("`self_sft` belongs to an SFT arm (`sft = { ... }`)".into());
    }
    match over.as_table() {
        Some(over) => Ok(ArmSpec {
            branch,
            over: over.clone(),
            from_base,
            self_sft,
        }),
        None => Err(format!("`{}` must be a table of settings", branch.name())),
    }
}

/// `over` merged into `base`: tables key by key, any other value replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// One run of a branch: its config (name, seed and learning rate set by the study).
#[derive(Clone, Debug)]
pub struct BranchRun<C> {
    /// The branch and setting the run belongs to, seeds aside: `rl`, `sft`, `sft-lr3e-4`.
    pub arm: String,
    pub seed: u64,
    /// The learning rate it trains at.
    pub lr: f64,
    pub config: C,
}

/// A sweep list must be non-empty, without repeats, and each value `ok`.
fn check_sweep<T: PartialEq + std::fmt::Display + Copy>(
    field: &str,
    values: Option<&[T]>,
    ok: impl Fn(T) -> bool,
) -> Result<(), String> {
    let Some(values) = values else {
        return Ok(());
    };
    if values.is_empty() {
        return Err(format!(
            "`{field}` must list at least one value (or be left out)"
        ));
    }
    for (i, &v) in values.iter().enumerate() {
        if !ok(v) {
            return Err(format!("`{field}`: {v} is not allowed"));
        }
        if values[..i].contains(&v) {
            return Err(format!("`{field}` lists {v} twice"));
        }
    }
    Ok(())
}

/// One stage section of a study file.
struct Stage<'a> {
    origin: &'a Path,
    section: &'a str,
    dir: &'a Path,
    /// The study's generated world, when it has one.
    routes: Option<&'a Path>,
}

/// Where the study writes a from-scratch Init's base model.
const BASE_DIR: &str = "base";

/// The study's generated worlds, inside its folder.
const WORLD_DIR: &str = "world";
const OOD_WORLD_DIR: &str = "ood-world";

const ROUTES_OWNED: &str =
    "`routes` is set by the study: its navigation stages use the generated [world]; remove it";
const OOD_ROUTES_OWNED: &str =
    "`nav.ood_routes` is set by the study: it is the generated [ood_world]; remove it";

impl Stage<'_> {
    fn error(&self, message: impl std::fmt::Display) -> TrainError {
        TrainError::Config {
            path: self.origin.to_path_buf(),
            message: format!("[{}] {message}", self.section),
        }
    }

    /// Fills in the fields the study owns (`name`, `runs_dir`, and `set`), defaults a missing
    /// `data.path` to `<study>/data/<section>/data.jsonl`, and parses the section as a run config.
    fn resolve<T: RunConfig>(
        &self,
        mut table: toml::Table,
        set: Vec<(&str, toml::Value)>,
    ) -> Result<T, TrainError> {
        let owned = [
            ("name", self.section.into()),
            ("runs_dir", path_value(self.dir)),
        ];
        for (key, value) in owned.into_iter().chain(set) {
            if table.contains_key(key) {
                return Err(self.error(format!(
                    "`{key}` is set by the study (runs go to {}/, branches start from the \
                     Init's final model); remove it",
                    self.dir.display()
                )));
            }
            table.insert(key.to_string(), value);
        }
        if let Some(routes) = self.routes {
            let plays_nav = table.get("env").and_then(toml::Value::as_str) == Some("virl-l");
            let nav_data = match table.get_mut("data") {
                Some(toml::Value::Table(data)) => match data.get_mut("generate_nav") {
                    Some(toml::Value::Table(g)) => Some(g),
                    _ => None,
                },
                _ => None,
            };
            let target = match nav_data {
                Some(g) => Some(g),
                None if plays_nav => Some(&mut table),
                None => None,
            };
            if let Some(t) = target {
                if t.contains_key("routes") {
                    return Err(self.error(ROUTES_OWNED));
                }
                t.insert("routes".into(), path_value(routes));
            }
        }
        if let Some(toml::Value::Table(data)) = table.get_mut("data")
            && !data.contains_key("path")
        {
            // A folder per stage: vision data keeps its images beside its JSONL.
            let file = self.dir.join("data").join(self.section).join("data.jsonl");
            data.insert("path".into(), path_value(&file));
        }
        let config: T = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| self.error(e.message()))?;
        config.validate().map_err(|m| self.error(m))?;
        Ok(config)
    }
}

fn path_value(path: &Path) -> toml::Value {
    toml::Value::String(path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use sftvsrl_training::ModelConfig;

    use super::*;

    fn shipped() -> Vec<(PathBuf, Study)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study");
        let mut studies = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let study = Study::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            studies.push((path, study));
        }
        studies
    }

    #[test]
    fn shipped_studies_resolve_their_stages() {
        let studies = shipped();
        assert!(studies.len() >= 3, "config/study holds {}", studies.len());
        for (path, s) in studies {
            let init_final = s.dir.join("init/final");
            assert_eq!(s.init.run_dir(), s.dir.join("init"), "{}", path.display());
            assert_eq!(s.rl.policy, init_final);
            assert_eq!(
                s.sft.model,
                ModelConfig::Pretrained {
                    path: init_final,
                    chat_date: None,
                },
                "{}",
                path.display()
            );
            assert!(s.sft.train.export_checkpoints && s.rl.export_checkpoints);
        }
    }

    /// The published Inits are SFT steps 400 (GP-L) and, for our SmolLM2 study, 200: the data
    /// left after the validation split must fill exactly that many global batches.
    #[test]
    fn the_pretrained_studies_inits_reach_their_step_counts() {
        for (name, steps) in [("gp-l-paper", 400), ("gp-l-smollm2", 200)] {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../config/study/{name}.toml"));
            let init = Study::from_file(&path).unwrap().init;
            let n = init.data.generate.as_ref().unwrap().n;
            let (train, _) =
                sftvsrl_training::data::split((0..n).collect(), init.data.valid_fraction, 0)
                    .unwrap();
            let batch = init.train.micro_batch * init.train.grad_accum;
            assert_eq!(train.len(), steps * batch, "{name}");
            assert_eq!(init.train.epochs, 1, "{name}");
            assert!(init.train.max_steps.is_none_or(|m| m == steps), "{name}");
        }
    }

    #[test]
    fn the_tiny_study_writes_its_data_inside_the_study_and_holds_out_the_ood_rule() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study/gp-l-tiny.toml");
        let s = Study::from_file(&path).unwrap();
        assert_eq!(s.init.data.path, s.dir.join("data/init/data.jsonl"));
        assert_eq!(s.sft.data.path, s.dir.join("data/sft/data.jsonl"));
        let rules = &s.init.data.generate.as_ref().unwrap().face_rules;
        let ood = sftvsrl_envs::gp::FaceRule::Ood.face_values();
        assert!(rules.iter().all(|r| r.face_values() != ood), "{rules:?}");
        assert!(rules.len() > 1);
    }

    /// The every-arm study's Init builds its vocabulary over the chain-of-thought and
    /// diverse-prompt arms' own data too; a study without such arms leaves it to the Init's data.
    #[test]
    fn the_inits_vocabulary_covers_the_sft_arms_own_data() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study");
        let vocab = |name: &str| {
            let s = Study::from_file(&dir.join(name)).unwrap();
            let ModelConfig::Scratch { vocab_data, .. } = &s.init.model else {
                panic!("{name}: a from-scratch Init");
            };
            let mut v: Vec<PathBuf> = vocab_data
                .iter()
                .map(|p| p.strip_prefix(&s.dir).unwrap().to_path_buf())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            vocab("gp-l-arms-tiny.toml"),
            [
                PathBuf::from("data/cot/data.jsonl"),
                PathBuf::from("data/diverse/data.jsonl")
            ]
        );
        assert!(vocab("gp-l-tiny.toml").is_empty());
    }

    /// A V-IRL study takes the two data arms too: their data is the SFT branch's navigation data
    /// in another style, and the Init's vocabulary covers it.
    #[test]
    fn navigation_studies_take_the_data_arms() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study/virl-l-tiny.toml");
        let base = std::fs::read_to_string(&path).unwrap();
        let arms = "[arms.cot]\nsft = { data = { generate_nav = { style = { chain_of_thought = true } } } }\n\
                    [arms.diverse]\nsft = { data = { generate_nav = { style = { prompt_variants = 4 } } } }\n";
        let text = base.replacen("\n[world]\n", &format!("\n{arms}\n[world]\n"), 1);
        let s = Study::from_toml(&text, &path).unwrap();
        let ModelConfig::Scratch { vocab_data, .. } = &s.init.model else {
            panic!("a from-scratch Init");
        };
        assert_eq!(vocab_data.len(), 2);
        for arm in &s.arms {
            let Arm::Sft(c) = arm else { panic!("SFT arms") };
            let g = c.data.generate_nav.as_ref().unwrap();
            let own = s.sft.data.generate_nav.as_ref().unwrap();
            assert_eq!((g.n, g.seed, &g.routes), (own.n, own.seed, &own.routes));
            assert!(g.style.chain_of_thought || g.style.prompt_variants == 4);
            assert!(vocab_data.contains(&c.data.path));
        }
        let bad = text.replace("prompt_variants = 4", "revision = { fraction = 0.5 }");
        let e = Study::from_toml(&bad, &path).unwrap_err().to_string();
        assert!(e.contains("[diverse]") && e.contains("revision"), "{e}");
    }

    /// The GP-VL study trains a VLM on black suits at one image size, evaluates at that size,
    /// and holds out the OOD rule and the red suits.
    #[test]
    fn the_vision_study_holds_out_the_ood_rule_and_the_red_suits() {
        use sftvsrl_envs::gp::{FaceRule, SuitSet};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study/gp-vl-tiny.toml");
        let s = Study::from_file(&path).unwrap();
        let (init, sft) = (
            s.init.data.generate.as_ref().unwrap(),
            s.sft.data.generate.as_ref().unwrap(),
        );
        assert!(init.vision && sft.vision && s.rl.gp.vision);
        assert_eq!(s.rl.gp.suits, SuitSet::Black);
        let size = s.eval.image_size;
        assert_eq!(
            (init.image_size, sft.image_size, s.rl.gp.image_size),
            (size, size, size)
        );
        let ood = FaceRule::Ood.face_values();
        assert!(init.face_rules.iter().all(|r| r.face_values() != ood));
        assert!(matches!(
            &s.init.model,
            ModelConfig::Scratch {
                vision: Some(_),
                ..
            }
        ));
        assert!(s.eval.variants.iter().all(|v| v.is_vision()));
    }

    #[test]
    fn the_navigation_study_holds_out_the_ood_rule_and_the_evaluation_routes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study/virl-l-tiny.toml");
        let s = Study::from_file(&path).unwrap();
        let world = s.world_dir();
        assert!(s.world.is_some());
        let init = s.init.data.generate_nav.as_ref().unwrap();
        assert_eq!(init.routes, world);
        let rules = init.rule_configs();
        let ood = sftvsrl_envs::nav::prompt::turn_words(false);
        assert!(rules.len() > 1);
        assert!(
            rules
                .iter()
                .all(|r| r.absolute_action || r.turn_words() != ood),
            "{rules:?}"
        );
        assert_eq!(s.rl.routes.as_ref(), Some(&world));
        assert_eq!(s.eval.nav.routes.as_ref(), Some(&world));
        let [_, train_end] = s.rl.nav.route_range.unwrap();
        let [eval_start, _] = s.eval.nav.env.route_range.unwrap();
        assert!(train_end <= eval_start);
        assert_eq!(init.nav.route_range, s.rl.nav.route_range);
    }

    #[test]
    fn the_street_view_study_trains_in_one_city_and_tests_in_another() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study/virl-vl-tiny.toml");
        let s = Study::from_file(&path).unwrap();
        let (world, other) = (s.world.clone().unwrap(), s.ood_world.clone().unwrap());
        assert_ne!(world.style, other.style);
        assert_eq!(other.names, Some(world.style));
        assert_eq!(
            (world.landmarks, other.landmarks),
            (LandmarkLook::Logos, LandmarkLook::Logos)
        );
        assert_eq!(s.eval.nav.ood_routes, Some(s.ood_world_dir()));
        let init = s.init.data.generate_nav.as_ref().unwrap();
        assert_eq!(init.routes, s.world_dir());
        assert!(init.nav.vision && s.rl.nav.vision);
        assert!(
            s.eval
                .variants
                .iter()
                .all(|v| v.is_vision() && v.is_navigation())
        );
        // The model reads the grid the environments draw.
        let views = 2 * s.eval.nav.env.resolution;
        assert_eq!(init.nav.resolution, s.eval.nav.env.resolution);
        assert_eq!(s.rl.nav.resolution, s.eval.nav.env.resolution);
        let sftvsrl_training::ModelConfig::Scratch { vision, .. } = &s.init.model else {
            panic!("a from-scratch Init")
        };
        let side = views as usize;
        assert_eq!(
            vision.as_ref().unwrap().image_size.height_width(),
            [side, side]
        );
    }

    #[test]
    fn errors_name_the_section_and_field() {
        let train = "train = { epochs = 1, micro_batch = 1, lr = 1e-3, checkpoint_every = 1 }";
        let base = format!(
            "name = \"s\"\n[init]\ndata = {{}}\nmodel = {{ init = \"pretrained\", path = \"m\" }}\n\
             {train}\n[sft]\ndata = {{}}\n{train}\n[rl]\n"
        );
        assert!(Study::from_toml(&base, Path::new("s.toml")).is_ok());
        let err = |text: &str| {
            Study::from_toml(text, Path::new("s.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err(&base.replace("[rl]\n", "[rl]\npolicy = \"x\"\n"));
        assert!(
            e.starts_with("s.toml: ") && e.contains("[rl]") && e.contains("`policy`"),
            "{e}"
        );
        let e = err(&base.replace("[sft]\n", "[sft]\nname = \"x\"\n"));
        assert!(e.contains("[sft]") && e.contains("`name`"), "{e}");
        let e = err(&format!("{base}[rl.ppo]\ncliprange = 0.1\nclip = 2\n"));
        assert!(e.contains("[rl]") && e.contains("clip"), "{e}");
        let e = err(&format!("{base}[eval]\nepisodes = 0\n"));
        assert!(e.contains("[eval]") && e.contains("episodes"), "{e}");
        // Vision variants need a vision-language Init: a pretrained one is checked when it
        // loads, a from-scratch one needs its vision tower.
        let vision_eval = format!("{base}[eval]\nvariants = [\"gp-vl-id\"]\n");
        assert!(Study::from_toml(&vision_eval, Path::new("s.toml")).is_ok());
        let scratch = "model = { init = \"scratch\", hidden_size = 8, intermediate_size = 8, \
                       num_hidden_layers = 1, num_attention_heads = 1, num_key_value_heads = 1 }";
        let e = err(&vision_eval.replacen(
            "model = { init = \"pretrained\", path = \"m\" }",
            scratch,
            1,
        ));
        assert!(
            e.contains("[eval] variants") && e.contains("gp-vl-id") && e.contains("vision"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[world]\nroutes = 3\nseed = 0\nstyle = \"paris\"\n"
        ));
        assert!(e.contains("[world] style"), "{e}");
        // With a world, the study points the navigation stages to it and owns `routes`.
        let nav = format!("{base}env = \"virl-l\"\n[world]\nroutes = 3\nseed = 0\n");
        let s = Study::from_toml(&nav, Path::new("s.toml")).unwrap();
        assert_eq!(s.rl.routes, Some(s.world_dir()));
        let e = err(&nav.replace("[world]", "routes = \"r\"\n[world]"));
        assert!(e.contains("[rl]") && e.contains("`routes`"), "{e}");
        let e = err(&format!(
            "{nav}[ood_world]\nroutes = 3\nseed = 1\nlandmarks = \"neon\"\n"
        ));
        assert!(e.contains("[ood_world] landmarks"), "{e}");
        let e = err(&format!(
            "{nav}[ood_world]\nroutes = 3\nseed = 1\nnames = \"paris\"\n"
        ));
        assert!(e.contains("[ood_world] names"), "{e}");
        // Arms: one branch each, under a name of their own.
        for (arm, words) in [
            ("[arms.rl-2]\nrl = {}\n", "arm name `rl-2`"),
            ("[arms.evals]\nrl = {}\n", "arm name `evals`"),
            ("[arms.Big]\nrl = {}\n", "arm name `Big`"),
            ("[arms.both]\nrl = {}\nsft = {}\n", "exactly one of"),
            ("[arms.none]\n", "exactly one of"),
            ("[arms.flat]\nrl = 3\n", "`rl` must be a table"),
            ("[arms.typo]\nrl = { ppo = { clip = 2 } }\n", "clip"),
            ("[arms.base]\nrl = {}\n", "arm name `base`"),
            ("[arms.x]\nfrom = \"other\"\nrl = {}\n", "`from` is"),
            (
                "[arms.x]\nself_sft = { episodes = 1, seed = 0 }\nrl = {}\n",
                "`self_sft` belongs to an SFT arm",
            ),
            (
                "[arms.x]\nself_sft = { episodes = 0, seed = 0 }\nsft = {}\n",
                "self_sft.episodes",
            ),
            (
                "[arms.x]\nself_sft = { episodes = 1, sed = 0 }\nsft = {}\n",
                "`self_sft`: unknown field `sed`",
            ),
            (
                "[arms.x]\nrl = { distill = { teacher = \"x\" } }\n",
                "names the arm itself",
            ),
            (
                "[arms.x]\nrl = { distill = { teacher = \"rl\", coef = 0.0 } }\n",
                "distill.coef",
            ),
            (
                "[arms.a]\nrl = { distill = { teacher = \"rl\" } }\n\
                 [arms.b]\nrl = { distill = { teacher = \"a\" } }\n",
                "itself distilled",
            ),
        ] {
            let e = err(&format!("{base}{arm}"));
            assert!(e.contains("s.toml") && e.contains(words), "{arm}: {e}");
        }
        // `from = "base"`: a pretrained Init's base is its own checkpoint; a from-scratch one's
        // is written by the study. A study run named as a teacher is that run's final model.
        let arms = "[arms.b]\nfrom = \"base\"\nrl = {}\n[arms.d]\nrl = { distill = { teacher = \"rl\" } }\n\
                    [arms.f]\nrl = { distill = { teacher = \"ckpt/t\" } }\n";
        let s = Study::from_toml(&format!("{base}{arms}"), Path::new("s.toml")).unwrap();
        assert_eq!(s.base_model, None);
        let runs = s.rl_runs();
        let policy = |arm: &str| &runs.iter().find(|r| r.arm == arm).unwrap().config;
        assert_eq!(policy("b").policy, Path::new("m"));
        let teacher = |arm: &str| policy(arm).distill.as_ref().unwrap().teacher.clone();
        assert_eq!(teacher("d"), s.dir.join("rl/final"));
        assert_eq!(teacher("f"), Path::new("ckpt/t"));
        assert_eq!((s.teacher_of("d"), s.teacher_of("f")), (Some("rl"), None));
        let scratch_base = format!(
            "{}{arms}",
            base.replacen(
                "model = { init = \"pretrained\", path = \"m\" }",
                scratch,
                1,
            )
        );
        let s = Study::from_toml(&scratch_base, Path::new("s.toml")).unwrap();
        assert_eq!(s.base_model, Some(s.dir.join("base")));
        assert_eq!(
            s.rl_runs()
                .iter()
                .find(|r| r.arm == "b")
                .unwrap()
                .config
                .policy,
            s.dir.join("base")
        );
        let e = err(&format!("{base}report = 1\n"));
        assert!(e.contains("report"), "{e}");
        let e = err(&base.replace("[init]\ndata = {}\n", "[init]\n"));
        assert!(e.contains("[init]") && e.contains("data"), "{e}");
    }
}
