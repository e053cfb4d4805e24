//! Expert GeneralPoints data for SFT: each example is a dealt hand, its prompt, and a response in
//! the reference's `ResponseEqn` layout holding one of the hand's solutions: one at random (as
//! the released data) or, with [`ExpertSolution::HandOrder`], a fixed one that keeps the cards'
//! order where it can, which a small model learns far more easily.
//!
//! Only solutions that the reference verifier grades +5 are used: a few solution strings (e.g.
//! `8/(3-8/3)`) evaluate just off the target in floating point and would be graded 0, so hands
//! whose every solution is like that are dealt again.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::GpConfig;
use super::episode::{Hand, deal, hand_prompt, hand_prompt_variant};
use super::formula::{python_eval, tokenize};
use super::paraphrase::PROMPT_VARIANTS;
use super::prompt::{expert_response, task_response};
use super::render::render_hand;
use super::revision::{RevisionData, revision_example};
use super::solver::solutions;
use super::thought::with_thought;
use crate::env::Role;
use crate::expert::ExpertExample;
use crate::rng::Rng;

/// Whether the reference verifier's f64 evaluation of `solution` equals `target`.
fn graded_correct(solution: &str, target: i64) -> bool {
    tokenize(solution)
        .and_then(|t| python_eval(&t).ok())
        .is_some_and(|v| v.equals_int(target))
}

/// Which of a hand's solutions an expert answer teaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpertSolution {
    /// One of the hand's solutions, drawn at random (the reference data's choice).
    #[default]
    Random,
    /// The shortest solution that uses the numbers in the order of the cards, or the shortest
    /// solution when none does (ties broken alphabetically): a function of the ordered values.
    HandOrder,
}

/// The numbers of a solution string, left to right.
fn numbers_in(solution: &str) -> Vec<u64> {
    solution
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The shortest of `solutions`, ties broken alphabetically (`None` when empty).
fn shortest<'a>(solutions: impl IntoIterator<Item = &'a String>) -> Option<&'a String> {
    solutions.into_iter().min_by_key(|s| (s.len(), s.as_str()))
}

/// The hand and solution of example `index` of data set `seed`.
pub fn expert_hand(
    cfg: &GpConfig,
    seed: u64,
    index: u64,
    choice: ExpertSolution,
) -> (Hand, String) {
    let mut rng = Rng::derive(seed, index);
    loop {
        let hand = deal(cfg, &mut rng);
        let good: Vec<&String> = hand
            .solutions
            .all()
            .iter()
            .filter(|s| graded_correct(s, cfg.target))
            .collect();
        if good.is_empty() {
            continue;
        }
        let solution = match choice {
            ExpertSolution::Random => rng.choose(&good),
            ExpertSolution::HandOrder => {
                let order: Vec<u64> = hand.values.iter().map(|&v| v as u64).collect();
                let in_order = good.iter().copied().filter(|s| numbers_in(s) == order);
                shortest(in_order)
                    .or_else(|| shortest(good.iter().copied()))
                    .unwrap_or(good[0])
            }
        }
        .to_string();
        return (hand, solution);
    }
}

/// Example `index` of the expert data set `seed`: the same arguments always give the same
/// example.
pub fn expert_example(
    cfg: &GpConfig,
    seed: u64,
    index: u64,
    choice: ExpertSolution,
) -> ExpertExample {
    let (hand, solution) = expert_hand(cfg, seed, index, choice);
    let mut meta = json!({
        "cards": hand.cards.map(|c| c.key()),
        "values": hand.values,
        "solution": solution,
        "solutions": hand.solutions.all().len(),
    });
    if cfg.vision {
        meta["image_size"] = json!(cfg.image_size);
    }
    ExpertExample {
        prompt: hand_prompt(cfg, &hand),
        history: Vec::new(),
        response: task_response(
            cfg.vision,
            &hand.names(),
            &hand.values,
            &solution,
            cfg.target,
            cfg.prompt_layout,
        ),
        image: cfg.vision.then(|| {
            render_hand(
                &hand.cards,
                cfg.render_formula_label,
                cfg.image_size,
                cfg.card_faces,
            )
        }),
        meta,
    }
}

/// How expert examples are presented beyond the reference's one prompt and one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertStyle {
    /// Show failed attempts and the verifier's feedback before a share of the answers (the
    /// sequential-revision format; see [`super::revision`]).
    #[serde(default)]
    pub revision: Option<RevisionData>,
    /// Answers show the formula's arithmetic first (see [`super::thought`]).
    #[serde(default)]
    pub chain_of_thought: bool,
    /// Each prompt is one of this many wordings of the task, drawn per example (0 or 1: the
    /// environment's own; at most [`PROMPT_VARIANTS`]; see [`super::paraphrase`]).
    #[serde(default)]
    pub prompt_variants: u32,
}

