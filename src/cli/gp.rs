//! `sftvsrl gp …`: GeneralPoints as a person explores it.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::json;
use sftvsrl_envs::Env;
use sftvsrl_envs::gp::cards::{Card, FaceRule, Suit};
use sftvsrl_envs::gp::episode::{GeneralPoints, IMAGE_SIZES, check_config, deal};
use sftvsrl_envs::gp::prompt::expert_response;
use sftvsrl_envs::gp::render::render_hand;
use sftvsrl_envs::gp::solver::solutions;
use sftvsrl_envs::gp::verify::{HandFacts, RewardScheme, grade_response};
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_envs::rng::Rng;

use super::input::{open_input, read_toml};

#[derive(Subcommand)]
pub enum GpCommand {
    /// Deal a hand: cards, values, the prompt and every solution.
    Sample(SampleArgs),
    /// Grade a response (or a JSONL file of them) with the reference verifier.
    Verify(VerifyArgs),
    /// Render the GP-VL observation of a hand as a PNG.
    Render(RenderArgs),
    /// Play episodes in the terminal: type responses, read the verifier's feedback.
    Play(PlayArgs),
}

/// The evaluation variant of a GeneralPoints task.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VariantArg {
    /// Face cards count 10 (and black suits for GP-VL).
    Id,
    /// Face cards count 11/12/13; every hand holds one.
    RuleOod,
    /// Red suits (GP-VL's visual OOD).
    VisualOod,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Id => Variant::Id,
            VariantArg::RuleOod => Variant::RuleOod,
            VariantArg::VisualOod => Variant::VisualOod,
        }
    }
}

/// Which task and settings: a variant preset, or a TOML file of `GpConfig` fields.
#[derive(Args)]
pub struct TaskArgs {
    /// Evaluation variant (reference settings).
    #[arg(long, value_enum, default_value = "id")]
    variant: VariantArg,
    /// The vision task (GP-VL) instead of the text task (GP-L).
    #[arg(long)]
    vl: bool,
    /// A TOML file of GeneralPoints settings (overrides --variant and --vl).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl TaskArgs {
    fn config(&self) -> Result<GpConfig> {
        match &self.config {
            Some(path) => read_toml(path),
            None => Ok(GpConfig::variant(self.variant.into(), self.vl)),
        }
    }

    /// The settings with `--image-size` (when given) in place of the config's `image_size`.
    fn sized_config(&self, image_size: Option<u32>) -> Result<GpConfig> {
        let mut cfg = self.config()?;
        if let Some(n) = checked_image_size(image_size)? {
            cfg.image_size = n;
        }
        Ok(cfg)
    }
}

/// `--image-size`, if given, within the sizes the renderer accepts.
pub fn checked_image_size(size: Option<u32>) -> Result<Option<u32>> {
    match size {
        Some(n) if !IMAGE_SIZES.contains(&n) => bail!(
            "--image-size must be in {}..={} pixels, got {n}",
            IMAGE_SIZES.start(),
            IMAGE_SIZES.end()
        ),
        _ => Ok(size),
    }
}

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// Episode seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The four cards, e.g. `A,3,10,6` (plain names or values 1–13).
    #[arg(long, value_delimiter = ',', required_unless_present = "jsonl")]
    cards: Vec<String>,
    /// Face-card rule: `id` (J/Q/K = 10) or `ood` (11/12/13).
    #[arg(long, value_enum, default_value = "id")]
    rule: RuleArg,
    /// Also check the recognised cards (GP-VL).
    #[arg(long)]
    vl: bool,
    /// The model's response text.
    #[arg(long, required_unless_present = "jsonl")]
    response: Option<String>,
    /// The target number.
    #[arg(long, default_value_t = 24)]
    target: i64,
    /// Reward scheme: the reference code's or the paper's.
    #[arg(long, value_enum, default_value = "reference")]
    reward: SchemeArg,
    /// Grade every line of a JSONL file (`-` for stdin): `{"cards": [...], "rule": "id"|"ood",
    /// "vl": bool, "response": "..."}` (optional "target"); one result line per input line.
    #[arg(long, conflicts_with_all = ["cards", "response"])]
    jsonl: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleArg {
    #[default]
    Id,
    Ood,
}

