//! Golden tests against the reference stack (PyTorch + transformers): tiny random Llama and
//! Qwen2 checkpoints made by `scripts/make_model_fixtures.py` must give the same logits (1e-4)
//! and the same greedy generations, token for token, on every backend.

use std::path::{Path, PathBuf};

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use serde_json::Value;
use sftvsrl_model::device::{CpuBackend, NdArrayBackend};
use sftvsrl_model::{
    FinishReason, GenerateConfig, Llama, Sampling, generate, load_pretrained, save_pretrained,
};

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expected_logits(name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixture(name).join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, t.shape().to_vec())
}

fn int_rows(v: &Value) -> Vec<Vec<i64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        })
        .collect()
}

fn ids_tensor<B: Backend>(rows: &[Vec<i64>], device: &B::Device) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_data(TensorData::new(rows.concat(), shape), device)
}

fn mask_tensor<B: Backend>(rows: &[Vec<i64>], device: &B::Device) -> Tensor<B, 2, Bool> {
    let shape = [rows.len(), rows[0].len()];
    let values: Vec<bool> = rows.concat().iter().map(|&m| m == 1).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The largest difference between our logits and the reference's over the real positions.
fn logits_error<B: Backend>(model: &Llama<B>, name: &str, device: &B::Device) -> f32 {
    let e = expected(name);
    let ids = int_rows(&e["input_ids"]);
    let mask = int_rows(&e["attention_mask"]);
    let logits = model.forward(ids_tensor(&ids, device), mask_tensor(&mask, device));
    let (want, shape) = expected_logits(name);
    assert_eq!(logits.dims().to_vec(), shape);
    let got: Vec<f32> = logits.into_data().convert::<f32>().to_vec().unwrap();
    let vocab = shape[2];
    let mut worst = 0.0f32;
    for (pos, m) in mask.concat().iter().enumerate() {
        if *m == 1 {
            let range = pos * vocab..(pos + 1) * vocab;
            for (a, b) in got[range.clone()].iter().zip(&want[range]) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    worst
}

/// Logits and greedy generations of fixture `name` on backend `B`.
fn check_fixture<B: Backend>(name: &str, device: &B::Device) {
    let pretrained = load_pretrained::<B>(&fixture(name), device).unwrap();
    let model = &pretrained.model;
    let worst = logits_error(model, name, device);
    assert!(worst < TOLERANCE, "{name}: logits differ by {worst}");

    let e = expected(name);
    let stop = e["stop_token"].as_u64().unwrap() as u32;
    assert_eq!(pretrained.stop_tokens, vec![stop]);
    let greedy = e["greedy"].as_array().unwrap();
    let prompts: Vec<Vec<u32>> = greedy
        .iter()
        .map(|g| {
            g["prompt"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let config = GenerateConfig {
        max_new_tokens: e["max_new_tokens"].as_u64().unwrap() as usize,
        sampling: Sampling::GREEDY,
        stop_tokens: pretrained.stop_tokens.clone(),
        seed: 0,
        pad_to_multiple_of: None,
    };
    let out = generate(model, &prompts, &config, device).unwrap();
    for (got, want) in out.sequences.iter().zip(greedy) {
        let tokens: Vec<u32> = want["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(got.tokens, tokens, "{name}: greedy tokens");
        let finish = if tokens.last() == Some(&stop) {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        assert_eq!(got.finish, finish);
        for (a, b) in got
            .logprobs
            .iter()
            .zip(want["logprobs"].as_array().unwrap())
        {
            let b = b.as_f64().unwrap() as f32;
            assert!((a - b).abs() < TOLERANCE, "{name}: log-prob {a} vs {b}");
        }
    }
    assert_eq!(
        out.prompt_hidden.dims(),
        [prompts.len(), model.config().hidden_size]
    );
}

#[test]
fn tiny_llama_matches_transformers_on_flex() {
    check_fixture::<CpuBackend>("tiny_llama", &Default::default());
}

#[test]
fn tiny_llama_matches_transformers_on_ndarray() {
    check_fixture::<NdArrayBackend>("tiny_llama", &Default::default());
}

#[test]
fn tiny_qwen2_matches_transformers_on_flex() {
    check_fixture::<CpuBackend>("tiny_qwen2", &Default::default());
}

#[test]
fn tiny_qwen2_matches_transformers_on_ndarray() {
    check_fixture::<NdArrayBackend>("tiny_qwen2", &Default::default());
}

#[cfg(feature = "wgpu")]
#[test]
fn tiny_fixtures_match_transformers_on_wgpu() {
    let device = Default::default();
    check_fixture::<sftvsrl_model::device::WgpuBackend>("tiny_llama", &device);
    check_fixture::<sftvsrl_model::device::WgpuBackend>("tiny_qwen2", &device);
}

#[test]
fn export_round_trips_through_hf_layout() {
    type B = CpuBackend;
    let device = Default::default();
    for name in ["tiny_llama", "tiny_qwen2"] {
        let original = load_pretrained::<B>(&fixture(name), &device).unwrap();
        let dir =
            std::env::temp_dir().join(format!("sftvsrl-export-{name}-{}", std::process::id()));
        let written = save_pretrained(&original.model, None, &original.stop_tokens, &dir).unwrap();
        assert!(written.iter().all(|p| p.exists()));
        let back = load_pretrained::<B>(&dir, &device).unwrap();
        assert_eq!(back.model.config(), original.model.config());
        assert_eq!(back.stop_tokens, original.stop_tokens);
        let worst = logits_error(&back.model, name, &device);
        assert!(
            worst < TOLERANCE,
            "{name}: exported logits differ by {worst}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
