//! The parser and verifier are total: no input panics, and every input is graded in bounded time.

use proptest::prelude::*;
use sftvsrl_envs::gp::solver::{Solutions, solutions};
use sftvsrl_envs::gp::verify::{HandFacts, RewardScheme, grade_response};

fn facts(sols: &Solutions, vision: bool, scheme: RewardScheme) -> HandFacts<'_> {
    HandFacts {
        values: [1, 3, 10, 6],
        names: ["A", "3", "10", "6"],
        solutions: sols,
        target: 24,
        vision,
        scheme,
    }
}

/// Pieces that stress the JSON parser, the patterns, the tokenizer and the evaluator.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    ",",
    ":",
    " ",
    "\n",
    "\\",
    "\\u00",
    "\\ud800",
    "formula",
    "\"formula\": \"",
    "\"cards\": [",
    "\"number\": [",
    "NaN",
    "-Infinity",
    "1e999",
    "0",
    "06",
    "10",
    "3",
    "6",
    "1",
    "24",
    "99999999999999999999999999",
    "+",
    "-",
    "*",
    "/",
    "(",
    ")",
    "=",
    "÷",
    "×",
    "٣",
    "７",
    "é",
    "😀",
    "\u{0}",
    "\u{1c}",
    "A",
    "K",
    "10*3-6",
    "(10*3-6)*1=24",
    "/(3-3)",
    "((((",
    "))))",
    "_",
    "true",
    "null",
];

fn adversarial() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.concat()),
        (prop::collection::vec(prop::sample::select(PIECES), 0..20), any::<bool>()).prop_map(|(v, json)| {
            let f = v.concat().replace('"', "");
            if json {
                format!("{{\"cards\": ['A', '3', '10', '6'], \"formula\": \"{f}\"}}")
            } else {
                format!("\n{{\n  \"cards\": ['A', '3', '10', '6'],\n  \"number\": [1, 3, 10, 6],\n  \"formula\": \"{f}\",\n}}")
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn grading_never_panics(response in adversarial(), vision in any::<bool>(), paper in any::<bool>()) {
        let sols = solutions([1, 3, 10, 6], 24);
        let scheme = if paper { RewardScheme::Paper } else { RewardScheme::Reference };
        let g = grade_response(&response, &facts(&sols, vision, scheme));
        prop_assert!(g.reward.is_finite());
        prop_assert!(g.reward <= 5.0 && g.reward >= -1e9);
        prop_assert!(!g.message.is_empty());
    }
}

#[test]
fn megabyte_inputs_are_graded_quickly() {
    let sols = solutions([1, 3, 10, 6], 24);
    let mb = 1 << 20;
    let inputs = [
        "9".repeat(mb),
        "(".repeat(mb),
        "[".repeat(mb),
        "{\"a\":".repeat(mb / 5),
        format!("{{\"formula\": \"{}\"}}", "1+".repeat(mb / 2)),
        format!("\"formula\": \"{}\"", "(".repeat(mb)),
        format!("\"cards\": [{}]", "'A', ".repeat(mb / 5)),
        format!(
            "{{\"formula\": \"{}1{}\"}}",
            "(".repeat(mb / 2),
            ")".repeat(mb / 2)
        ),
        "\"formula\": \"".repeat(mb / 12),
        "😀".repeat(mb / 4),
        "\"cards\": [".repeat(mb / 10),
        format!("{}]", "\"cards\": [".repeat(mb / 10)),
        format!(
            "{{\"formula\": \"{}\"}}",
            (0..150_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("+")
        ),
    ];
    for (i, input) in inputs.iter().enumerate() {
        // Grading is linear in the input: a quadratic path would make this test run for hours.
        for vision in [false, true] {
            let g = grade_response(input, &facts(&sols, vision, RewardScheme::Reference));
            assert!(g.reward.is_finite(), "input {i}");
        }
    }
}
