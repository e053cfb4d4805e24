//! Checks against the real SmolLM2-135M-Instruct (Q4_1 GGUF with its tokenizer), fetched by
//! `scripts/fetch_smollm2.sh` into `assets/`. Ignored by default (the file is 98 MB and not in
//! git); run with `cargo test -p sftvsrl-model -- --ignored smollm2`. Without the file they fail
//! with a message saying how to fetch it, rather than passing silently.

use std::path::{Path, PathBuf};

use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde_json::Value;
use sftvsrl_envs::{Role, Turn};
use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::{GenerateConfig, Pretrained, Sampling, generate, load_pretrained};

type B = CpuBackend;

fn gguf_path() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch_smollm2.sh first",
        path.display()
    );
    path
}

fn load() -> Pretrained<B> {
    load_pretrained::<B>(&gguf_path(), &Default::default()).unwrap()
}

/// Prompts with their token ids and top-1 next tokens under transformers (smollm2_top1.json).
fn cases() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_top1.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn turns(case: &Value) -> Vec<Turn> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Turn {
            role: if m["role"] == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            text: m["content"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
#[ignore = "needs assets/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch_smollm2.sh)"]
fn smollm2_gguf_tokenizer_and_chat_template_match_transformers() {
    let pretrained = load();
    let tok = pretrained.tokenizer.as_ref().unwrap();
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert!(pretrained.stop_tokens.contains(&2));
    for case in cases() {
        let text = case["text"].as_str().unwrap();
        if case["kind"] == "chat" {
            assert_eq!(tok.chat_template().render(None, &turns(&case), true), text);
        }
        assert_eq!(
            tok.encode(text, false).unwrap(),
            ids(&case["ids"]),
            "{text:?}"
        );
        assert_eq!(tok.decode(&ids(&case["ids"]), false).unwrap(), text);
    }
}

#[test]
#[ignore = "needs assets/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch_smollm2.sh)"]
fn smollm2_gguf_top1_next_tokens_match_transformers() {
    let pretrained = load();
    let device = Default::default();
    for case in cases() {
        let prompt = ids(&case["ids"]);
        let n = prompt.len();
        let input = Tensor::<B, 2, Int>::from_data(
            TensorData::new(prompt.iter().map(|&t| t as i64).collect(), [1, n]),
            &device,
        );
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(vec![true; n], [1, n]), &device);
        let logits = pretrained.model.forward(input, mask);
        let vocab = logits.dims()[2];
        let last: Vec<f32> = logits
            .slice([0..1, n - 1..n, 0..vocab])
            .into_data()
            .to_vec()
            .unwrap();
        let (top, top_logit) =
            last.iter().enumerate().fold(
                (0, f32::MIN),
                |best, (i, &x)| if x > best.1 { (i, x) } else { best },
            );
        let want = ids(&case["top5"])[0] as usize;
        let want_logit = case["top1_logit"].as_f64().unwrap() as f32;
        println!(
            "{:?}: top-1 {top} ({top_logit:.3}), transformers {want} ({want_logit:.3})",
            case["text"]
        );
        assert_eq!(top, want, "{:?}", case["text"]);
        assert!(
            (top_logit - want_logit).abs() < 1e-2,
            "logit {top_logit} vs {want_logit}"
        );
    }
}

#[test]
#[ignore = "needs assets/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch_smollm2.sh)"]
fn smollm2_gguf_answers_in_english() {
    let pretrained = load();
    let tok = pretrained.tokenizer.as_ref().unwrap();
    let question = [Turn {
        role: Role::User,
        text: "What is the capital of France?".into(),
    }];
    let prompt = tok.encode_chat(None, &question).unwrap();
    let config = GenerateConfig {
        max_new_tokens: 24,
        sampling: Sampling::GREEDY,
        stop_tokens: pretrained.stop_tokens.clone(),
        seed: 0,
        pad_to_multiple_of: None,
    };
    let out = generate(&pretrained.model, &[prompt], &config, &Default::default()).unwrap();
    let answer = tok.decode(&out.sequences[0].tokens, true).unwrap();
    println!("answer: {answer}");
    assert!(answer.contains("Paris"), "{answer}");
}
