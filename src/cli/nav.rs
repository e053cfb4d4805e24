//! `sftvsrl nav …`: explore V-IRL street navigation as a person would — generate a synthetic city,
//! sample an episode, verify answers, render the street-view grid, play in the terminal, and time
//! the renderer.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sftvsrl_envs::Rng;
use sftvsrl_envs::nav::bench::bench_render;
use sftvsrl_envs::nav::config::VIEW_SIZES;
use sftvsrl_envs::nav::instruction::build_instruction;
use sftvsrl_envs::nav::milestone::{NO_LANDMARK, parse_milestones};
use sftvsrl_envs::nav::prompt::expert_response;
use sftvsrl_envs::nav::rail::RailPoint;
use sftvsrl_envs::nav::verify::step_rewards_virl;
use sftvsrl_envs::nav::world::logo::LandmarkLook;
use sftvsrl_envs::nav::world::style::CityStyle;
use sftvsrl_envs::nav::world::{WorldSpec, generate};
use sftvsrl_envs::nav::{NavConfig, Navigation, ObsPenalty, PromptText, SuccessRule, ViewHeadings};

#[derive(Subcommand)]
pub enum NavCommand {
    /// Generate a synthetic city with routes and street views in the V-IRL data layout.
    World {
        /// Visual style: nyc (the training city) or worldwide (the visual-OOD city).
        #[arg(long)]
        city: CityStyle,
        /// Number of routes.
        #[arg(long, default_value_t = 100)]
        routes: usize,
        /// Output folder (route_infos.json, gps_pano_mapping.pkl, street_views/).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Panorama width in pixels (the height is half).
        #[arg(long, default_value_t = 2048)]
        pano_width: u32,
        /// How businesses show themselves: signs (their names lettered on storefront signs) or
        /// logos (a large shape and colour picked by the name, recognisable in tiny views).
        #[arg(long, default_value = "signs")]
        landmarks: LandmarkLook,
        /// Name the businesses as in another style's city (nyc or worldwide): the same chains
        /// in streets of another look, e.g. a visual-OOD city whose names a model already knows.
        #[arg(long)]
        names: Option<CityStyle>,
        /// Compass heading of the avenues in degrees, in place of the style's (nyc: 29,
        /// worldwide: drawn): which compass words the routes use.
        #[arg(long)]
        grid_heading: Option<f64>,
    },
    /// Print an episode: its instruction, its expert rail and its first prompt.
    Sample(EpisodeArgs),
    /// Grade answers with the V-IRL verifier: one, or a JSONL batch.
    Verify {
        /// The ground-truth action, e.g. `turn_direction(north)` or `forward()`.
        #[arg(long, requires_all = ["gt_obs", "response"], conflicts_with = "jsonl")]
        gt_action: Option<String>,
        /// The landmark-only ground-truth observation, e.g. `No landmarks nearby`.
        #[arg(long)]
        gt_obs: Option<String>,
        /// The model's answer.
        #[arg(long)]
        response: Option<String>,
        /// A JSONL file (or `-` for stdin) of `{"gt_action", "gt_obs", "response"}` lines; one
        /// `{"reward", "message"}` line is printed per input line, in order.
        #[arg(long, required_unless_present = "gt_action")]
        jsonl: Option<PathBuf>,
        #[command(flatten)]
        options: VerifierArgs,
    },
    /// Turn milestone strings into instruction text and turn actions: JSONL lines of
    /// `{"milestone_info": "...", "init_heading": H}` (0 or absent: drawn from --seed).
    Instruction {
        /// The JSONL file, or `-` for stdin.
        #[arg(long)]
        jsonl: PathBuf,
        /// Fold heading changes into [-180, 180) (relative_heading_wrap).
        #[arg(long)]
        wrap: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Render the 2×2 street-view grid at a rail position to a PNG.
    Render {
        #[command(flatten)]
        episode: EpisodeArgs,
        /// Rail position (default: the first intersection whose landmark is named).
        #[arg(long)]
        step: Option<usize>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Play an episode in the terminal: type an answer, then an empty line. A bare action such
    /// as `forward()` is sent as `{"action": "forward()"}`.
    Play {
        #[command(flatten)]
        episode: EpisodeArgs,
        /// With --vision, where to write each new street-view grid.
        #[arg(long, default_value = "nav-view.png")]
        image_out: PathBuf,
    },
    /// Time the street-view grid: decoding a panorama and rendering the 2×2 grid per step.
    Bench {
        /// A route folder with panoramas.
        #[arg(long)]
        routes: PathBuf,
        #[arg(long, default_value_t = 50)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Side of each of the grid's four views in pixels (the reference's 1200).
        #[arg(long)]
        resolution: Option<u32>,
    },
}

/// Parses an option value by its configuration name (e.g. `landmark_mismatch`).
fn config_name<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

/// The verifier's options.
#[derive(Args, Clone)]
pub struct VerifierArgs {
    /// intersection_mention (reference) or landmark_mismatch.
    #[arg(long, default_value = "intersection_mention", value_parser = config_name::<ObsPenalty>)]
    obs_penalty: ObsPenalty,
    /// reference (verbatim, `{{ }}` in the feedback format) or cleaned.
    #[arg(long, default_value = "reference", value_parser = config_name::<PromptText>)]
    prompt_text: PromptText,
}

/// Which episode, and the environment's options.
#[derive(Args, Clone)]
pub struct EpisodeArgs {
    /// A route folder in the V-IRL layout (route_infos.json, gps_pano_mapping.pkl, street_views/).
    #[arg(long)]
    routes: PathBuf,
    /// Episode seed: the route (unless --route), initial heading and dropped points.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Route index (the reference's ordered evaluation).
    #[arg(long)]
    route: Option<usize>,
    /// V-IRL-VL: show the street-view grid.
    #[arg(long)]
    vision: bool,
    /// Relative turns (rule OOD) instead of absolute ones.
    #[arg(long)]
    relative: bool,
    /// Do not snap points to panoramas (text only; no mapping needed).
    #[arg(long)]
    no_relocation: bool,
    /// reference or as_labelled.
    #[arg(long, default_value = "reference", value_parser = config_name::<ViewHeadings>)]
    view_headings: ViewHeadings,
    /// reference or first_attempt.
    #[arg(long, default_value = "reference", value_parser = config_name::<SuccessRule>)]
    success: SuccessRule,
    /// Fold heading changes into [-180, 180) (relative_heading_wrap).
    #[arg(long)]
    wrap: bool,
    /// With vision: side of each of the grid's four views in pixels (the reference's 1200).
    #[arg(long)]
    resolution: Option<u32>,
    #[command(flatten)]
    verifier: VerifierArgs,
}

/// The grid settings with `--resolution` (when given, and checked) as each view's side.
fn with_resolution(resolution: Option<u32>) -> anyhow::Result<NavConfig> {
    let defaults = NavConfig::default();
    Ok(NavConfig {
        resolution: match resolution {
            Some(n) => checked_resolution(n)?,
            None => defaults.resolution,
        },
        ..defaults
    })
}

/// `--resolution`, if within the view sides the renderer accepts.
pub fn checked_resolution(n: u32) -> anyhow::Result<u32> {
    if !VIEW_SIZES.contains(&n) {
        bail!(
            "--resolution must be in {}..={} pixels, got {n}",
            VIEW_SIZES.start(),
            VIEW_SIZES.end()
        );
    }
    Ok(n)
}

impl EpisodeArgs {
    fn config(&self, vision: bool) -> anyhow::Result<NavConfig> {
        Ok(NavConfig {
            vision,
            absolute_action: !self.relative,
            relocation: !self.no_relocation,
            virl_view_headings: self.view_headings,
            virl_success: self.success,
            relative_heading_wrap: self.wrap,
            virl_obs_penalty: self.verifier.obs_penalty,
            prompt_text: self.verifier.prompt_text,
            ..with_resolution(self.resolution)?
        })
    }

    /// Opens the environment and starts the episode.
    fn start(&self, vision: bool) -> anyhow::Result<Navigation> {
        let mut env = Navigation::open(&self.routes, self.config(vision)?)?;
        match self.route {
            Some(r) => env.try_reset_route(r, self.seed)?,
            None => env.try_reset(self.seed)?,
        };
        Ok(env)
    }
}

pub fn run(cmd: NavCommand) -> anyhow::Result<()> {
    match cmd {
        NavCommand::World {
            city,
            routes,
            out,
            seed,
            pano_width,
            landmarks,
            names,
            grid_heading,
        } => {
            let spec = WorldSpec {
                style: city,
                routes,
                seed,
                pano_width,
                landmarks,
                names,
                grid_heading,
            };
            let summary = generate(&spec, &out)?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        NavCommand::Sample(args) => sample(&args)?,
        NavCommand::Verify {
            gt_action,
            gt_obs,
            response,
            jsonl,
            options,
        } => match (gt_action, jsonl) {
            (Some(action), _) => {
                let (obs, response) = (gt_obs.unwrap_or_default(), response.unwrap_or_default());
                let grade = step_rewards_virl(
                    &response,
                    &action,
                    &obs,
                    options.obs_penalty,
                    options.prompt_text,
                );
                println!("{}", serde_json::to_string(&grade)?);
            }
            (None, Some(path)) => verify_batch(&path, &options)?,
            (None, None) => bail!("give --gt-action, --gt-obs and --response, or --jsonl"),
        },
        NavCommand::Instruction { jsonl, wrap, seed } => instructions(&jsonl, wrap, seed)?,
        NavCommand::Render { episode, step, out } => render(&episode, step, &out)?,
        NavCommand::Play { episode, image_out } => play(&episode, &image_out)?,
        NavCommand::Bench {
            routes,
            steps,
            seed,
            resolution,
        } => {
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            let b = bench_render(&routes, steps, seed, &with_resolution(resolution)?)?;
            eprintln!(
                "{} steps, {}×{} panoramas → {}² grid: decode {:.1} ms, grid {:.1} ms, step {:.1} ms (best {:.1} ms)",
                b.steps,
                b.panorama_px.0,
                b.panorama_px.1,
                b.grid_px,
                b.decode.mean_ms,
                b.grid.mean_ms,
                b.step.mean_ms,
                b.step.min_ms
            );
            println!("{}", serde_json::to_string(&b)?);
        }
    }
    Ok(())
}

/// Lines of a file, or of stdin for `-`.
fn read_lines(path: &Path) -> anyhow::Result<Box<dyn Iterator<Item = std::io::Result<String>>>> {
    Ok(if path == Path::new("-") {
        Box::new(std::io::stdin().lock().lines())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        Box::new(std::io::BufReader::new(file).lines())
    })
}

/// Each JSONL line, parsed, with its 1-based number for messages.
fn jsonl_records<T: DeserializeOwned>(
    path: &Path,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(usize, T)>>> {
    let name = path.display().to_string();
    Ok(read_lines(path)?.enumerate().map(move |(i, line)| {
        let line = line.with_context(|| format!("{name}: line {}", i + 1))?;
        let record =
            serde_json::from_str(&line).with_context(|| format!("{name}: line {}", i + 1))?;
        Ok((i + 1, record))
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyLine {
    gt_action: String,
    gt_obs: String,
    response: String,
}

fn verify_batch(path: &Path, options: &VerifierArgs) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in jsonl_records::<VerifyLine>(path)? {
        let (_, l) = record?;
        let grade = step_rewards_virl(
            &l.response,
            &l.gt_action,
            &l.gt_obs,
            options.obs_penalty,
            options.prompt_text,
        );
        serde_json::to_writer(&mut out, &grade)?;
        out.write_all(b"\n")?;
    }
    Ok(out.flush()?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstructionLine {
    milestone_info: String,
    #[serde(default)]
    init_heading: f64,
}

fn instructions(path: &Path, wrap: bool, seed: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in jsonl_records::<InstructionLine>(path)? {
        let (n, l) = record?;
        let milestones = parse_milestones(&l.milestone_info).map_err(|e| {
            anyhow::anyhow!("{}: line {n}: field `milestone_info`: {e}", path.display())
        })?;
        let heading = if l.init_heading == 0.0 {
            Rng::derive(seed, n as u64).range_inclusive(0, 359) as f64
        } else {
            l.init_heading
        };
        let ins = build_instruction(&milestones, heading, wrap);
        let line = json!({
            "instruction": ins.text,
            "actions_absolute": ins.actions_absolute,
            "actions_relative": ins.actions_relative,
            "init_heading": heading,
        });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(out.flush()?)
}

fn sample(args: &EpisodeArgs) -> anyhow::Result<()> {
    let env = args.start(args.vision)?;
    let (Some(route), Some(heading)) = (env.route(), env.init_heading()) else {
        bail!("no episode")
    };
    println!("{}, initial heading {heading}", route.label());
    println!(
        "\n[Instruction]\n{}",
        env.instruction().map_or("", |i| &i.text)
    );
    println!("[Rail]");
    for (k, p) in env.rail().iter().enumerate() {
        println!(
            "{k:>3}  ({:.7}, {:.7})  {:<24} heading {:>5.1}  {:<28} {:?}  [{}. {}]",
            p.geocode.lat,
            p.geocode.lng,
            p.pano_id.as_deref().unwrap_or("-"),
            p.heading,
            p.gt_action,
            p.oracle_observation(),
            p.instruction_idx,
            p.instruction
        );
    }
    println!(
        "\n[First prompt]{}",
        sftvsrl_envs::Env::transcript(&env).turns[0].text
    );
    Ok(())
}

/// Steps the episode along its rail with expert answers up to position `step`.
fn advance(env: &mut Navigation, step: usize) -> anyhow::Result<()> {
    while let Some((k, p)) = env.position() {
        if k >= step {
            return Ok(());
        }
        let answer = expert_response(&p.oracle_observation(), &p.instruction, &p.gt_action);
        if env.try_step(&answer)?.done() {
            break;
        }
    }
    bail!(
        "the rail has only {} positions; --step must be smaller",
        env.rail().len()
    )
}

fn render(args: &EpisodeArgs, step: Option<usize>, out: &Path) -> anyhow::Result<()> {
    let mut env = args.start(true)?;
    // By default, the first place where the instruction names a landmark.
    let named = |p: &&RailPoint| p.intersection && p.observation != NO_LANDMARK;
    let step = step.unwrap_or_else(|| env.rail().iter().position(|p| named(&p)).unwrap_or(0));
    advance(&mut env, step)?;
    let Some((k, p)) = env.position() else {
        bail!("no episode")
    };
    println!(
        "rail position {k}, heading {:.0}: {}",
        p.heading,
        p.oracle_observation()
    );
    let image = sftvsrl_envs::Env::transcript(&env)
        .image
        .clone()
        .context("no image was rendered")?;
    image
        .save(out)
        .with_context(|| format!("{}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Reads one answer: lines up to an empty line. `None` at the end of input.
fn read_answer(input: &mut impl BufRead) -> anyhow::Result<Option<String>> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok((!text.trim().is_empty()).then_some(text));
        }
        if line.trim().is_empty() {
            if text.trim().is_empty() {
                continue;
            }
            return Ok(Some(text));
        }
        text.push_str(&line);
    }
}

fn play(args: &EpisodeArgs, image_out: &Path) -> anyhow::Result<()> {
    use sftvsrl_envs::Env;
    let mut env = args.start(args.vision)?;
    let mut input = std::io::stdin().lock();
    let mut show_prompt = true;
    loop {
        if show_prompt {
            let t = env.transcript();
            println!("{}", t.turns[0].text);
            if let Some(img) = &t.image {
                img.save(image_out)
                    .with_context(|| format!("{}", image_out.display()))?;
                println!("(street views written to {})", image_out.display());
            }
        }
        print!("your answer (end with an empty line)> ");
        std::io::stdout().flush()?;
        let Some(answer) = read_answer(&mut input)? else {
            println!("\n(end of input)");
            return Ok(());
        };
        let answer = if answer.contains("\"action\"") {
            answer
        } else {
            serde_json::to_string(&json!({"action": answer.trim()}))?
        };
        let v = env.try_step(&answer)?;
        println!("reward {}: {}", v.reward, v.message);
        if v.done() {
            println!(
                "episode over: {}",
                if env.success() { "success" } else { "failure" }
            );
            return Ok(());
        }
        show_prompt = v.reward == 1.0;
        if let (false, Some(turn)) = (show_prompt, env.transcript().turns.last()) {
            println!("{}", turn.text);
        }
    }
}
