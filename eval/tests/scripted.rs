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
