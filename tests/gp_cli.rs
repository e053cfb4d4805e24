//! End-to-end: the real `sftvsrl` binary, driven as a person or a script would.

mod common;

use std::process::Output;

use common::sftvsrl;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn verify_reports_the_golden_vector() {
    let o = sftvsrl(
        &[
            "gp",
            "verify",
            "--cards",
            "A,3,10,6",
            "--response",
            r#"{"formula": "(10*3-6)*1=24"}"#,
        ],
        "",
    );
    assert!(o.status.success());
    let v = json(stdout(&o).trim());
    assert_eq!(
        (v["reward"].as_f64(), v["message"].as_str()),
        (Some(5.0), Some("Correct solution."))
    );

    let o = sftvsrl(
        &[
            "gp",
            "verify",
            "--cards",
            "A,3,K,6",
            "--rule",
            "ood",
            "--response",
            r#"{"formula": "(13-1)*(6/3)=24"}"#,
        ],
        "",
    );
    assert_eq!(json(stdout(&o).trim())["reward"].as_f64(), Some(5.0));
}

#[test]
fn batch_verify_answers_every_line_in_order() {
    let input = [
        r#"{"cards": ["A", "3", "10", "6"], "rule": "id", "vl": false, "response": "{\"formula\": \"10*3-6\"}"}"#,
        r#"{"cards": [3, 3, 8, 8], "response": "{\"formula\": \"8/(3-8/3)=24\"}"}"#,
        r#"this line is not JSON"#,
        r#"{"cards": ["A", "3", "K", "10"], "vl": true, "response": "\"cards\": ['A', '3', 'Q', '10'], \"formula\": \"1\""}"#,
    ]
    .join("\n");
    let o = sftvsrl(&["gp", "verify", "--jsonl", "-"], &input);
    assert!(
        !o.status.success(),
        "a bad line makes the exit status non-zero"
    );
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(json).collect();
    assert_eq!(lines.len(), 4, "one output line per input line");
    assert_eq!(lines[0]["message"], "you didn't use numbers: [1].");
    assert_eq!(
        (lines[1]["reward"].as_f64(), lines[1]["message"].as_str()),
        (Some(0.0), Some("."))
    );
    assert_eq!(lines[2]["line"], 3);
    assert!(lines[2]["error"].is_string());
    assert_eq!(lines[3]["message"], "you recognized wrong cards");
}

#[test]
fn bad_input_gets_a_one_line_error() {
    for args in [
        vec!["gp", "verify", "--cards", "A,3,Z,6", "--response", "x"],
        vec!["gp", "verify", "--cards", "A,3", "--response", "x"],
        vec!["gp", "verify", "--jsonl", "/no/such/file.jsonl"],
        vec!["gp", "sample", "--config", "/no/such/config.toml"],
    ] {
        let o = sftvsrl(&args, "");
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

#[test]
fn config_files_reject_unknown_fields_naming_them() {
    let dir = tempdir("config");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "target = 24\nface_card = \"ood\"\n").unwrap();
    let o = sftvsrl(&["gp", "sample", "--config", path.to_str().unwrap()], "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("face_card"),
        "{err}"
    );
    // The documented example configs load.
    for f in ["config/gp/reference.toml", "config/gp/rule-ood.toml"] {
        let path = format!("{}/{f}", env!("CARGO_MANIFEST_DIR"));
        assert!(
            sftvsrl(&["gp", "sample", "--config", &path], "")
                .status
                .success(),
            "{f}"
        );
    }
}

#[test]
fn sample_lists_solutions_that_verify() {
    let o = sftvsrl(
        &[
            "gp",
            "sample",
            "--seed",
            "5",
            "--variant",
            "rule-ood",
            "--json",
        ],
        "",
    );
    let v = json(stdout(&o).trim());
    let names: Vec<String> = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| ["J", "Q", "K"].contains(&n.as_str())));
    assert!(
        v["prompt"]
            .as_str()
            .unwrap()
            .contains("count as '11', '12', and '13' respectively.")
    );
    let first = v["solutions"][0].as_str().unwrap();
    let response = format!("{{\"formula\": \"{first}\"}}");
    let o = sftvsrl(
        &[
            "gp",
            "verify",
            "--rule",
            "ood",
            "--cards",
            &names.join(","),
            "--response",
            &response,
        ],
        "",
    );
    let r = json(stdout(&o).trim())["reward"].as_f64().unwrap();
    assert!(
        r == 5.0 || r == 0.0,
        "a solution is correct (or 0 where f64 rounding bites): {r}"
    );
}

