//! Episodes of the navigation environment on a fixture route folder (text only): instruction
//! text, the attempt limit, feedback turns, success rules, metrics, determinism and load errors.

use std::path::{Path, PathBuf};

use sftvsrl_envs::nav::instruction::build_instruction;
use sftvsrl_envs::nav::milestone::parse_milestones;
use sftvsrl_envs::nav::prompt::{compact_expert_response, expert_response};
use sftvsrl_envs::nav::{
    NavConfig, NavError, NavMetrics, NavStyle, Navigation, PromptLayout, SuccessRule,
    expert_examples,
};
use sftvsrl_envs::{Env, Role};

/// The `milestone_info` of the V-IRL sample route to the MoMA Design Store.
const MOMA: &str = "\n{\n\"intersection_idx\": \"1\",\n\"landmarks\": \"Prince St is on your front\",\n\"distance\": \"16 meters\",\n\"human_heading\": \"0\",\n\"to_next_intersection_heading\": \"298 (northwest)\",\n}\n\n{\n\"intersection_idx\": \"2\",\n\"landmarks\": \"Aritzia is on your left front\",\n\"distance\": \"159 meters\",\n\"human_heading\": \"298\",\n\"to_next_intersection_heading\": \"212 (southwest)\",\n}\n\n{\n\"intersection_idx\": \"3\",\n\"landmarks\": \"The destination MoMA Design Store is on your left\",\n\"distance\": \"70 meters\",\n\"human_heading\": \"212\",\n\"to_next_intersection_heading\": \"120 (southeast)\",\n}\n";

/// The feedback turn after a wrong action (paper-spec §2.8, verified there against the reference).
const WRONG_ACTION_TURN: &str = "You failed this trial because you make incorrect action. Please avoid this action and try again in the same format:\n[Output]\n{{\n  \"current observation\": latest observation from the streetview grid,\n  \"current instruction\": analyze the full instruction and identify the sentence to be executed,\n  \"action\": the action to be taken chosen from the action space,\n}}.";

fn routes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nav/routes")
}

fn env(config: NavConfig) -> Navigation {
    Navigation::open(&routes(), config).unwrap()
}

/// The oracle's answer at the current position.
fn expert(env: &Navigation) -> String {
    let (_, p) = env.position().unwrap();
    expert_response(&p.oracle_observation(), &p.instruction, &p.gt_action)
}

const WRONG: &str =
    "{\"current observation\": \"No landmarks nearby\", \"action\": \"turn_direction(up)\"}";
const WRONG_AT_INTERSECTION: &str = "{\"current observation\": \"You observe an intersection\", \"action\": \"turn_direction(up)\"}";

#[test]
fn moma_instruction_matches_the_spec() {
    let m = parse_milestones(MOMA).unwrap();
    let ins = build_instruction(&m, 100.0, false);
    assert_eq!(
        ins.text,
        "1. First, turn right to face northwest.\n\
         2. Move forward until you reach next intersection where Prince St is on your front.\n\
         3. Turn left to face southwest.\n\
         4. Move forward until you reach next intersection where Aritzia is on your left front.\n\
         5. Turn left to face southeast.\n\
         6. Move forward until you reach destination where The destination MoMA Design Store is on your left.\n"
    );
    assert_eq!(
        ins.actions_absolute,
        [
            "turn_direction(northwest)",
            "turn_direction(southwest)",
            "turn_direction(southeast)",
            "stop()"
        ]
    );
    assert_eq!(
        ins.actions_relative,
        [
            "turn_direction(right)",
            "turn_direction(left)",
            "turn_direction(left)",
            "stop()"
        ]
    );
    // From 10°, 298° is a left turn of 72°; the reference, without wrap-around, says "right".
    assert_eq!(
        build_instruction(&m, 10.0, false).actions_relative[0],
        "turn_direction(right)"
    );
    assert_eq!(
        build_instruction(&m, 10.0, true).actions_relative[0],
        "turn_direction(left)"
    );
}