impl From<RuleArg> for FaceRule {
    fn from(r: RuleArg) -> Self {
        match r {
            RuleArg::Id => FaceRule::Id,
            RuleArg::Ood => FaceRule::Ood,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchemeArg {
    Reference,
    Paper,
}

impl From<SchemeArg> for RewardScheme {
    fn from(s: SchemeArg) -> Self {
        match s {
            SchemeArg::Reference => RewardScheme::Reference,
            SchemeArg::Paper => RewardScheme::Paper,
        }
    }
}

#[derive(Args)]
pub struct RenderArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// Episode seed (which hand is dealt).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Explicit cards as suit letter + rank, e.g. `SA,HT,DQ,C7` (overrides the seed).
    #[arg(long, value_delimiter = ',')]
    cards: Vec<String>,
    /// Draw the paper-era "Formula:" label.
    #[arg(long)]
    formula_label: bool,
    /// Side of the square image in pixels (default: the config's `image_size`, 1200).
    #[arg(long)]
    image_size: Option<u32>,
    /// Output PNG file.
    #[arg(long, default_value = "gp.png")]
    out: PathBuf,
}

#[derive(Args)]
pub struct PlayArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// Seed of the first episode (later episodes count up from it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many episodes to play.
    #[arg(long, default_value_t = 1)]
    episodes: u64,
    /// Save the GP-VL image of each episode here (GP-VL only).
    #[arg(long, default_value = "gp-play.png")]
    image: PathBuf,
    /// Side of the square GP-VL image in pixels (default: the config's `image_size`, 1200).
    #[arg(long)]
    image_size: Option<u32>,
}

pub fn run(cmd: GpCommand) -> Result<()> {
    match cmd {
        GpCommand::Sample(a) => sample(a),
        GpCommand::Verify(a) => verify(a),
        GpCommand::Render(a) => render(a),
        GpCommand::Play(a) => play(a),
    }
}

fn sample(a: SampleArgs) -> Result<()> {
    let mut env = GeneralPoints::new(a.task.config()?)?;
    let prompt = env.reset(a.seed).turns[0].text.clone();
    let hand = env.hand();
    let cards: Vec<String> = hand.cards.iter().map(|c| c.key()).collect();
    if a.json {
        let out = json!({
            "seed": a.seed,
            "cards": cards,
            "names": hand.names(),
            "values": hand.values,
            "prompt": prompt,
            "solutions": hand.solutions.all(),
        });
        println!("{out}");
        return Ok(());
    }
    println!("cards:     {}", cards.join(" "));
    println!("values:    {:?}", hand.values);
    println!("solutions: {}", hand.solutions.all().len());
    for s in hand.solutions.all() {
        println!("  {s}");
    }
    println!("prompt:\n{prompt}");
    Ok(())
}

/// Cards given on the command line or in JSON: plain names (`A`, `10`, `K`) or values 1–13.
fn parse_card(s: &str) -> Result<u8> {
    Card::rank_from_name(s)
        .or_else(|| s.trim().parse::<u8>().ok().filter(|r| (1..=13).contains(r)))
        .with_context(|| format!("`{s}` is not a card: use A, 2..10, J, Q, K or 1..13"))
}

fn ranks_of(cards: &[String]) -> Result<[u8; 4]> {
    if cards.len() != 4 {
        bail!("expected 4 cards, got {}", cards.len());
    }
    let ranks: Vec<u8> = cards.iter().map(|c| parse_card(c)).collect::<Result<_>>()?;
    Ok([ranks[0], ranks[1], ranks[2], ranks[3]])
}

/// Grades one response for a hand given by ranks.
fn grade_one(
    ranks: [u8; 4],
    rule: FaceRule,
    vl: bool,
    target: i64,
    scheme: RewardScheme,
    response: &str,
) -> serde_json::Value {
    let values = ranks.map(|r| rule.value(r));
    let names = ranks.map(|rank| {
        Card {
            rank,
            suit: Suit::Spades,
        }
        .plain_name()
    });
    let sols = solutions(values, target);
    let facts = HandFacts {
        values,
        names,
        solutions: &sols,
        target,
        vision: vl,
        scheme,
    };
    let g = grade_response(response, &facts);
    json!({ "reward": g.reward, "message": g.message })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyLine {
    cards: Vec<serde_json::Value>,
    #[serde(default)]
    rule: RuleArg,
    #[serde(default)]
    vl: bool,
    response: String,
    #[serde(default = "default_target")]
    target: i64,
}

fn default_target() -> i64 {
    24
}

fn verify(a: VerifyArgs) -> Result<()> {
    let scheme = RewardScheme::from(a.reward);
    let Some(path) = a.jsonl else {
        let ranks = ranks_of(&a.cards)?;
        let response = a.response.unwrap_or_default();
        println!(
            "{}",
            grade_one(ranks, a.rule.into(), a.vl, a.target, scheme, &response)
        );
        return Ok(());
    };
    let input = open_input(&path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut errors = 0usize;
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("{path}: reading line {}", i + 1))?;
        let result = serde_json::from_str::<VerifyLine>(&line)
            .map_err(anyhow::Error::from)
            .and_then(|l| {
                let cards: Vec<String> = l
                    .cards
                    .iter()
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
                    .collect();
                Ok(grade_one(
                    ranks_of(&cards)?,
                    l.rule.into(),
                    l.vl,
                    l.target,
                    scheme,
                    &l.response,
                ))
            });
        let value = result.unwrap_or_else(|e| {
            errors += 1;
            eprintln!("{path}:{}: {e:#}", i + 1);
            json!({ "line": i + 1, "error": format!("{e:#}") })
        });
        writeln!(out, "{value}")?;
    }
    out.flush()?;
    if errors > 0 {
        bail!("{errors} line(s) of {path} could not be graded (see the \"error\" lines)");
    }
    Ok(())
}

fn render(a: RenderArgs) -> Result<()> {
    let cfg = a.task.sized_config(a.image_size)?;
    check_config(&cfg)?;
    let cards = if a.cards.is_empty() {
        deal(&cfg, &mut Rng::new(a.seed)).cards
    } else {
        if a.cards.len() != 4 {
            bail!("--cards needs 4 cards, got {}", a.cards.len());
        }
        let parsed: Vec<Card> = a
            .cards
            .iter()
            .map(|c| parse_key(c))
            .collect::<Result<_>>()?;
        [parsed[0], parsed[1], parsed[2], parsed[3]]
    };
    let img = render_hand(
        &cards,
        a.formula_label || cfg.render_formula_label,
        cfg.image_size,
        cfg.card_faces,
    );
    img.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let keys: Vec<String> = cards.iter().map(|c| c.key()).collect();
    println!("wrote {} ({})", a.out.display(), keys.join(" "));
    Ok(())
}

/// A card key: suit letter (S, H, D, C) then rank (A, 2..10, T, J, Q, K).
fn parse_key(s: &str) -> Result<Card> {
    let s = s.trim();
    let suit = match s.chars().next().map(|c| c.to_ascii_uppercase()) {
        Some('S') => Suit::Spades,
        Some('H') => Suit::Hearts,
        Some('D') => Suit::Diamonds,
        Some('C') => Suit::Clubs,
        _ => {
            bail!("`{s}` is not a card key: use a suit letter S/H/D/C then a rank, e.g. SA, HT, DQ")
        }
    };
    let rank = Card::rank_from_name(&s[1..])
        .with_context(|| format!("`{s}`: unknown rank `{}`", &s[1..]))?;
    Ok(Card { rank, suit })
}

fn play(a: PlayArgs) -> Result<()> {
    let cfg = a.task.sized_config(a.image_size)?;
    let mut env = GeneralPoints::new(cfg.clone())?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut solved = 0;
    for episode in 0..a.episodes {
        // Wrapping: a seed near u64::MAX continues from 0 (seeds are 64-bit labels).
        let seed = a.seed.wrapping_add(episode);
        let t = env.reset(seed).clone();
        println!("=== episode {} (seed {seed}) ===", episode + 1);
        if let Some(img) = &t.image {
            img.save(&a.image)
                .with_context(|| format!("writing {}", a.image.display()))?;
            println!("[the cards are shown in {}]", a.image.display());
        }
        println!("{}", t.turns[0].text);
        loop {
            println!(
                "Your answer ({} graded attempt(s) left) — a JSON response, or just a formula like (10*3-6)*1=24:",
                env.remaining_attempts()
            );
            let Some(line) = lines.next() else {
                println!("(end of input)");
                return Ok(());
            };
            let line = line?;
            let response = if line.trim_start().starts_with('{') {
                line
            } else {
                let hand = env.hand();
                let formula = line.trim().split('=').next().unwrap_or("");
                expert_response(
                    &hand.names(),
                    &hand.values,
                    formula,
                    cfg.target,
                    cfg.prompt_layout,
                )
            };
            let v = env.step(&response);
            println!("reward {}: {}", v.reward, v.message);
            if v.done() {
                if env.success() {
                    solved += 1;
                }
                let sols = env.hand().solutions.all();
                println!(
                    "solutions include: {}",
                    sols.iter().take(3).cloned().collect::<Vec<_>>().join("  ")
                );
                break;
            }
            println!(
                "{}",
                env.transcript()
                    .turns
                    .last()
                    .map_or("", |t| t.text.as_str())
            );
        }
    }
    println!("solved {solved} of {} episode(s)", a.episodes);
    Ok(())
}