impl ExpertStyle {
    /// Checks the ranges, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.prompt_variants > PROMPT_VARIANTS {
            return Err(format!(
                "prompt_variants must be at most {PROMPT_VARIANTS}, got {}",
                self.prompt_variants
            ));
        }
        self.revision
            .as_ref()
            .map_or(Ok(()), RevisionData::validate)
    }
}

/// The random stream of example `index`'s prompt variant (apart from the hand's own).
const PROMPT_STREAM: u64 = 0x7072_6f6d_7074;

/// Example `index` of data set `seed` in `style`: [`expert_example`] with its revisions, prompt
/// variant and thoughts. The default style gives exactly [`expert_example`].
pub fn styled_example(
    cfg: &GpConfig,
    seed: u64,
    index: u64,
    choice: ExpertSolution,
    style: &ExpertStyle,
) -> ExpertExample {
    let mut ex = match &style.revision {
        Some(revision) => revision_example(cfg, seed, index, choice, revision),
        None => expert_example(cfg, seed, index, choice),
    };
    if style.prompt_variants > 1 {
        let mut rng = Rng::derive(Rng::derive(seed, index).next_u64(), PROMPT_STREAM);
        let variant = rng.below(u64::from(style.prompt_variants)) as u32;
        let (hand, _) = expert_hand(cfg, seed, index, choice);
        ex.prompt = hand_prompt_variant(cfg, &hand, variant);
        ex.meta["prompt_variant"] = json!(variant);
    }
    if style.chain_of_thought {
        for turn in ex.history.iter_mut().filter(|t| t.role == Role::Assistant) {
            turn.text = with_thought(&turn.text, cfg.target);
        }
        ex.response = with_thought(&ex.response, cfg.target);
    }
    ex
}

/// `n` expert examples of data set `seed`.
pub fn expert_examples(
    cfg: &GpConfig,
    seed: u64,
    n: usize,
    choice: ExpertSolution,
) -> impl Iterator<Item = ExpertExample> + '_ {
    (0..n as u64).map(move |i| expert_example(cfg, seed, i, choice))
}