#[test]
fn the_expert_walks_the_rail_to_success() {
    let mut env = env(NavConfig::default());
    let mut metrics = NavMetrics::default();
    for seed in 0..6 {
        let first = env.reset(seed).turns[0].text.clone();
        assert!(
            first.contains(
                "[Observations and actions sequence]\nO_1: No landmarks nearby; \nA_1: \n"
            ),
            "{first}"
        );
        let positions = env.rail().len();
        let mut calls = 0;
        loop {
            let v = env.step(&expert(&env));
            metrics.record_call(&v);
            calls += 1;
            assert_eq!(v.reward, 1.0);
            assert_eq!(v.message, "Correct action.");
            if v.done() {
                assert!(v.terminated && !v.truncated);
                break;
            }
            // After a move the conversation restarts as one fresh prompt holding the history.
            let t = env.transcript();
            assert_eq!(t.turns.len(), 1);
            assert!(
                t.turns[0].text.contains(&format!("O_{calls}: "))
                    && t.turns[0].text.contains(&format!("A_{}: \n", calls + 1))
            );
            assert!(t.image.is_none());
        }
        assert_eq!(calls, positions);
        assert!(env.success());
        metrics.record_episode(env.success());
    }
    assert_eq!(metrics.step_accuracy(), 1.0);
    assert_eq!(metrics.success_rate(), 1.0);
}

#[test]
fn two_failures_then_the_exceed_call_end_the_episode() {
    let mut env = env(NavConfig::default());
    env.reset(3);
    let mut metrics = NavMetrics::default();
    let v = env.step(WRONG);
    metrics.record_call(&v);
    assert_eq!((v.reward, v.done()), (-1.0, false));
    let t = env.transcript();
    assert_eq!(t.turns.len(), 3);
    assert_eq!(
        (t.turns[1].role, t.turns[1].text.as_str()),
        (Role::Assistant, WRONG)
    );
    assert_eq!(
        (t.turns[2].role, t.turns[2].text.as_str()),
        (Role::User, WRONG_ACTION_TURN)
    );
    // "intersection" in the observation of a wrong answer costs -1.5 (the reference's check).
    let v = env.step(WRONG_AT_INTERSECTION);
    metrics.record_call(&v);
    assert_eq!((v.reward, v.done()), (-1.5, false));
    assert!(
        v.message
            .starts_with("you are not at any intersection. Please avoid this observation")
    );
    assert_eq!(env.transcript().turns.len(), 5);
    // The third call at one position is not read: even the right answer gets -1 and ends it.
    let v = env.step(&expert(&env));
    metrics.record_call(&v);
    assert_eq!(
        (v.reward, v.message.as_str()),
        (-1.0, "Exceed maximum verify steps")
    );
    assert!(
        v.truncated && !v.terminated,
        "the start is not the stop position"
    );
    assert!(!env.success());
    assert_eq!(metrics.step_accuracy(), 0.0);
    let after = env.step(&expert(&env));
    assert_eq!(after.reward, 0.0);
    assert!(after.done());
}

#[test]
fn exceeding_at_the_stop_terminates_and_truncates() {
    let mut env = env(NavConfig::default());
    env.reset(4);
    while env.position().unwrap().1.gt_action != "stop()" {
        assert_eq!(env.step(&expert(&env)).reward, 1.0);
    }
    env.step(WRONG);
    env.step(WRONG);
    let v = env.step(&expert(&env));
    assert_eq!(v.reward, -1.0);
    assert!(v.terminated && v.truncated);
    assert!(!env.success());
}