#[test]
fn render_writes_a_1200_square_png() {
    let dir = tempdir("render");
    let out = dir.join("hand.png");
    let o = sftvsrl(
        &[
            "gp",
            "render",
            "--cards",
            "SA,HT,DQ,C7",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(png_size(&std::fs::read(&out).unwrap()), (1200, 1200));
}

#[test]
fn render_and_data_take_an_image_size() {
    let dir = tempdir("image-size");
    let out = dir.join("hand.png");
    let render = |size: &str| {
        let args = [
            "gp",
            "render",
            "--cards",
            "SA,HT,DQ,C7",
            "--image-size",
            size,
        ];
        sftvsrl(&[&args[..], &["--out", out.to_str().unwrap()]].concat(), "")
    };
    assert!(render("96").status.success());
    assert_eq!(png_size(&std::fs::read(&out).unwrap()), (96, 96));
    let o = render("16");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--image-size must be in 32..=4096 pixels, got 16"),
        "{err}"
    );

    let data = dir.join("gp-vl");
    let args = [
        "data",
        "sft",
        "--env",
        "gp-vl",
        "--n",
        "2",
        "--image-size",
        "64",
        "--out",
    ];
    let o = sftvsrl(&[&args[..], &[data.to_str().unwrap()]].concat(), "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(data.join("data.jsonl")).unwrap();
    for r in text.lines().map(json) {
        assert_eq!(r["meta"]["image_size"], 64);
        let png = std::fs::read(data.join(r["image"].as_str().unwrap())).unwrap();
        assert_eq!(png_size(&png), (64, 64));
    }
    let args = [
        "data",
        "sft",
        "--env",
        "gp-l",
        "--n",
        "1",
        "--image-size",
        "64",
        "--out",
    ];
    let o = sftvsrl(&[&args[..], &[data.to_str().unwrap()]].concat(), "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--image-size is for --env gp-vl"), "{err}");
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[1..4], b"PNG");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn play_reads_answers_and_reports_feedback() {
    let o = sftvsrl(&["gp", "play", "--seed", "1"], "1+1\n(1+1\n");
    let text = stdout(&o);
    assert!(o.status.success());
    assert!(text.contains("Cards: ["), "{text}");
    assert!(text.contains("You failed this trial because"), "{text}");
    assert!(text.contains("(end of input)"), "{text}");
}

/// The episodes after a seed of `u64::MAX` wrap to seed 0 (the sum overflowed, a panic).
#[test]
fn play_wraps_seeds_at_the_top_of_the_range() {
    let answers = "1+1\n".repeat(12);
    let o = sftvsrl(
        &[
            "gp",
            "play",
            "--seed",
            "18446744073709551615",
            "--episodes",
            "2",
        ],
        &answers,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("=== episode 2 (seed 0) ==="), "{out}");
}

#[test]
fn expert_data_is_written_as_chat_jsonl() {
    let dir = tempdir("data");
    for (task, images) in [("gp-l", false), ("gp-vl", true)] {
        let out = dir.join(task);
        let o = sftvsrl(
            &[
                "data",
                "sft",
                "--env",
                task,
                "--n",
                "5",
                "--seed",
                "2",
                "--out",
                out.to_str().unwrap(),
            ],
            "",
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(out.join("data.jsonl")).unwrap();
        let records: Vec<serde_json::Value> = text.lines().map(json).collect();
        assert_eq!(records.len(), 5);
        for r in &records {
            assert_eq!(r["messages"][0]["role"], "user");
            assert_eq!(r["messages"][1]["role"], "assistant");
            assert!(
                r["messages"][1]["content"]
                    .as_str()
                    .unwrap()
                    .contains("\"formula\": \"")
            );
            assert_eq!(r["image"].is_string(), images);
            if let Some(img) = r["image"].as_str() {
                assert!(out.join(img).exists());
            }
        }
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sftvsrl-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
