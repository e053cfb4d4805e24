//! Expert data in the sequential-revision format: an example shows one or more failed attempts,
//! each followed by the verifier's message exactly as the environment words it, and then the
//! correct answer. A model trained only on first attempts has never read a feedback turn, so it
//! cannot use the paper's 5 verification iterations (paper §5.5); these examples teach it what a
//! revision turn looks like and that the answer after one must differ.
//!
//! The failed attempts are the mistakes a card-game solver makes, graded by the real verifier
//! (an attempt the verifier would accept is never shown as a failure):
//! - **misread face cards**: J, Q and K taken at another rule's values (e.g. 10 where the rule
//!   says 11), with a formula that is right for the misread numbers;
//! - **an arithmetic slip**: the hand's numbers with operators that do not reach the target;
//! - **a misnamed card** (vision only): one card named as another rank.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::GpConfig;
use super::episode::{Hand, revision_feedback};
use super::expert::{ExpertSolution, expert_example, expert_hand};
use super::formula::{python_eval, tokenize};
use super::prompt::task_response;
use super::solver::solutions;
use super::verify::{HandFacts, grade_response, reward};
use crate::env::{Role, Turn};
use crate::expert::ExpertExample;
use crate::rng::Rng;

/// How many examples show failed attempts, and how many at most.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionData {
    /// Share of the examples (0..=1) that show failed attempts before the answer.
    pub fraction: f64,
    /// Each such example shows 1..=`max_failed` failed attempts (uniformly); keep it below the
    /// `verify_iter` the model will be trained and tested with.
    pub max_failed: u32,
}

impl RevisionData {
    /// Checks the ranges, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(format!(
                "revision.fraction must be in [0, 1], got {}",
                self.fraction
            ));
        }
        if self.max_failed == 0 {
            return Err("revision.max_failed must be at least 1".into());
        }
        Ok(())
    }
}

/// The random stream of example `index`'s revision choices (apart from the hand's own).
const REVISION_STREAM: u64 = 0x7265_7669_7369_6f6e;

/// Example `index` of data set `seed`: the expert example of [`expert_example`], or, for a
/// `revision.fraction` share of the indices, the same hand and answer after 1..=`max_failed`
/// failed attempts and their feedback turns.
pub fn revision_example(
    cfg: &GpConfig,
    seed: u64,
    index: u64,
    choice: ExpertSolution,
    revision: &RevisionData,
) -> ExpertExample {
    let mut rng = Rng::derive(Rng::derive(seed, index).next_u64(), REVISION_STREAM);
    let mut example = expert_example(cfg, seed, index, choice);
    if !rng.chance(revision.fraction) {
        return example;
    }
    let (hand, _) = expert_hand(cfg, seed, index, choice);
    let failed = 1 + rng.below(u64::from(revision.max_failed)) as usize;
    for _ in 0..failed {
        let attempt = failed_attempt(cfg, &hand, &mut rng);
        let message = grade_response(&attempt, &facts(cfg, &hand)).message;
        example.history.push(Turn {
            role: Role::Assistant,
            text: attempt,
        });
        example.history.push(Turn {
            role: Role::User,
            text: revision_feedback(&message),
        });
    }
    example.meta["failed_attempts"] = json!(failed);
    example
}

fn facts<'a>(cfg: &GpConfig, hand: &'a Hand) -> HandFacts<'a> {
    HandFacts {
        values: hand.values,
        names: hand.names(),
        solutions: &hand.solutions,
        target: cfg.target,
        vision: cfg.vision,
        scheme: cfg.gp_reward,
    }
}

/// One response to `hand` that the verifier does not accept.
fn failed_attempt(cfg: &GpConfig, hand: &Hand, rng: &mut Rng) -> String {
    loop {
        let kinds = if cfg.vision { 3 } else { 2 };
        let attempt = match rng.below(kinds) {
            0 => misread_faces(cfg, hand, rng),
            1 => arithmetic_slip(cfg, hand, rng),
            _ => misnamed_card(cfg, hand, rng),
        };
        if let Some(attempt) = attempt
            && grade_response(&attempt, &facts(cfg, hand)).reward != reward::CORRECT_SOLUTION
        {
            return attempt;
        }
    }
}

/// The face values a solver may wrongly use in place of the rule's.
const MISREAD_FACES: [[u8; 3]; 5] = [
    [10, 10, 10],
    [11, 12, 13],
    [11, 11, 11],
    [12, 12, 12],
    [13, 13, 13],
];

/// A correct formula for the hand with its face cards at another rule's values (`None` when the
/// hand has no face card or the misread numbers have no solution).
fn misread_faces(cfg: &GpConfig, hand: &Hand, rng: &mut Rng) -> Option<String> {
    let faces = *rng.choose(&MISREAD_FACES);
    if faces == cfg.face_cards.face_values() {
        return None;
    }
    let values = hand.cards.map(|c| match c.rank {
        11..=13 => faces[usize::from(c.rank - 11)],
        r => r,
    });
    if values == hand.values {
        return None;
    }
    let all = solutions(values, cfg.target);
    if all.all().is_empty() {
        return None;
    }
    let formula = rng.choose(all.all());
    Some(response(cfg, hand, &values, formula))
}