#[test]
fn a_corrected_attempt_succeeds_unless_first_attempts_are_required() {
    for (rule, want) in [
        (SuccessRule::Reference, true),
        (SuccessRule::FirstAttempt, false),
    ] {
        let mut env = env(NavConfig {
            virl_success: rule,
            ..NavConfig::default()
        });
        env.reset(5);
        assert_eq!(env.step(WRONG).reward, -1.0);
        let executed = env.position().unwrap().1.gt_action.clone();
        assert_eq!(env.step(&expert(&env)).reward, 1.0);
        // Only executed actions enter the history; the failed attempt is gone.
        let prompt = &env.transcript().turns[0].text;
        assert!(
            prompt.contains(&format!("A_1: {executed}\nO_2: ")),
            "{prompt}"
        );
        assert!(!prompt.contains("turn_direction(up)"));
        while !env.step(&expert(&env)).done() {}
        assert_eq!(env.success(), want, "{rule:?}");
    }
}

#[test]
fn the_relative_rule_asks_for_turn_words() {
    let mut env = env(NavConfig {
        absolute_action: false,
        ..NavConfig::default()
    });
    let prompt = env.reset(0).turns[0].text.clone();
    assert!(
        prompt.contains(
            "x could be any following ['left', 'right', 'slightly left', 'slightly right']"
        )
    );
    let turns: Vec<&str> = env
        .rail()
        .iter()
        .filter(|p| p.gt_action.starts_with("turn_direction"))
        .map(|p| p.gt_action.as_str())
        .collect();
    assert!(!turns.is_empty());
    for t in turns {
        assert!(
            [
                "turn_direction(left)",
                "turn_direction(right)",
                "turn_direction(slightly left)",
                "turn_direction(slightly right)"
            ]
            .contains(&t),
            "{t}"
        );
    }
    while !env.step(&expert(&env)).done() {}
    assert!(env.success());
}

#[test]
fn episodes_are_determined_by_their_seed() {
    let (mut a, mut b) = (env(NavConfig::default()), env(NavConfig::default()));
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..8 {
        let ta = a.reset(seed).turns[0].text.clone();
        assert_eq!(ta, b.reset(seed).turns[0].text);
        assert_eq!(a.rail(), b.rail());
        distinct.insert((ta, a.rail().len()));
    }
    assert!(
        distinct.len() > 3,
        "routes, headings and dropped points should vary with the seed"
    );
    // Ordered evaluation picks the route by index.
    assert_eq!(a.try_reset_route(1, 0).unwrap().turns.len(), 1);
    assert_eq!(a.route().unwrap().index, 1);
    assert!(
        matches!(a.try_reset_route(2, 0), Err(NavError::Invalid(m)) if m.contains("out of range"))
    );
}

