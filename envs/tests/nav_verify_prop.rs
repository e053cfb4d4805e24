//! The verifier is total: any text — unicode, huge, almost-JSON — gets one of its three grades
//! with one of its messages, and the environment survives any response.

use std::path::Path;

use proptest::prelude::*;
use sftvsrl_envs::Env;
use sftvsrl_envs::nav::config::{ObsPenalty, PromptText};
use sftvsrl_envs::nav::verify::step_rewards_virl;
use sftvsrl_envs::nav::{NavConfig, Navigation};

const PREFIXES: [&str; 5] = [
    "Correct action.",
    "you are not at any intersection. Please avoid this observation",
    "you are at an intersection. Please avoid this observation",
    "you observe incorrect landmarks. Please avoid this observation",
    "you make incorrect action. Please avoid this action",
];

/// Text that is often close to an answer: fragments of the answer format mixed with noise.
fn answerish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"action\": \"".to_string()),
        Just("\"current observation\": \"".to_string()),
        Just("\"current instruction\": \"".to_string()),
        Just("forward()".to_string()),
        Just("stop()".to_string()),
        Just("turn_direction(north)".to_string()),
        Just("intersection".to_string()),
        Just("\", ".to_string()),
        Just("\\u00e9\\ud800\\\"".to_string()),
        Just("\n".to_string()),
        "\\PC{0,12}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn check(response: &str, gt_action: &str, gt_obs: &str) {
    for penalty in [
        ObsPenalty::IntersectionMention,
        ObsPenalty::LandmarkMismatch,
    ] {
        for text in [PromptText::Reference, PromptText::Cleaned] {
            let g = step_rewards_virl(response, gt_action, gt_obs, penalty, text);
            assert!([1.0, -1.0, -1.5].contains(&g.reward), "{}", g.reward);
            assert!(
                PREFIXES.iter().any(|p| g.message.starts_with(p)),
                "{}",
                g.message
            );
            assert!(g.message.ends_with('.'));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_gets_a_grade(response in "\\PC*", gt_obs in "\\PC{0,40}") {
        check(&response, "forward()", &gt_obs);
    }

    #[test]
    fn near_answers_get_a_grade(response in answerish()) {
        check(&response, "turn_direction(north)", "No landmarks nearby");
        check(&response, "stop()", "You observe an intersection");
    }
}

#[test]
fn huge_and_deep_inputs() {
    let huge = format!("{{\"action\": \"{}\"}}", "é".repeat(1 << 20));
    check(&huge, "forward()", "x");
    check(&"[".repeat(100_000), "forward()", "x");
    check(
        &format!("{}\"action\": \"stop()\"", "{\"a\": ".repeat(5000)),
        "stop()",
        "x",
    );
    let exact = "{\"action\": \"stop()\"}";
    assert_eq!(
        step_rewards_virl(
            exact,
            "stop()",
            "",
            ObsPenalty::IntersectionMention,
            PromptText::Reference
        )
        .reward,
        1.0
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn episodes_survive_any_responses(responses in prop::collection::vec(answerish(), 1..12), seed in 0u64..50) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nav/routes");
        let mut env = Navigation::open(&dir, NavConfig::default()).unwrap();
        env.reset(seed);
        for r in &responses {
            let v = env.step(r);
            if v.done() {
                break;
            }
            prop_assert!(!env.transcript().turns.is_empty());
        }
    }
}
