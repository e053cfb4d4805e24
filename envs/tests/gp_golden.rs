//! The golden vectors of paper-spec §1.9 and the episode loop of §1.10.

use sftvsrl_envs::Env;
use sftvsrl_envs::gp::solver::solutions;
use sftvsrl_envs::gp::verify::{HandFacts, RewardScheme, grade_response};
use sftvsrl_envs::gp::{GeneralPoints, GpConfig, Variant};

fn facts(
    values: [u8; 4],
    names: [&'static str; 4],
    vision: bool,
    scheme: RewardScheme,
) -> HandFacts<'static> {
    let sols = Box::leak(Box::new(solutions(values, 24)));
    HandFacts {
        values,
        names,
        solutions: sols,
        target: 24,
        vision,
        scheme,
    }
}

fn check(
    values: [u8; 4],
    names: [&'static str; 4],
    formula: Option<&str>,
    reward: f64,
    message: &str,
) {
    let response = match formula {
        Some(f) => format!("{{\"cards\": [\"x\"], \"formula\": \"{f}\"}}"),
        None => "I think the answer is twenty-four".to_string(),
    };
    let g = grade_response(
        &response,
        &facts(values, names, false, RewardScheme::Reference),
    );
    assert_eq!(
        (g.reward, g.message.as_str()),
        (reward, message),
        "formula {formula:?}"
    );
}

#[test]
fn reference_golden_vectors() {
    let h = [1, 3, 10, 6];
    let n = ["A", "3", "10", "6"];
    check(h, n, Some("(10*3-6)*1=24"), 5.0, "Correct solution.");
    check(h, n, Some("(10*3-6)*1"), 5.0, "Correct solution.");
    check(
        h,
        n,
        Some("6*(10-3-1)=36"),
        -1.0,
        "your formula does not match any solution.",
    );
    check(
        h,
        n,
        Some("((10*3-6)*1=24"),
        -1.0,
        "( is partially correct but the full formula does not match any solution.",
    );
    check(
        h,
        n,
        Some("(10-6)*(3+1)*1=24"),
        -2.0,
        "you used numbers: [1] too many times.",
    );
    check(h, n, Some("10*3-6"), -2.0, "you didn't use numbers: [1].");
    check(
        h,
        n,
        Some("(6-3+1)*6=24"),
        -4.0,
        "you used numbers: [6] too many times, you didn't use numbers: [10].",
    );
    check(
        h,
        n,
        Some("(1+6)*3+13=24"),
        -4.0,
        "you used invalid numbers: [13], you didn't use numbers: [10].",
    );
    check(
        h,
        n,
        Some("10 * 3 - 6 * 1 = 24"),
        -3.0,
        "illegal characters.",
    );
    check(h, n, None, -3.0, "illegal characters.");
    check(
        [3, 3, 8, 8],
        ["3", "3", "8", "8"],
        Some("8/(3-8/3)=24"),
        0.0,
        ".",
    );
    check(
        [3, 3, 8, 8],
        ["3", "3", "8", "8"],
        Some("8/(3-8/3"),
        1.0,
        "partial solution.",
    );
    check(
        [1, 3, 13, 6],
        ["A", "3", "K", "6"],
        Some("(13-1)*(6/3)=24"),
        5.0,
        "Correct solution.",
    );
}

#[test]
fn sequence_penalties_accumulate() {
    let h = [1, 3, 10, 6];
    let n = ["A", "3", "10", "6"];
    check(
        h,
        n,
        Some("+10*3-6*1"),
        -3.0,
        "invalid sequence after operator.",
    );
    check(
        h,
        n,
        Some("10*3-6*1)"),
        -3.0,
        "unmatched closing parenthesis.",
    );
    // `(` after a number is not pushed, so its `)` is unmatched too.
    check(
        h,
        n,
        Some("10(3)-6*1"),
        -6.0,
        "invalid sequence before '(', unmatched closing parenthesis.",
    );
    check(
        h,
        n,
        Some("10*3-6*()1"),
        -6.0,
        "invalid sequence after ')', invalid sequence after number.",
    );
    // Leading zeros count as the card value but Python's eval rejects them.
    check(
        h,
        n,
        Some("010*3-6*1"),
        -1.0,
        "your formula does not match any solution.",
    );
}

#[test]
fn many_distinct_numbers_keep_first_seen_order() {
    let formula: Vec<String> = (1..=20).rev().map(|i| i.to_string()).collect();
    let invalid: Vec<String> = (1..=20)
        .rev()
        .filter(|i| ![1, 3, 10, 6].contains(i))
        .map(|i| i.to_string())
        .collect();
    let message = format!("you used invalid numbers: [{}].", invalid.join(", "));
    check(
        [1, 3, 10, 6],
        ["A", "3", "10", "6"],
        Some(&formula.join("+")),
        -2.0,
        &message,
    );
    check(
        [1, 3, 10, 6],
        ["A", "3", "10", "6"],
        Some("10*3-6*001+0000000000000000000000007"),
        -2.0,
        "you used invalid numbers: [7].",
    );
}

#[test]
fn paper_reward_scheme() {
    let f = |values, names, formula: &str| {
        let g = grade_response(
            &format!("{{\"formula\": \"{formula}\"}}"),
            &facts(values, names, false, RewardScheme::Paper),
        );
        (g.reward, g.message)
    };
    let h = [1, 3, 10, 6];
    let n = ["A", "3", "10", "6"];
    assert_eq!(
        f([3, 3, 8, 8], ["3", "3", "8", "8"], "8/(3-8/3)"),
        (5.0, "Correct solution.".into())
    );
    assert_eq!(
        f([3, 3, 8, 8], ["3", "3", "8", "8"], "8/(3-8/3"),
        (-3.0, "invalid formula.".into())
    );
    assert_eq!(
        f(h, n, "(6-3+1)*6"),
        (-2.0, "you used numbers: [6] too many times.".into())
    );
    assert_eq!(
        f(h, n, "10*3-6*()1"),
        (-3.0, "invalid sequence after ')'.".into())
    );
    assert_eq!(
        f(h, n, "6*(10-3-1)"),
        (-1.0, "your formula does not match any solution.".into())
    );
}

#[test]
fn vision_check_comes_first_and_only_single_quoted_or_bare_lists_pass() {
    let facts = facts(
        [1, 3, 10, 10],
        ["A", "3", "K", "10"],
        true,
        RewardScheme::Reference,
    );
    let body = "\"number\": [1, 3, 10, 10],\n  \"formula\": \"(10+10)+3+1=24\",\n}";
    let grade =
        |cards: &str| grade_response(&format!("{{\n  \"cards\": {cards},\n  {body}"), &facts);
    assert_eq!(grade("['A', '3', 'K', '10']").reward, 5.0);
    assert_eq!(grade("[K, A, 10, 3]").reward, 5.0);
    for wrong in [
        "[\"A\", \"3\", \"K\", \"10\"]",
        "[1, 3, 13, 10]",
        "['A', '3', 'Q', '10']",
        "['A', '3', 'K']",
    ] {
        let g = grade(wrong);
        assert_eq!(
            (g.reward, g.message.as_str()),
            (-1.5, "you recognized wrong cards"),
            "{wrong}"
        );
    }
    // Valid JSON: the card list arrives as a list, which the reference always rejects.
    let json = r#"{"cards": ["A", "3", "K", "10"], "formula": "(10+10)+3+1=24"}"#;
    assert_eq!(grade_response(json, &facts).reward, -1.5);
}

#[test]
fn episode_loop_gives_five_graded_attempts_then_a_penalised_call() {
    let mut env = GeneralPoints::new(GpConfig::default()).unwrap();
    let first = env.reset(11).clone();
    assert_eq!(first.turns.len(), 1);
    assert!(first.image.is_none());
    for attempt in 1..=5 {
        let v = env.step("no idea");
        assert_eq!(
            (v.reward, v.terminated, v.truncated),
            (-3.0, false, false),
            "attempt {attempt}"
        );
        let t = env.transcript();
        assert_eq!(t.turns.len(), 1 + 2 * attempt);
        assert_eq!(
            t.turns.last().unwrap().text,
            "You failed this trial because illegal characters."
        );
    }
    let v = env.step(&"anything at all".repeat(3));
    assert_eq!(
        (v.reward, v.message.as_str(), v.terminated, v.truncated),
        (-1.0, "step_limit_reached", false, true)
    );
    assert!(!env.success());

    // A correct answer ends the episode with success.
    env.reset(12);
    let solution = env.hand().solutions.all()[0].clone();
    let v = env.step(&format!("{{\"formula\": \"{solution}=24\"}}"));
    assert_eq!((v.reward, v.terminated), (5.0, true));
    assert!(env.success());
}

#[test]
fn same_seed_same_episode_and_variants_differ() {
    let mut a = GeneralPoints::new(GpConfig::variant(Variant::RuleOod, false)).unwrap();
    let mut b = GeneralPoints::new(GpConfig::variant(Variant::RuleOod, false)).unwrap();
    for seed in 0..200 {
        assert_eq!(a.reset(seed).turns[0].text, b.reset(seed).turns[0].text);
        assert!(
            a.hand().cards.iter().any(|c| c.rank >= 11),
            "rule OOD hands hold a face card"
        );
        assert!(a.hand().solutions.is_solvable());
    }
    let mut vl = GeneralPoints::new(GpConfig::variant(Variant::VisualOod, true)).unwrap();
    let t = vl.reset(3);
    assert_eq!(t.image.as_ref().unwrap().dimensions(), (1200, 1200));
    assert!(vl.hand().cards.iter().all(|c| c.suit.is_red()));
}

#[test]
fn unreachable_targets_are_config_errors() {
    let cfg = GpConfig {
        target: 1_000_000,
        ..GpConfig::default()
    };
    let err = GeneralPoints::new(cfg).err().unwrap();
    assert_eq!(
        err.to_string(),
        "gp.target = 1000000: no hand of four cards can reach it under this rule"
    );
}

#[test]
fn image_size_scales_the_observation_and_is_checked() {
    let cfg: GpConfig =
        serde_json::from_str(r#"{"vision": true, "suits": "black", "image_size": 96}"#).unwrap();
    let mut env = GeneralPoints::new(cfg.clone()).unwrap();
    assert_eq!(env.reset(3).image.as_ref().unwrap().dimensions(), (96, 96));
    for bad in [0, 31, 4097] {
        let err = GeneralPoints::new(GpConfig {
            image_size: bad,
            ..cfg.clone()
        })
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            format!("gp.image_size must be in 32..=4096 pixels, got {bad}")
        );
    }
    assert_eq!(GpConfig::default().image_size, 1200);
}