#[test]
fn expert_examples_are_accepted_prompts_and_answers() {
    let examples: Vec<_> = expert_examples(&routes(), false, 40, 9, &NavConfig::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(examples.len(), 40);
    for ex in &examples {
        assert!(
            ex.prompt
                .starts_with("\n[Task Description]\nYou are an expert in navigation.")
        );
        assert!(
            ex.response
                .starts_with("\n{\n  \"current observation\": \"")
        );
        assert!(ex.response.contains(&format!(
            "\"action\": \"{}\",\n}}\n",
            ex.meta["gt_action"].as_str().unwrap()
        )));
        assert!(ex.image.is_none());
    }
    assert!(examples.iter().any(|e| e.meta["gt_action"] == "stop()"));
    let again: Vec<_> = expert_examples(&routes(), false, 40, 9, &NavConfig::default())
        .unwrap()
        .map(|e| e.unwrap().prompt)
        .collect();
    assert_eq!(
        again,
        examples
            .iter()
            .map(|e| e.prompt.clone())
            .collect::<Vec<_>>()
    );
}

fn compact(absolute_action: bool) -> NavConfig {
    NavConfig {
        absolute_action,
        prompt_layout: PromptLayout::Compact,
        ..NavConfig::default()
    }
}

#[test]
fn compact_prompts_hold_the_instruction_the_turn_words_and_the_history() {
    for (absolute, turns) in [
        (
            true,
            "Turns: north, northeast, east, southeast, south, southwest, west, northwest\n",
        ),
        (false, "Turns: left, right, slightly left, slightly right\n"),
    ] {
        let mut env = env(compact(absolute));
        for seed in 0..4 {
            let first = env.reset(seed).turns[0].text.clone();
            let instruction = env.instruction().unwrap().text.clone();
            assert_eq!(
                first,
                format!("Instruction:\n{instruction}{turns}O_1: No landmarks nearby; \nA_1: \n")
            );
            let mut calls = 0;
            loop {
                let (_, p) = env.position().unwrap();
                let (action, obs) = (p.gt_action.clone(), p.oracle_observation());
                let v = env.step(&compact_expert_response(&action));
                assert_eq!((v.reward, v.message.as_str()), (1.0, "Correct action."));
                calls += 1;
                if v.done() {
                    break;
                }
                // The fresh prompt carries the executed action and the new observation.
                let prompt = &env.transcript().turns[0].text;
                let n = calls + 1;
                let next = env.position().unwrap().1.oracle_observation();
                assert!(
                    prompt.starts_with(&format!("Instruction:\n{instruction}{turns}"))
                        && prompt.contains(&format!("O_{calls}: {obs}\nA_{calls}: {action}\n"))
                        && prompt.ends_with(&format!("O_{n}: {next}\nA_{n}: \n")),
                    "{prompt}"
                );
                assert!(!prompt.contains("[Task Description]") && !prompt.contains("[Output]"));
            }
            assert_eq!(calls, env.rail().len());
            assert!(env.success());
        }
        // A wrong action gets the reference's feedback turn.
        env.reset(0);
        assert_eq!(env.step(WRONG).reward, -1.0);
        assert_eq!(env.transcript().turns[2].text, WRONG_ACTION_TURN);
    }
}

#[test]
fn compact_expert_examples_are_one_line_actions() {
    for absolute in [true, false] {
        let examples: Vec<_> = expert_examples(&routes(), false, 30, 3, &compact(absolute))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for ex in &examples {
            assert!(ex.prompt.starts_with("Instruction:\n"), "{}", ex.prompt);
            let action = ex.meta["gt_action"].as_str().unwrap();
            assert_eq!(ex.response, format!("{{\"action\": \"{action}\"}}"));
        }
        assert!(examples.iter().any(|e| e.meta["gt_action"] == "stop()"));
        let turn_word = if absolute { "(north" } else { "(slightly " };
        assert!(
            examples
                .iter()
                .any(|e| e.response.contains("turn_direction") && e.prompt.contains(turn_word)),
        );
    }
}

/// Styled expert data plays the same episodes: every answer opens with route reasoning (and is
/// still accepted: the stream checks each one), and the prompts take each of the wordings.
#[test]
fn styled_expert_examples_reason_and_vary_their_wording() {
    for config in [NavConfig::default(), compact(true)] {
        let plain: Vec<_> = expert_examples(&routes(), false, 40, 9, &config)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let style = NavStyle {
            chain_of_thought: true,
            prompt_variants: 4,
        };
        let styled: Vec<_> = expert_examples(&routes(), false, 40, 9, &config)
            .unwrap()
            .styled(style)
            .collect::<Result<_, _>>()
            .unwrap();
        let mut wordings = std::collections::BTreeSet::new();
        for (p, s) in plain.iter().zip(&styled) {
            assert_eq!(p.meta["gt_action"], s.meta["gt_action"]);
            assert!(s.response.contains("\"thought\": \""), "{}", s.response);
            assert!(s.response.contains("; sentence "), "{}", s.response);
            assert!(
                s.response
                    .ends_with(&p.response[p.response.find('{').unwrap() + 1..])
            );
            let variant = s.meta["prompt_variant"].as_u64().unwrap();
            assert_eq!(variant == 0, s.prompt == p.prompt, "{variant}");
            wordings.insert(variant);
        }
        assert_eq!(wordings.len(), 4, "{wordings:?}");
    }
}

/// Word-level pieces (` ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]|\s`, one token each) of the prompt and
/// answer at every position of one expert episode, summed.
fn episode_tokens(config: NavConfig, seed: u64) -> (usize, usize, usize) {
    let re = regex::Regex::new(r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]|\s").unwrap();
    let count = |t: &str| re.find_iter(t).count();
    let layout = config.prompt_layout;
    let mut env = env(config);
    env.reset(seed);
    let (mut prompt, mut answer, mut positions) = (0, 0, 0);
    loop {
        let (_, p) = env.position().unwrap();
        let a = sftvsrl_envs::nav::prompt::expert_response_in(
            layout,
            &p.oracle_observation(),
            &p.instruction,
            &p.gt_action,
        );
        prompt += count(&env.transcript().turns[0].text);
        answer += count(&a);
        positions += 1;
        let v = env.step(&a);
        assert_eq!(v.reward, 1.0);
        if v.done() {
            return (prompt, answer, positions);
        }
    }
}

#[test]
fn compact_layout_needs_a_fraction_of_the_tokens() {
    for absolute in [true, false] {
        let reference = episode_tokens(
            NavConfig {
                absolute_action: absolute,
                ..NavConfig::default()
            },
            2,
        );
        let small = episode_tokens(compact(absolute), 2);
        assert_eq!(reference.2, small.2, "the same episode");
        let n = reference.2;
        println!(
            "absolute {absolute}: {n} positions; per position, reference prompt {} + answer {}, compact prompt {} + answer {}",
            reference.0 / n,
            reference.1 / n,
            small.0 / n,
            small.1 / n
        );
        assert!(2 * (small.0 + small.1) < reference.0 + reference.1);
    }
}

/// A scratch copy of the fixture folder, for breaking.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nav-episode-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["route_infos.json", "gps_pano_mapping.pkl"] {
        std::fs::copy(routes().join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn bad_route_folders_give_errors_naming_file_route_and_field() {
    let open =
        |dir: &Path, config: NavConfig| Navigation::open(dir, config).err().unwrap().to_string();

    let dir = scratch("json");
    std::fs::write(dir.join("route_infos.json"), "[[{").unwrap();
    assert!(open(&dir, NavConfig::default()).contains("route_infos.json: invalid JSON"));

    let dir = scratch("field");
    let text = std::fs::read_to_string(dir.join("route_infos.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0][1]["route_results"]["geocode_list"][0] = serde_json::json!([95.0, 0.0]);
    std::fs::write(dir.join("route_infos.json"), v.to_string()).unwrap();
    let msg = open(&dir, NavConfig::default());
    assert!(
        msg.contains("route 1 (")
            && msg.contains(
                "field `route_results.geocode_list[0]`: coordinates (95, 0) are out of range"
            ),
        "{msg}"
    );

    let dir = scratch("pickle");
    std::fs::write(dir.join("gps_pano_mapping.pkl"), b"\x80\x04garbage").unwrap();
    let msg = open(&dir, NavConfig::default());
    assert!(
        msg.contains("gps_pano_mapping.pkl: byte 2: unsupported pickle opcode 0x67 (GET)"),
        "{msg}"
    );

    let dir = scratch("nomap");
    std::fs::remove_file(dir.join("gps_pano_mapping.pkl")).unwrap();
    assert!(open(&dir, NavConfig::default()).contains("gps_pano_mapping.pkl: No such file"));
    // Without relocation the text task needs no mapping.
    assert!(
        Navigation::open(
            &dir,
            NavConfig {
                relocation: false,
                ..NavConfig::default()
            }
        )
        .is_ok()
    );

    let dir = scratch("far");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0][0]["start_place"]["relocated_geocode"] = serde_json::json!([40.0, -74.0]);
    std::fs::write(dir.join("route_infos.json"), v.to_string()).unwrap();
    let msg = open(&dir, NavConfig::default());
    assert!(
        msg.contains("route 0 (")
            && msg.contains(
                "start (start_place.relocated_geocode) (40, -74) has no mapped panorama within 20 m"
            ),
        "{msg}"
    );

    // Vision needs every reachable panorama; this folder has none.
    let msg = open(
        &scratch("views"),
        NavConfig {
            vision: true,
            ..NavConfig::default()
        },
    );
    assert!(
        msg.contains("cannot read the metadata") && msg.contains("(needed by route "),
        "{msg}"
    );
}

#[test]
fn route_range_draws_episodes_from_its_routes_only() {
    let total = Navigation::open(&routes(), NavConfig::default())
        .unwrap()
        .data()
        .routes
        .len();
    assert!(total >= 2, "the fixture holds {total} routes");
    let mut e = env(NavConfig {
        route_range: Some([1, 2]),
        ..NavConfig::default()
    });
    for seed in 0..20 {
        e.try_reset(seed).unwrap();
        assert_eq!(e.route().unwrap().index, 1, "seed {seed}");
    }
    let past_end = Navigation::open(
        &routes(),
        NavConfig {
            route_range: Some([0, total + 1]),
            ..NavConfig::default()
        },
    );
    assert!(
        matches!(&past_end, Err(NavError::Invalid(m)) if m.contains("route_range")),
        "{:?}",
        past_end.err()
    );
    let empty = NavConfig {
        route_range: Some([2, 2]),
        ..NavConfig::default()
    };
    assert!(empty.validate().unwrap_err().contains("route_range"));
}

#[test]
fn turn_words_rename_the_rules_turns_in_prompts_answers_and_grading() {
    let port = ["port", "starboard", "slightly port", "slightly starboard"].map(String::from);
    for layout in [PromptLayout::Reference, PromptLayout::Compact] {
        let config = NavConfig {
            absolute_action: false,
            prompt_layout: layout,
            turn_words: Some(port.to_vec()),
            ..NavConfig::default()
        };
        let mut own = env(NavConfig {
            absolute_action: false,
            prompt_layout: layout,
            ..NavConfig::default()
        });
        let mut renamed = env(config);
        for seed in 0..4 {
            own.reset(seed);
            let prompt = renamed.reset(seed).turns[0].text.clone();
            let listed = match layout {
                PromptLayout::Compact => {
                    "Turns: port, starboard, slightly port, slightly starboard"
                }
                PromptLayout::Reference => {
                    "['port', 'starboard', 'slightly port', 'slightly starboard']"
                }
            };
            assert!(prompt.contains(listed), "{prompt}");
            assert!(
                !prompt.contains("'left'") && !prompt.contains("Turns: left"),
                "{prompt}"
            );
            // The same rail, with each relative word replaced by its counterpart.
            let expected: Vec<String> = own
                .rail()
                .iter()
                .map(|p| {
                    p.gt_action
                        .replace("(left)", "(port)")
                        .replace("(right)", "(starboard)")
                        .replace("slightly left", "slightly port")
                        .replace("slightly right", "slightly starboard")
                })
                .collect();
            let got: Vec<&str> = renamed
                .rail()
                .iter()
                .map(|p| p.gt_action.as_str())
                .collect();
            assert_eq!(got, expected);
            // The rule's own word is now wrong; the renamed one is right.
            let first = renamed.rail()[0].gt_action.clone();
            let own_word = own.rail()[0].gt_action.clone();
            assert_ne!(first, own_word);
            let wrong = renamed.step(&compact_expert_response(&own_word));
            assert!(wrong.reward < 0.0);
            assert_eq!(renamed.step(&compact_expert_response(&first)).reward, 1.0);
        }
    }
    let bad = |words: &[&str], absolute_action: bool| {
        NavConfig {
            absolute_action,
            turn_words: Some(words.iter().map(|w| w.to_string()).collect()),
            ..NavConfig::default()
        }
        .validate()
        .unwrap_err()
    };
    assert!(bad(&["a", "b", "c", "d"], true).contains("8"));
    assert!(bad(&["a", "b", "c", "c"], false).contains("differ"));
    assert!(bad(&["a", "b)", "c", "d"], false).contains("turn_words"));
}
