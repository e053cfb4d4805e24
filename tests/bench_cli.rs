//! `sftvsrl bench …` through the real binary (tiny settings: these check the plumbing, not speed).

mod common;

use common::{fails, ok};

#[test]
fn generate_benchmark_reports_throughput() {
    let out = ok(
        &[
            "bench",
            "generate",
            "--batch",
            "1",
            "--prompt-len",
            "4",
            "--new-tokens",
            "2",
        ],
        "",
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    assert_eq!(report["config"]["batch"], 1);
    assert!(report["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    let share = report["matmul_share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.5, "{share}");
}

#[test]
fn gp_benchmark_reports_both_tasks() {
    let out = ok(&["bench", "gp", "--seconds", "0.05", "--json"], "");
    let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["verifier_calls_per_s"].as_f64().unwrap() > 0.0)
    );
}

#[test]
fn a_device_that_is_not_compiled_in_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let err = fails(&["bench", "generate", "--device", "cuda"], "");
    assert!(err.contains("--features cuda"), "{err}");
}

#[test]
fn train_benchmark_reports_throughput_and_utilisation() {
    let out = ok(
        &[
            "bench",
            "train",
            "--batch",
            "1",
            "--seq-len",
            "6",
            "--steps",
            "1",
            "--layers",
            "1",
            "--matmul-size",
            "64",
        ],
        "",
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    assert_eq!(report["config"]["prompt_len"], 3);
    let field = |k: &str| report[k].as_f64().unwrap();
    let step = field("step_seconds");
    let phases = field("forward_seconds") + field("backward_seconds") + field("optimizer_seconds");
    assert!(step > 0.0 && (phases - step).abs() < 1e-9 * step.max(1.0));
    assert!((field("tokens_per_s") - 6.0 / step).abs() < 1e-6 * field("tokens_per_s"));
    assert!(field("matmul_peak_gflops") > 0.0);
    let mfu = field("model_gflops") / field("matmul_peak_gflops");
    assert!((field("mfu") - mfu).abs() < 1e-12, "{mfu}");
}
