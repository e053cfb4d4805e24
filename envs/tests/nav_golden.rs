//! Golden vectors from the reference's own Python (LeslieTrue/SFTvsRL at 5a6ea55): rails with and
//! without relocation, instructions, prompts and verifier grades, on routes of a synthetic city
//! whose mapping Python pickled (see `fixtures/nav/README.md`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use sftvsrl_envs::Rng;
use sftvsrl_envs::nav::config::{ObsPenalty, PromptText};
use sftvsrl_envs::nav::instruction::build_instruction;
use sftvsrl_envs::nav::panomap::PanoMap;
use sftvsrl_envs::nav::pickle::read_mapping;
use sftvsrl_envs::nav::prompt::{action_space, expert_response, obs_act_sequence, task_prompt};
use sftvsrl_envs::nav::rail::{RailParams, build_rail};
use sftvsrl_envs::nav::route::load_routes;
use sftvsrl_envs::nav::verify::step_rewards_virl;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nav")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(fixtures().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn rails_and_instructions_match_the_reference() {
    let routes = load_routes(&fixtures().join("routes/route_infos.json")).unwrap();
    let map = PanoMap::load(&fixtures().join("routes/gps_pano_mapping.pkl")).unwrap();
    let golden = golden();
    let cases = golden["rails"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let route = &routes[case["route"].as_u64().unwrap() as usize];
        let heading = case["init_heading"].as_f64().unwrap();
        let absolute = case["absolute"].as_bool().unwrap();
        let relocation = case["relocation"].as_bool().unwrap();
        let ins = build_instruction(&route.milestones, heading, false);
        assert_eq!(ins.text, case["instruction"].as_str().unwrap());
        // drop_rate 0: the reference draws nothing that matters, so the rails are comparable.
        let params = RailParams {
            drop_rate: 0.0,
            straight_line_length: 5,
            absolute_action: absolute,
        };
        let rail = build_rail(
            route,
            &ins,
            heading,
            relocation.then_some(&map),
            &params,
            &mut Rng::new(1),
        )
        .unwrap();
        let want = case["rail"].as_array().unwrap();
        let label = format!(
            "route {} heading {heading} absolute {absolute} relocation {relocation}",
            route.index
        );
        assert_eq!(rail.len(), want.len(), "{label}");
        for (k, (got, want)) in rail.iter().zip(want).enumerate() {
            let g = &want["geocode"];
            assert_eq!(
                [got.geocode.lat, got.geocode.lng],
                [g[0].as_f64().unwrap(), g[1].as_f64().unwrap()],
                "{label} point {k}"
            );
            assert_eq!(
                got.heading,
                want["heading"].as_f64().unwrap(),
                "{label} point {k}"
            );
            assert_eq!(
                got.gt_action,
                want["gt_action"].as_str().unwrap(),
                "{label} point {k}"
            );
            assert_eq!(
                got.observation,
                want["observation"].as_str().unwrap(),
                "{label} point {k}"
            );
            assert_eq!(
                got.intersection,
                want["intersection"].as_bool().unwrap(),
                "{label} point {k}"
            );
            assert_eq!(
                got.instruction,
                want["instruction"].as_str().unwrap(),
                "{label} point {k}"
            );
            assert_eq!(
                got.instruction_idx as u64,
                want["instruction_idx"].as_u64().unwrap(),
                "{label} point {k}"
            );
        }
    }
}

#[test]
fn prompts_are_byte_exact() {
    let golden = golden();
    let p = &golden["prompts"];
    let strings = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (actions, observations) = (strings(&p["actions"]), strings(&p["observations"]));
    let instruction = golden["rails"][0]["instruction"].as_str().unwrap();
    let prompt = |vision, absolute, actions: &[String], observations: &[String]| {
        let seq = obs_act_sequence(actions, observations, vision);
        task_prompt(
            vision,
            PromptText::Reference,
            false,
            instruction,
            action_space(absolute),
            &seq,
        )
    };
    assert_eq!(
        prompt(false, true, &actions, &observations),
        p["language"].as_str().unwrap()
    );
    assert_eq!(
        prompt(true, true, &actions, &observations),
        p["vision"].as_str().unwrap()
    );
    assert_eq!(
        prompt(true, false, &actions, &observations),
        p["vision_relative"].as_str().unwrap()
    );
    assert_eq!(
        prompt(false, true, &[], &observations[..1]),
        p["first_language"].as_str().unwrap()
    );
    assert_eq!(
        expert_response("OBS", "INS", "ACT"),
        p["response_template"].as_str().unwrap()
    );
    // The API-model variants end with one more sentence; the cleaned text fixes the typo.
    let seq = obs_act_sequence(&actions, &observations, true);
    let eg = task_prompt(
        true,
        PromptText::Reference,
        true,
        instruction,
        action_space(true),
        &seq,
    );
    assert_eq!(
        eg,
        format!(
            "{}\nPlease only output the json.\n",
            p["vision"].as_str().unwrap()
        )
    );
    let cleaned = task_prompt(
        true,
        PromptText::Cleaned,
        false,
        instruction,
        action_space(true),
        &seq,
    );
    assert_eq!(
        cleaned,
        p["vision"]
            .as_str()
            .unwrap()
            .replace("stree tviews", "street views")
    );
}

#[test]
fn verifier_matches_the_reference() {
    let golden = golden();
    let cases = golden["verifier"].as_array().unwrap();
    assert_eq!(cases.len(), 64);
    for c in cases {
        let s = |k: &str| c[k].as_str().unwrap();
        let grade = step_rewards_virl(
            s("response"),
            s("gt_action"),
            s("gt_obs"),
            ObsPenalty::IntersectionMention,
            PromptText::Reference,
        );
        assert_eq!(
            grade.reward,
            c["reward"].as_f64().unwrap(),
            "{:?} vs {}",
            s("response"),
            s("gt_action")
        );
        assert_eq!(grade.message, s("message"), "{:?}", s("response"));
    }
}

#[test]
fn reads_python_pickles_of_every_protocol() {
    let want = vec![
        ((1.5, 2.25), "a".to_string()),
        ((-3.0, 4.0), "shared_pano_id".into()),
        ((5.0, 6.0), "shared_pano_id".into()),
    ];
    for name in ["mapping_protocol2.pkl", "mapping_protocol5.pkl"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        assert_eq!(read_mapping(&bytes).unwrap(), want, "{name}");
    }
    // Python's protocol 4, 21 entries.
    assert_eq!(
        PanoMap::load(&fixtures().join("routes/gps_pano_mapping.pkl"))
            .unwrap()
            .len(),
        21
    );
}
