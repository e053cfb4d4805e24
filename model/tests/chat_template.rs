//! The Llama-3.2-Vision chat layout against transformers: a tokenizer saved by transformers with
//! Meta's Llama-3.2-11B-Vision-Instruct chat template (made by `scripts/make_chat_fixture.py`)
//! renders each conversation to the text of transformers' `apply_chat_template`, and encodes it
//! to the same ids as the reference tokenizes that text.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sftvsrl_envs::{Role, Turn};
use sftvsrl_model::{ChatFormat, Tokenizer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama32_chat")
}

fn turns(case: &Value) -> Vec<Turn> {
    case["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Turn {
            role: match t["role"].as_str().unwrap() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => panic!("role {other}"),
            },
            text: t["text"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn llama32_vision_template_matches_transformers() {
    let dir = fixture();
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let loaded = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let template = loaded.chat_template();
    assert_eq!(template.format, ChatFormat::Llama32Vision);
    // Meta's template falls back to this date where `strftime_now` is missing.
    assert_eq!(template.date.as_deref(), Some("26 Jul 2024"));

    let cases = expected["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut tok = loaded.clone();
        tok.set_chat_date(case["date"].as_str().unwrap()).unwrap();
        let system = case["system"].as_str();
        let turns = turns(case);
        let generation = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = tok.chat_template().render(system, &turns, generation);
        assert_eq!(rendered, case["text"].as_str().unwrap(), "{name}");
        if generation {
            let ours = tok.encode_chat(system, &turns).unwrap();
            assert_eq!(ours, ids(&case["ids"]), "{name}");
        }
    }
}
