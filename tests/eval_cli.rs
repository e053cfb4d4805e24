//! `sftvsrl eval` end to end: a tiny trained model is evaluated on both GP-L variants, and the
//! printed table, `eval.json` and `eval.md` agree; bad configs fail with one line naming the field.

mod common;

use std::path::PathBuf;

use common::{fails, ok};

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
    let args = [
        "eval",
        config.to_str().unwrap(),
        "--checkpoint",
        model.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let table = ok(&args, "");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("eval.json")).unwrap()).unwrap();
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
    let err = fails(
        &["eval", "--checkpoint", dir.join("none").to_str().unwrap()],
        "",
    );
    assert!(err.contains("none"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