/// The expert's answer to a GP-L prompt of `cfg`, read from the prompt's text alone (its
/// `Cards: [...]` line): the hand's first solution in `cfg`'s answer layout. `None` when the
/// prompt shows no cards (GP-VL) or the hand has no solution. An oracle for scripted policies.
pub fn answer_from_prompt(prompt: &str, cfg: &GpConfig) -> Option<String> {
    let line = prompt
        .lines()
        .find_map(|l| l.trim().strip_prefix("Cards: "))?;
    let names: Vec<&str> = line
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|c| c.trim_matches('\''))
        .collect();
    let names: [&str; 4] = names.try_into().ok()?;
    let mut values = [0u8; 4];
    for (value, name) in values.iter_mut().zip(names) {
        let rank = match name {
            "A" => 1,
            "J" => 11,
            "Q" => 12,
            "K" => 13,
            n => n.parse().ok()?,
        };
        *value = cfg.face_cards.value(rank);
    }
    let all = solutions(values, cfg.target);
    let solution = all.all().first()?;
    Some(expert_response(
        &names,
        &values,
        solution,
        cfg.target,
        cfg.prompt_layout,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_from_prompts_solve_their_hands() {
        use crate::Env;
        use crate::gp::prompt::PromptLayout;
        use crate::gp::{GeneralPoints, Variant};
        for variant in [Variant::Id, Variant::RuleOod] {
            for layout in [PromptLayout::Reference, PromptLayout::Compact] {
                let cfg = GpConfig {
                    prompt_layout: layout,
                    ..GpConfig::variant(variant, false)
                };
                let mut env = GeneralPoints::new(cfg.clone()).unwrap();
                for seed in 0..20 {
                    let prompt = env.reset(seed).turns[0].text.clone();
                    let answer = answer_from_prompt(&prompt, &cfg).unwrap();
                    assert_eq!(env.step(&answer).reward, 5.0, "{prompt}\n{answer}");
                }
            }
        }
        let vl = GpConfig::variant(Variant::Id, true);
        let prompt = GeneralPoints::new(vl.clone()).unwrap().reset(0).turns[0]
            .text
            .clone();
        assert_eq!(answer_from_prompt(&prompt, &vl), None);
    }
    use crate::gp::Variant;
    use crate::gp::prompt::PromptLayout;
    use crate::gp::verify::{HandFacts, grade_response};

    #[test]
    fn expert_responses_are_graded_correct() {
        let choices = [ExpertSolution::Random, ExpertSolution::HandOrder];
        let settings = [
            (false, PromptLayout::Reference),
            (true, PromptLayout::Reference),
            (false, PromptLayout::Compact),
            (true, PromptLayout::Compact),
        ];
        for ((vision, prompt_layout), choice) in
            settings.into_iter().flat_map(|s| choices.map(|c| (s, c)))
        {
            let cfg = GpConfig {
                prompt_layout,
                image_size: 96,
                ..GpConfig::variant(Variant::Id, vision)
            };
            for i in 0..if vision { 20 } else { 300 } {
                let (hand, _) = expert_hand(&cfg, 7, i, choice);
                let ex = expert_example(&cfg, 7, i, choice);
                let facts = HandFacts {
                    values: hand.values,
                    names: hand.names(),
                    solutions: &hand.solutions,
                    target: 24,
                    vision,
                    scheme: cfg.gp_reward,
                };
                let g = grade_response(&ex.response, &facts);
                assert_eq!(
                    (g.reward, g.message.as_str()),
                    (5.0, "Correct solution."),
                    "{}",
                    ex.response
                );
                assert_eq!(ex.image.is_some(), vision);
                // Compact GP-VL prompts leave the cards to the image; its answers name them.
                if vision && prompt_layout == PromptLayout::Compact {
                    assert!(ex.prompt.starts_with("The cards are in the image."));
                    assert!(ex.response.starts_with("{\"cards\": ["), "{}", ex.response);
                }
            }
        }
        let a = expert_example(&GpConfig::default(), 3, 5, ExpertSolution::Random);
        let b = expert_example(&GpConfig::default(), 3, 5, ExpertSolution::Random);
        assert_eq!((a.prompt, a.response), (b.prompt, b.response));
    }

    #[test]
    fn hand_order_solutions_keep_the_card_order_when_they_can() {
        let cfg = GpConfig::default();
        let mut by_values: std::collections::HashMap<[u8; 4], String> = Default::default();
        let mut kept = 0;
        for i in 0..400 {
            let (hand, solution) = expert_hand(&cfg, 11, i, ExpertSolution::HandOrder);
            let order: Vec<u64> = hand.values.iter().map(|&v| v as u64).collect();
            let good: Vec<&String> = (hand.solutions.all().iter())
                .filter(|s| graded_correct(s, 24))
                .collect();
            let in_order = good.iter().copied().filter(|s| numbers_in(s) == order);
            if let Some(best) = shortest(in_order) {
                assert_eq!(&solution, best);
                kept += 1;
            } else {
                let len = good.iter().map(|s| s.len()).min();
                assert_eq!(Some(solution.len()), len, "{solution}");
            }
            let first = by_values
                .entry(hand.values)
                .or_insert_with(|| solution.clone());
            assert_eq!(*first, solution, "values {:?}", hand.values);
        }
        assert!(kept > 200, "only {kept} of 400 answers keep the card order");
        assert!(by_values.len() < 400, "no ordered hand was dealt twice");
        assert_eq!(numbers_in("(10-2)*3+1"), [10, 2, 3, 1]);
    }

    #[test]
    fn styles_change_only_what_they_name() {
        let cfg = GpConfig::default();
        let plain = ExpertStyle::default();
        let styled = ExpertStyle {
            revision: Some(RevisionData {
                fraction: 1.0,
                max_failed: 2,
            }),
            chain_of_thought: true,
            prompt_variants: PROMPT_VARIANTS,
        };
        let mut variants = std::collections::BTreeSet::new();
        for i in 0..40 {
            let base = expert_example(&cfg, 2, i, ExpertSolution::Random);
            let same = styled_example(&cfg, 2, i, ExpertSolution::Random, &plain);
            assert_eq!(
                (&same.prompt, &same.response),
                (&base.prompt, &base.response)
            );
            let ex = styled_example(&cfg, 2, i, ExpertSolution::Random, &styled);
            assert!(ex.response.contains("\"thought\": "), "{}", ex.response);
            assert!(!ex.history.is_empty());
            for turn in ex.history.iter().filter(|t| t.role == Role::Assistant) {
                assert!(turn.text.contains("\"thought\": "), "{}", turn.text);
            }
            variants.insert(ex.meta["prompt_variant"].as_u64().unwrap());
        }
        assert_eq!(variants.len(), PROMPT_VARIANTS as usize);
        let too_many = ExpertStyle {
            prompt_variants: PROMPT_VARIANTS + 1,
            ..plain
        };
        assert!(too_many.validate().unwrap_err().contains("prompt_variants"));
    }

    #[test]
    fn float_only_solutions_are_never_taught() {
        assert!(!graded_correct("8/(3-8/3)", 24));
        assert!(graded_correct("(10*3-6)*1", 24));
    }
}
