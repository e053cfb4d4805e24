//! Evaluation driven by a scripted policy whose accuracy is known: GP-VL card recognition is
//! measured as the reference does (one call per episode, verification off), so a policy that
//! misreads half the hands scores 50%, whatever the revisions and step-limit calls add.

use std::path::Path;

use sftvsrl_envs::gp::episode::deal;
use sftvsrl_envs::gp::expert::{ExpertSolution, expert_examples};
use sftvsrl_envs::gp::prompt::{PromptLayout, expert_response};
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_envs::{Rng, Transcript};
use sftvsrl_eval::config::gp_config;
use sftvsrl_eval::{EvalConfig, EvalVariant, evaluate};
use sftvsrl_model::word_level_tokenizer;
use sftvsrl_training::ScriptedPolicy;

#[test]
fn a_policy_that_misreads_half_the_hands_scores_half_recognition() {
    let config = EvalConfig::from_toml(
        "variants = [\"gp-vl-id\"]\nepisodes = 20\nseed = 500\nverify_iters = [1, 3]\n\
         max_new_tokens = 80\ntemperature = 0.0\nbatch = 1\ntranscripts = 0\n",
        Path::new("eval.toml"),
    )
    .unwrap();
    let vl = GpConfig::variant(Variant::Id, true);
    let examples: Vec<_> = expert_examples(&vl, 0, 100, ExpertSolution::Random).collect();
    let corpus = examples
        .iter()
        .flat_map(|e| [e.prompt.as_str(), e.response.as_str()])
        .chain(["You failed this trial because you recognized wrong cards"]);
    let tokenizer = word_level_tokenizer(corpus, 1).unwrap();
    for verify_iter in [1, 3] {
        // Played one episode at a time: a call whose conversation has one turn starts the next
        // hand, dealt from the next seed. Even hands are read right and solved, odd ones
        // misread (and their revisions misread again).
        let env = gp_config(
            Variant::Id,
            true,
            verify_iter,
            PromptLayout::Reference,
            (1200, Default::default()),
        );
        let mut episode: Option<u64> = None;
        let answer = move |t: &Transcript| {
            if t.turns.len() == 1 {
                episode = Some(episode.map_or(0, |e| e + 1));
            }
            let k = episode.unwrap();
            let hand = deal(&env, &mut Rng::new(500 + k));
            let mut names = hand.names();
            if k % 2 == 1 {
                names = ["X"; 4];
            }
            let formula = &hand.solutions.all()[0];
            expert_response(&names, &hand.values, formula, 24, PromptLayout::Reference)
        };
        let mut policy = ScriptedPolicy {
            tokenizer: tokenizer.clone(),
            answer,
            sees_images: true,
        };
        let mut one = config.clone();
        one.verify_iters = vec![verify_iter];
        let report = evaluate(&mut policy, &tokenizer, &one, &mut |_| {}).unwrap();
        let r = report.get(EvalVariant::GpVlId, verify_iter).unwrap();
        assert_eq!(
            (r.successes, r.episodes),
            (10, 20),
            "verify_iter {verify_iter}"
        );
        let recognition = r.recognition.unwrap();
        assert_eq!((recognition.count, recognition.calls), (10, 20));
        assert!((recognition.rate - 0.5).abs() < 1e-12);
    }
}

/// `gp-l-ood-face5` and `gp-l-ood-face7` deal hands that each hold a face card counting 5 or 7:
/// a policy that applies the stated rule solves every hand, one that counts faces as 10 (the
/// ID rule) or as 11/12/13 (the other OOD rule) solves few.
#[test]
fn the_all_five_and_all_seven_rules_are_new_in_every_part() {
    for (variant, value) in [("gp-l-ood-face5", 5u8), ("gp-l-ood-face7", 7)] {
        let config = EvalConfig::from_toml(
            &format!(
                "variants = [\"{variant}\"]\nepisodes = 24\nseed = 9\nverify_iters = [1]\n\
                 max_new_tokens = 80\ntemperature = 0.0\ntranscripts = 0\n\
                 prompt_layout = \"compact\"\n"
            ),
            Path::new("eval.toml"),
        )
        .unwrap();
        let rule = |variant| GpConfig {
            prompt_layout: PromptLayout::Compact,
            ..GpConfig::variant(variant, false)
        };
        let stated = rule(Variant::AllFaces(value));
        assert_eq!(
            stated.face_cards.face_values(),
            [value; 3],
            "{variant} states its rule"
        );
        let examples: Vec<_> = expert_examples(&stated, 0, 50, ExpertSolution::Random).collect();
        let corpus = examples
            .iter()
            .flat_map(|e| [e.prompt.as_str(), e.response.as_str()]);
        let tokenizer = word_level_tokenizer(corpus, 1).unwrap();
        let mut solved = Vec::new();
        for assumed in [stated.clone(), rule(Variant::Id), rule(Variant::RuleOod)] {
            let answer = move |t: &Transcript| {
                sftvsrl_envs::gp::expert::answer_from_prompt(&t.turns[0].text, &assumed)
                    .unwrap_or_else(|| "{\"formula\": \"1\"}".into())
            };
            let mut policy = ScriptedPolicy {
                tokenizer: tokenizer.clone(),
                answer,
                sees_images: false,
            };
            let report = evaluate(&mut policy, &tokenizer, &config, &mut |_| {}).unwrap();
            solved.push(report.results[0].successes);
        }
        assert_eq!(
            solved[0], 24,
            "{variant}: the stated rule solves every hand"
        );
        assert!(solved[1] < 12 && solved[2] < 12, "{variant}: {solved:?}");
    }
}
