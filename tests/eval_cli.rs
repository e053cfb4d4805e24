//! `sftvsrl eval` end to end: a tiny trained model is evaluated on both GP-L variants and both
//! V-IRL-L variants, a tiny vision-language model on the three GP-VL variants, and the printed
//! table, `eval.json` and `eval.md` agree; bad configs fail with one line naming the field.

mod common;

use std::path::PathBuf;

use burn::backend::Flex;
use common::{fails, ok};
use sftvsrl_envs::Env;
use sftvsrl_envs::gp::{GeneralPoints, GpConfig, Variant};
use sftvsrl_model::{ImageProcessor, Vlm, VlmConfig, save_vlm, word_level_tokenizer};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sftvsrl-eval-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Trains a one-step model and returns its `final/` folder.
fn tiny_model(dir: &std::path::Path) -> PathBuf {
    let config = dir.join("sft.toml");
    let text = format!(
        "name = \"m\"\nruns_dir = \"{}\"\n[data]\npath = \"{}\"\n[data.generate]\nn = 8\nseed = 0\n\
         [model]\ninit = \"scratch\"\nhidden_size = 16\nintermediate_size = 32\n\
         num_hidden_layers = 1\nnum_attention_heads = 2\nnum_key_value_heads = 1\n\
         [train]\nepochs = 1\nmicro_batch = 8\nlr = 1e-3\ncheckpoint_every = 1\nanswer_match = 0\n",
        dir.join("runs").display(),
        dir.join("data/data.jsonl").display()
    );
    std::fs::write(&config, text).unwrap();
    ok(&["sft", config.to_str().unwrap()], "");
    dir.join("runs/m/final")
}