/// The hand's numbers in a random order with random operators, when that misses the target.
fn arithmetic_slip(cfg: &GpConfig, hand: &Hand, rng: &mut Rng) -> Option<String> {
    let mut v = hand.values.map(|x| x.to_string());
    rng.shuffle(&mut v);
    let op = |rng: &mut Rng| *rng.choose(&['+', '-', '*']);
    let (a, b, c) = (op(rng), op(rng), op(rng));
    let formula = match rng.below(3) {
        0 => format!("{}{a}{}{b}{}{c}{}", v[0], v[1], v[2], v[3]),
        1 => format!("({}{a}{}){b}{}{c}{}", v[0], v[1], v[2], v[3]),
        _ => format!("({}{a}{}){b}({}{c}{})", v[0], v[1], v[2], v[3]),
    };
    let value = python_eval(&tokenize(&formula)?).ok()?;
    (!value.equals_int(cfg.target)).then(|| response(cfg, hand, &hand.values, &formula))
}

/// A vision answer that names one card as another rank, with a formula right for that reading.
fn misnamed_card(cfg: &GpConfig, hand: &Hand, rng: &mut Rng) -> Option<String> {
    let which = rng.below(4) as usize;
    let mut cards = hand.cards;
    cards[which].rank = 1 + rng.below(13) as u8;
    if cards[which].rank == hand.cards[which].rank {
        return None;
    }
    let values = cards.map(|c| cfg.face_cards.value(c.rank));
    let formula = solutions(values, cfg.target).all().first()?.clone();
    let names = cards.map(|c| c.plain_name());
    Some(task_response(
        cfg.vision,
        &names,
        &values,
        &formula,
        cfg.target,
        cfg.prompt_layout,
    ))
}

/// An answer to `hand` in `cfg`'s layout, with `values` as the numbers read.
fn response(cfg: &GpConfig, hand: &Hand, values: &[u8; 4], formula: &str) -> String {
    task_response(
        cfg.vision,
        &hand.names(),
        values,
        formula,
        cfg.target,
        cfg.prompt_layout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Env;
    use crate::gp::episode::hand_prompt;
    use crate::gp::prompt::PromptLayout;
    use crate::gp::{FaceRule, GeneralPoints, Variant};

    fn config(vision: bool, layout: PromptLayout, face_cards: FaceRule) -> GpConfig {
        GpConfig {
            prompt_layout: layout,
            image_size: 96,
            face_cards,
            verify_iter: 5,
            ..GpConfig::variant(Variant::Id, vision)
        }
    }

    /// Every failed attempt is one the verifier refuses, followed by exactly the feedback turn
    /// the environment would add; the final answer solves the hand.
    #[test]
    fn failed_attempts_are_graded_as_the_environment_grades_them() {
        let revision = RevisionData {
            fraction: 0.5,
            max_failed: 4,
        };
        let mut shown = [0usize; 5];
        for vision in [false, true] {
            for layout in [PromptLayout::Reference, PromptLayout::Compact] {
                for rule in [FaceRule::Id, FaceRule::Custom([11, 13, 12])] {
                    let cfg = config(vision, layout, rule);
                    for i in 0..40 {
                        let ex = revision_example(&cfg, 9, i, ExpertSolution::HandOrder, &revision);
                        let (hand, _) = expert_hand(&cfg, 9, i, ExpertSolution::HandOrder);
                        assert_eq!(ex.prompt, hand_prompt(&cfg, &hand));
                        check_against_verifier(&cfg, &hand, &ex);
                        shown[ex.history.len() / 2] += 1;
                    }
                }
            }
        }
        // Plain first-attempt examples and every count of failures 1..=4 occur.
        assert!(shown.iter().all(|&n| n > 0), "{shown:?}");
    }

    /// The environment words a failure as the data does.
    #[test]
    fn the_environment_gives_the_same_feedback_turn() {
        let cfg = config(false, PromptLayout::Compact, FaceRule::Id);
        let mut env = GeneralPoints::new(cfg).unwrap();
        env.reset(3);
        let attempt = "{\"number\": [1, 2, 3, 4], \"formula\": \"1+2+3+4=24\"}";
        let verdict = env.step(attempt);
        assert!(!verdict.done());
        let turns = &env.transcript().turns;
        assert_eq!(turns[turns.len() - 2].text, attempt);
        assert_eq!(
            turns[turns.len() - 1].text,
            revision_feedback(&verdict.message)
        );
    }

    fn check_against_verifier(cfg: &GpConfig, hand: &Hand, ex: &ExpertExample) {
        for pair in ex.history.chunks(2) {
            let grade = grade_response(&pair[0].text, &facts(cfg, hand));
            assert_ne!(grade.reward, 5.0);
            assert_eq!(pair[1].text, revision_feedback(&grade.message));
            assert_eq!((pair[0].role, pair[1].role), (Role::Assistant, Role::User));
        }
        assert_eq!(grade_response(&ex.response, &facts(cfg, hand)).reward, 5.0);
    }

    #[test]
    fn without_revisions_the_data_is_the_plain_expert_data() {
        let cfg = GpConfig::default();
        let none = RevisionData {
            fraction: 0.0,
            max_failed: 3,
        };
        for i in 0..50 {
            let plain = expert_example(&cfg, 4, i, ExpertSolution::Random);
            let ex = revision_example(&cfg, 4, i, ExpertSolution::Random, &none);
            assert_eq!((ex.prompt, ex.response), (plain.prompt, plain.response));
            assert!(ex.history.is_empty());
        }
        let all = RevisionData {
            fraction: 1.0,
            max_failed: 1,
        };
        let ex = revision_example(&cfg, 4, 0, ExpertSolution::Random, &all);
        assert_eq!(ex.history.len(), 2);
        assert_eq!(ex.meta["failed_attempts"], 1);
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let bad = RevisionData {
            fraction: 1.5,
            max_failed: 1,
        };
        assert!(bad.validate().unwrap_err().contains("revision.fraction"));
        let none = RevisionData {
            fraction: 0.5,
            max_failed: 0,
        };
        assert!(none.validate().unwrap_err().contains("revision.max_failed"));
    }
}
