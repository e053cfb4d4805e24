//! SFT on several devices ([`run_sft_on`]): each optimizer step's micro-batches are spread over
//! the devices through burn-train's multi-device train step and their gradients summed on the
//! first, so the run ends with the weights of a single-device run over the same global batch.
//! The CPU backend has one device: two handles to it still take the multi-device path (worker
//! threads, gradients brought to the main device, summed in micro-batch order).

mod common;

use std::path::Path;

use burn::backend::Autodiff;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_training::{RunConfig, SftConfig, run_sft, run_sft_on};

type A = Autodiff<CpuBackend>;

/// 22 training examples, global batch 12 in micro-batches of 4: the second step of each epoch
/// has micro-batches of 4, 4 and 2, so two devices see an uneven last round.
fn config(dir: &Path, name: &str) -> SftConfig {
    let words = ["zero", "one", "two", "three", "four", "five", "six"];
    let mut text = String::new();
    for i in 0..24 {
        let (a, b) = (i % 4, i / 4 % 3);
        text.push_str(&format!(
            r#"{{"messages":[{{"role":"user","content":"what is {} plus {}"}},{{"role":"assistant","content":"{}"}}]}}"#,
            words[a],
            words[b],
            words[a + b]
        ));
        text.push('\n');
    }
    let data = dir.join("data.jsonl");
    std::fs::write(&data, text).unwrap();
    let toml = format!(
        r#"
name = "{name}"
runs_dir = "{runs}"
seed = 5
[data]
path = "{data}"
valid_fraction = 0.1
[model]
init = "scratch"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[train]
epochs = 2
micro_batch = 4
grad_accum = 3
lr = 1e-2
max_grad_norm = 1.0
checkpoint_every = 2
export_checkpoints = true
"#,
        runs = dir.join("runs").display(),
        data = data.display(),
    );
    SftConfig::from_toml(&toml, Path::new("test.toml")).unwrap()
}

/// The exported weights of a finished run, tensor by tensor, as f32 values.
fn weights(final_dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(final_dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn two_devices_match_one_over_the_same_global_batch() {
    let dir = common::scratch("sft-multi-device");
    let device = Default::default();
    let mut quiet = |_: &str| {};
    let single = run_sft::<A>(&config(&dir, "single"), false, &device, &mut quiet).unwrap();
    let mut lines = Vec::new();
    let multi = run_sft_on::<A>(
        &config(&dir, "multi"),
        false,
        &[device, device],
        &mut |line: &str| lines.push(line.to_string()),
    )
    .unwrap();
    assert!(lines[0].contains("on 2 devices"), "{}", lines[0]);
    assert_eq!(multi.progress, single.progress);
    assert_eq!(single.progress.step, 4);

    let (a, b) = (weights(&single.final_dir), weights(&multi.final_dir));
    let start = weights(&multi.run_dir.join("checkpoints/step-000002/hf"));
    assert_eq!(a.len(), b.len());
    let mut largest = 0f32;
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        assert_eq!(x.len(), y.len(), "{name}");
        for (p, q) in x.iter().zip(y) {
            largest = largest.max((p - q).abs());
        }
    }
    assert!(largest <= 1e-5, "largest weight difference {largest}");
    // The runs trained: the final weights moved away from those of step 2.
    assert!(start.iter().zip(&a).any(|((_, s), (_, x))| s != x));
    let _ = std::fs::remove_dir_all(&dir);
}