/// Runs `sftvsrl eval CONFIG --checkpoint MODEL --out OUT`; returns the printed table and
/// `eval.json`.
fn eval_into(
    config: &std::path::Path,
    model: &std::path::Path,
    out: &std::path::Path,
) -> (String, serde_json::Value) {
    let args = [
        "eval",
        config.to_str().unwrap(),
        "--checkpoint",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let table = ok(&args, "");
    let json = std::fs::read_to_string(out.join("eval.json")).unwrap();
    (table, serde_json::from_str(&json).unwrap())
}

#[test]
fn eval_writes_consistent_json_and_table() {
    let dir = scratch("run");
    let model = tiny_model(&dir);
    let config = dir.join("eval.toml");
    std::fs::write(
        &config,
        "episodes = 3\nseed = 7\nverify_iters = [1, 2]\nmax_new_tokens = 8\ntemperature = 0.0\n\
         transcripts = 1\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let (table, json) = eval_into(&config, &model, &out_dir);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "2 variants × 2 verification settings");
    for r in results {
        let (n, k) = (
            r["episodes"].as_u64().unwrap(),
            r["successes"].as_u64().unwrap(),
        );
        assert_eq!(n, 3);
        assert_eq!(r["success_rate"].as_f64().unwrap(), k as f64 / 3.0);
        let row = format!(
            "| {} | {} | 3 | {:.1}% |",
            r["variant"].as_str().unwrap(),
            r["verify_iter"],
            100.0 * r["success_rate"].as_f64().unwrap()
        );
        assert!(table.contains(&row), "{row} not in\n{table}");
    }
    // One transcript per variant. A one-step model never solves a hand, so each episode runs to
    // the step limit: at verify_iter = 1 (the first setting) one graded attempt and the
    // reference's extra call answered "step_limit_reached".
    let transcripts = json["transcripts"].as_array().unwrap();
    assert_eq!(transcripts.len(), 2);
    let calls = transcripts[0][1]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["verdict"]["message"], "step_limit_reached");
    let md = std::fs::read_to_string(out_dir.join("eval.md")).unwrap();
    assert!(
        md.contains("gp-l-ood-rule") && md.contains("**response**"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eval_navigation_reports_per_step_accuracy_and_route_success() {
    let dir = scratch("nav");
    let model = tiny_model(&dir);
    let routes = dir.join("world");
    let args = [
        "nav", "world", "--city", "nyc", "--routes", "3", "--seed", "5",
    ];
    let mut world = args.to_vec();
    world.extend(["--pano-width", "256", "--out", routes.to_str().unwrap()]);
    ok(&world, "");
    let config = dir.join("eval.toml");
    std::fs::write(
        &config,
        format!(
            "variants = [\"virl-l-id\", \"virl-l-ood-rule\"]\nmax_new_tokens = 8\n\
             temperature = 0.0\ntranscripts = 4\n[nav]\nroutes = \"{}\"\nepisodes = 4\n",
            routes.display()
        ),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let (table, json) = eval_into(&config, &model, &out_dir);
    let transcripts = json["transcripts"].as_array().unwrap();
    assert_eq!(
        transcripts.len(),
        8,
        "every episode of both variants is kept"
    );
    for r in json["results"].as_array().unwrap() {
        let variant = r["variant"].as_str().unwrap();
        assert_eq!(
            (r["episodes"].as_u64(), r["verify_iter"].as_u64()),
            (Some(4), Some(2))
        );
        // The per-step accuracy counts exactly the kept episodes' calls rewarded +1.
        let calls: Vec<f64> = transcripts
            .iter()
            .filter(|t| t[0] == variant)
            .flat_map(|t| t[1]["calls"].as_array().unwrap().clone())
            .map(|c| c["verdict"]["reward"].as_f64().unwrap())
            .collect();
        let step = &r["step_accuracy"];
        assert_eq!(step["calls"].as_u64().unwrap() as usize, calls.len());
        let correct = calls.iter().filter(|&&reward| reward == 1.0).count();
        assert_eq!(step["count"].as_u64().unwrap() as usize, correct);
        let successes = transcripts
            .iter()
            .filter(|t| t[0] == variant && t[1]["success"] == true)
            .count();
        assert_eq!(r["successes"].as_u64().unwrap() as usize, successes);
        // An untrained model never moves: two wrong attempts, then the call past the limit.
        assert!(calls.len() >= 4 * 3, "{variant}: {} calls", calls.len());
        let row = format!("| {variant} | 2 | 4 | ");
        assert!(table.contains(&row), "{row} not in\n{table}");
    }
    // The relative-turn variant's prompts offer relative actions.
    let ood = transcripts
        .iter()
        .find(|t| t[0] == "virl-l-ood-rule")
        .unwrap();
    let prompt = ood[1]["calls"][0]["prompt"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("'slightly left'"), "{prompt}");
    // A route folder that is not one fails with an error naming the file, not a panic.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = dir.join("bad.toml");
    let routes_line = format!("routes = \"{}\"", routes.display());
    let empty_line = format!("routes = \"{}\"", empty.display());
    std::fs::write(&bad, text.replace(&routes_line, &empty_line)).unwrap();
    let err = fails(
        &[
            "eval",
            bad.to_str().unwrap(),
            "--checkpoint",
            model.to_str().unwrap(),
        ],
        "",
    );
    assert!(err.contains("route_infos.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Saves a randomly initialised tiny vision-language model, with a word-level tokenizer for the
/// GP-VL prompts and an `<image>` placeholder token, and returns its folder.
fn tiny_vlm(dir: &std::path::Path) -> PathBuf {
    let mut corpus = Vec::new();
    for (i, variant) in [Variant::Id, Variant::RuleOod].into_iter().enumerate() {
        let mut env = GeneralPoints::new(GpConfig::variant(variant, true)).unwrap();
        env.reset(i as u64);
        env.step("[]");
        corpus.extend(env.transcript().turns.iter().map(|t| t.text.clone()));
    }
    let mut tokenizer = word_level_tokenizer(corpus.iter().map(String::as_str), 1).unwrap();
    let image_token = tokenizer.add_special_token("<image>");
    let config = serde_json::json!({
        "model_type": "sftvsrl_vlm",
        "image_token_id": image_token,
        "text_config": {
            "model_type": "llama", "vocab_size": tokenizer.vocab_size(), "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": true,
        },
        "vision_config": {
            "image_size": [32, 96], "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2,
        },
    });
    let config = VlmConfig::from_json(&config, std::path::Path::new("tiny-vlm")).unwrap();
    let model = Vlm::<Flex>::init(&config, 7, &Default::default());
    // The four cards' strip of the 1200×1200 canvas, shrunk to the model's 32×96.
    let processor = ImageProcessor {
        crop: Some([0, 411, 1200, 378]),
        ..ImageProcessor::new([32, 96])
    };
    let out = dir.join("vlm");
    save_vlm(
        &model,
        &processor,
        Some(&tokenizer),
        &tokenizer.stop_tokens(),
        &out,
    )
    .unwrap();
    out
}

#[test]
fn eval_gp_vl_variants_report_card_recognition() {
    let dir = scratch("vl");
    let model = tiny_vlm(&dir);
    let config = dir.join("eval.toml");
    std::fs::write(
        &config,
        "variants = [\"gp-vl-id\", \"gp-vl-ood-rule\", \"gp-vl-ood-visual\"]\nepisodes = 3\n\
         verify_iters = [1]\nmax_new_tokens = 6\ntemperature = 0.0\ntranscripts = 3\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let (table, json) = eval_into(&config, &model, &out_dir);
    assert!(table.contains("| recognition |"), "{table}");
    let transcripts = json["transcripts"].as_array().unwrap();
    assert_eq!(
        transcripts.len(),
        9,
        "every episode of the three variants is kept"
    );
    for r in json["results"].as_array().unwrap() {
        let variant = r["variant"].as_str().unwrap();
        // The reference's protocol: one call per episode (its first), verification off.
        let rewards: Vec<f64> = transcripts
            .iter()
            .filter(|t| t[0] == variant)
            .map(|t| t[1]["calls"][0]["verdict"]["reward"].as_f64().unwrap())
            .collect();
        let recognition = &r["recognition"];
        assert_eq!(recognition["calls"].as_u64().unwrap() as usize, 3);
        assert_eq!(rewards.len(), 3);
        let read = rewards.iter().filter(|&&reward| reward != -1.5).count();
        assert_eq!(
            recognition["count"].as_u64().unwrap() as usize,
            read,
            "{variant}"
        );
        let first = &transcripts.iter().find(|t| t[0] == variant).unwrap()[1];
        let prompt = first["calls"][0]["prompt"][0]["content"].as_str().unwrap();
        assert!(
            prompt.contains("observing these four cards in the image"),
            "{prompt}"
        );
    }
    // A language model cannot play the vision variants.
    let text_model = tiny_model(&dir);
    let err = fails(
        &[
            "eval",
            config.to_str().unwrap(),
            "--checkpoint",
            text_model.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        err.contains("gp-vl-id") && err.contains("vision-language"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_eval_configs_fail_with_the_field() {
    let dir = scratch("bad");
    let config = dir.join("eval.toml");
    std::fs::write(&config, "episodes = 0\n").unwrap();
    let err = fails(
        &["eval", config.to_str().unwrap(), "--checkpoint", "nowhere"],
        "",
    );
    assert!(err.contains("episodes"), "{err}");
    std::fs::write(&config, "variants = [\"gp-l-idd\"]\n").unwrap();
    let err = fails(
        &["eval", config.to_str().unwrap(), "--checkpoint", "nowhere"],
        "",
    );
    assert!(err.contains("gp-l-idd"), "{err}");
    std::fs::write(&config, "variants = [\"virl-l-id\"]\n").unwrap();
    let err = fails(
        &["eval", config.to_str().unwrap(), "--checkpoint", "nowhere"],
        "",
    );
    assert!(err.contains("nav.routes"), "{err}");
    std::fs::write(
        &config,
        "variants = [\"virl-l-id\"]\n[nav]\nroutes = \"/nonexistent/w\"\n[nav.env]\nabsolute_action = false\n",
    )
    .unwrap();
    let err = fails(
        &["eval", config.to_str().unwrap(), "--checkpoint", "nowhere"],
        "",
    );
    assert!(err.contains("absolute_action"), "{err}");
    let err = fails(
        &["eval", "--checkpoint", dir.join("none").to_str().unwrap()],
        "",
    );
    assert!(err.contains("none"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
