//! SFT of a from-scratch vision-language model (CPU backend): the answer can only be read off
//! the image, so a falling loss and right answers on held-out examples mean the images reach
//! the model; the exported checkpoint reloads to the same function; a language model refuses
//! the same data, naming the field.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use image::{Rgb, RgbImage};
use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::{Backbone, LanguageModel, load_backbone};
use sftvsrl_training::data::tokenize_all;
use sftvsrl_training::run::validate;
use sftvsrl_training::{RunConfig, SftBatch, SftConfig, read_chat_jsonl, run_sft};

type A = Autodiff<CpuBackend>;

const COLOURS: [(&str, [u8; 3]); 3] = [
    ("red", [220, 30, 30]),
    ("green", [30, 200, 40]),
    ("blue", [30, 40, 220]),
];

/// 60 examples asking for the colour of a card drawn on a grey 16×16 image: the same question
/// every time, the answer only in the pixels. The card's place varies.
fn write_data(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut text = String::new();
    for i in 0..60usize {
        let (name, rgb) = COLOURS[i % 3];
        let (x0, y0) = (i / 3 % 4, i / 12 % 4);
        let image = RgbImage::from_fn(16, 16, |x, y| {
            let inside = (x0 as u32..x0 as u32 + 12).contains(&x)
                && (y0 as u32..y0 as u32 + 12).contains(&y);
            if inside { Rgb(rgb) } else { Rgb([128; 3]) }
        });
        let rel = format!("images/{i:03}.png");
        image.save(dir.join(&rel)).unwrap();
        text.push_str(&format!(
            r#"{{"messages":[{{"role":"user","content":"what colour is the card"}},{{"role":"assistant","content":"{name}"}}],"image":"{rel}","meta":{{"i":{i}}}}}"#
        ));
        text.push('\n');
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// The run's config; `vision` is the `[model.vision]` section (empty: a language model).
fn config(dir: &Path, data: &Path, vision: &str) -> SftConfig {
    let text = format!(
        r#"
name = "vl"
runs_dir = "{runs}"
seed = 1
[data]
path = "{data}"
valid_fraction = 0.2
[model]
init = "scratch"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
{vision}
[train]
epochs = 24
micro_batch = 8
lr = 3e-3
lr_schedule = "cosine"
warmup_ratio = 0.05
log_every = 6
checkpoint_every = 1000
answer_match = 12
"#,
        runs = dir.join("runs").display(),
        data = data.display(),
    );
    SftConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

const VISION: &str = "[model.vision]
image_size = 16
patch_size = 4
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
projector_merge = 2";

#[test]
fn a_vision_language_model_learns_what_only_the_image_shows() {
    let dir = common::scratch("vl-sft");
    let data = write_data(&dir);
    let config = config(&dir, &data, VISION);
    let summary = run_sft::<A>(&config, false, &Default::default(), &mut |_: &str| {}).unwrap();

    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(summary.run_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let train: Vec<f64> = lines
        .iter()
        .filter(|v| v["split"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    let (first, last) = (train[0], *train.last().unwrap());
    assert!(last < 0.2 * first, "training loss {first} -> {last}");
    // Held-out images: a text-only guess gets a third of the colours right.
    let valid = summary.valid.expect("a validation split");
    assert_eq!(valid.sequences, 12);
    assert!(valid.exact_match() >= 0.9, "{valid:?}");
    let answer_match = lines
        .iter()
        .rev()
        .find(|v| v["split"] == "valid")
        .and_then(|v| v["answer_match"].as_f64())
        .unwrap();
    assert!(answer_match >= 0.9, "greedy answers right: {answer_match}");

    // The exported model is a vision-language checkpoint that computes the same function.
    let device = Default::default();
    let loaded = load_backbone::<CpuBackend>(&summary.final_dir, &device).unwrap();
    let vlm_config = loaded
        .model
        .vision_config()
        .expect("a VLM checkpoint")
        .clone();
    let processor = loaded.processor.clone().expect("its image processor");
    assert_eq!(processor.size, [16, 16]);
    let tokenizer = loaded.tokenizer.clone().unwrap();
    let examples = read_chat_jsonl(&data).unwrap();
    let sequences = tokenize_all(&tokenizer, &examples, 512, &data, Some(&vlm_config)).unwrap();
    let again = validate(
        &loaded.model,
        Some((&vlm_config, &processor)),
        &sequences,
        8,
        1,
        &device,
    )
    .unwrap();
    assert_eq!(again.sequences, 60);
    assert!(again.exact_match() >= 0.9, "{again:?}");
    check_reload_is_exact(&loaded.model, &summary.final_dir, &sequences[..4], &device);
}

/// Loading `dir` a second time gives the very logits of `model` (pixels and tokens alike).
fn check_reload_is_exact(
    model: &Backbone<CpuBackend>,
    dir: &Path,
    sequences: &[sftvsrl_training::Sequence],
    device: &burn::tensor::Device<CpuBackend>,
) {
    let second = load_backbone::<CpuBackend>(dir, device).unwrap();
    let config = model.vision_config().unwrap();
    let processor = second.processor.as_ref().unwrap();
    let refs: Vec<_> = sequences.iter().collect();
    let batch =
        SftBatch::<CpuBackend>::with_images(&refs, 1, Some((config, processor)), device).unwrap();
    let logits = |m: &Backbone<CpuBackend>| -> Vec<f32> {
        let images = batch.images.as_ref().map(|(p, s)| (p.clone(), s));
        let ids: Tensor<CpuBackend, 2, Int> = batch.input_ids.clone();
        let mask: Tensor<CpuBackend, 2, Bool> = batch.attention_mask.clone();
        m.head(m.hidden_states(ids, mask, images).unwrap())
            .into_data()
            .to_vec()
            .unwrap()
    };
    let (a, b) = (logits(model), logits(&second.model));
    assert_eq!(a, b);
    // The images matter: other pixels, other logits.
    let (pixels, spans) = batch.images.clone().unwrap();
    let [n, c, h, w] = pixels.dims();
    let flat =
        Tensor::<CpuBackend, 4>::from_data(TensorData::zeros::<f32, _>([n, c, h, w]), device);
    let blank = model
        .head(
            model
                .hidden_states(
                    batch.input_ids.clone(),
                    batch.attention_mask.clone(),
                    Some((flat, &spans)),
                )
                .unwrap(),
        )
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(a.iter().zip(&blank).any(|(x, y)| (x - y).abs() > 1e-3));
}

#[test]
fn a_language_model_refuses_image_data_naming_the_field() {
    let dir = common::scratch("vl-sft-text");
    let data = write_data(&dir);
    let config = config(&dir, &data, "");
    let e = run_sft::<A>(&config, false, &Default::default(), &mut |_: &str| {}).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("`image`") && e.contains("language model"), "{e}");
    assert!(e.contains("data.jsonl:1:"), "{e}");
}
