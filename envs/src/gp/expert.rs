//! Expert GeneralPoints data for SFT: each example is a dealt hand, its prompt, and a response in
//! the reference's `ResponseEqn` layout holding one of the hand's solutions.
//!
//! Only solutions that the reference verifier grades +5 are used: a few solution strings (e.g.
//! `8/(3-8/3)`) evaluate just off the target in floating point and would be graded 0, so hands
//! whose every solution is like that are dealt again.

use serde_json::json;

use super::config::GpConfig;
use super::episode::{Hand, deal, hand_prompt};
use super::formula::{python_eval, tokenize};
use super::prompt::expert_response;
use super::render::render_hand;
use crate::expert::ExpertExample;
use crate::rng::Rng;

/// Whether the reference verifier's f64 evaluation of `solution` equals `target`.
fn graded_correct(solution: &str, target: i64) -> bool {
    tokenize(solution)
        .and_then(|t| python_eval(&t).ok())
        .is_some_and(|v| v.equals_int(target))
}

/// The hand and solution of example `index` of data set `seed`.
pub fn expert_hand(cfg: &GpConfig, seed: u64, index: u64) -> (Hand, String) {
    let mut rng = Rng::derive(seed, index);
    loop {
        let hand = deal(cfg, &mut rng);
        let good: Vec<&String> = hand
            .solutions
            .all()
            .iter()
            .filter(|s| graded_correct(s, cfg.target))
            .collect();
        if !good.is_empty() {
            let solution = rng.choose(&good).to_string();
            return (hand, solution);
        }
    }
}

/// Example `index` of the expert data set `seed`: the same pair always gives the same example.
pub fn expert_example(cfg: &GpConfig, seed: u64, index: u64) -> ExpertExample {
    let (hand, solution) = expert_hand(cfg, seed, index);
    ExpertExample {
        prompt: hand_prompt(cfg, &hand),
        response: expert_response(&hand.names(), &hand.values, &solution, cfg.target),
        image: cfg
            .vision
            .then(|| render_hand(&hand.cards, cfg.render_formula_label)),
        meta: json!({
            "cards": hand.cards.map(|c| c.key()),
            "values": hand.values,
            "solution": solution,
            "solutions": hand.solutions.all().len(),
        }),
    }
}

/// `n` expert examples of data set `seed`.
pub fn expert_examples(
    cfg: &GpConfig,
    seed: u64,
    n: usize,
) -> impl Iterator<Item = ExpertExample> + '_ {
    (0..n as u64).map(move |i| expert_example(cfg, seed, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gp::Variant;
    use crate::gp::verify::{HandFacts, grade_response};

    #[test]
    fn expert_responses_are_graded_correct() {
        for vision in [false, true] {
            let cfg = GpConfig::variant(Variant::Id, vision);
            for i in 0..if vision { 20 } else { 300 } {
                let (hand, _) = expert_hand(&cfg, 7, i);
                let ex = expert_example(&cfg, 7, i);
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
            }
        }
        let a = expert_example(&GpConfig::default(), 3, 5);
        let b = expert_example(&GpConfig::default(), 3, 5);
        assert_eq!((a.prompt, a.response), (b.prompt, b.response));
    }

    #[test]
    fn float_only_solutions_are_never_taught() {
        assert!(!graded_correct("8/(3-8/3)", 24));
        assert!(graded_correct("(10*3-6)*1", 24));
    }
}
