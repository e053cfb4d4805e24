//! End-to-end tests of `sftvsrl nav …` through the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, ok, sftvsrl};

fn fixture_routes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("envs/tests/fixtures/nav/routes")
}

#[test]
fn verify_single_and_batch() {
    let one = ok(
        &[
            "nav",
            "verify",
            "--gt-action",
            "stop()",
            "--gt-obs",
            "x",
            "--response",
            "{\"action\": \"stop()\"}",
        ],
        "",
    );
    assert_eq!(one, "{\"reward\":1.0,\"message\":\"Correct action.\"}\n");
    let lines = [
        r#"{"gt_action": "forward()", "gt_obs": "No landmarks nearby", "response": "{\"action\": \"forward()\"}"}"#,
        r#"{"gt_action": "forward()", "gt_obs": "No landmarks nearby", "response": "{\"current observation\": \"an intersection\", \"action\": \"stop()\"}"}"#,
        r#"{"gt_action": "stop()", "gt_obs": "x", "response": "garbage"}"#,
    ];
    let out = ok(&["nav", "verify", "--jsonl", "-"], &lines.join("\n"));
    let rewards: Vec<f64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reward"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(rewards, [1.0, -1.5, -1.0]);
    let cleaned = ok(
        &["nav", "verify", "--jsonl", "-", "--prompt-text", "cleaned"],
        lines[2],
    );
    assert!(cleaned.contains("format:\\n[Output]\\n{\\n") && !cleaned.contains("{{"));
    let err = fails(
        &["nav", "verify", "--jsonl", "-"],
        &format!("{}\nnot json\n", lines[0]),
    );
    assert!(err.contains("-: line 2"), "{err}");
}

#[test]
fn instruction_lines() {
    let moma = "\n{\n\"landmarks\": \"Prince St is on your front\",\n\"to_next_intersection_heading\": \"298 (northwest)\",\n}\n{\n\"landmarks\": \"The destination MoMA Design Store is on your left\",\n\"to_next_intersection_heading\": \"212 (southwest)\",\n}\n";
    let input = serde_json::json!({"milestone_info": moma, "init_heading": 100}).to_string();
    let out = ok(&["nav", "instruction", "--jsonl", "-"], &input);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["instruction"],
        "1. First, turn right to face northwest.\n2. Move forward until you reach next intersection where Prince St is on your front.\n3. Turn left to face southwest.\n4. Move forward until you reach destination where The destination MoMA Design Store is on your left.\n"
    );
    assert_eq!(
        v["actions_absolute"],
        serde_json::json!([
            "turn_direction(northwest)",
            "turn_direction(southwest)",
            "stop()"
        ])
    );
    assert_eq!(
        v["actions_relative"],
        serde_json::json!(["turn_direction(right)", "turn_direction(left)", "stop()"])
    );
    let bad = serde_json::json!({"milestone_info": "{\"landmarks\": \"x\"}", "init_heading": 5})
        .to_string();
    let err = fails(&["nav", "instruction", "--jsonl", "-"], &bad);
    assert!(err.contains("line 1: field `milestone_info`: block 1: a block has no \"to_next_intersection_heading\""), "{err}");
}

#[test]
fn world_sample_render_and_bench() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nav-cli-world");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let summary = ok(
        &[
            "nav",
            "world",
            "--city",
            "worldwide",
            "--routes",
            "2",
            "--out",
            d,
            "--pano-width",
            "256",
            "--seed",
            "3",
        ],
        "",
    );
    assert!(summary.contains("\"routes\":2"), "{summary}");
    let sample = ok(
        &["nav", "sample", "--routes", d, "--seed", "1", "--relative"],
        "",
    );
    assert!(
        sample.contains("[Instruction]\n1. First, turn")
            && sample.contains("[Rail]")
            && sample.contains("stop()"),
        "{sample}"
    );
    assert!(
        sample.contains(
            "x could be any following ['left', 'right', 'slightly left', 'slightly right']"
        )
    );
    let png = dir.join("grid.png");
    let out = ok(
        &[
            "nav",
            "render",
            "--routes",
            d,
            "--seed",
            "1",
            "--out",
            png.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.contains("You observe an intersection"), "{out}");
    let (w, h) = image_size(&png);
    assert_eq!((w, h), (2405, 2405));
    let bench = ok(&["nav", "bench", "--routes", d, "--steps", "2"], "");
    assert!(bench.contains("\"grid_px\":2405"), "{bench}");
    // Tiny views: the grid of four 64-pixel views, its cost, and expert data at 32 pixels.
    let tiny = ["--routes", d, "--seed", "1", "--resolution", "64"];
    ok(
        &[
            &["nav", "render", "--out", png.to_str().unwrap()],
            &tiny[..],
        ]
        .concat(),
        "",
    );
    assert_eq!(image_size(&png), (133, 133));
    let bench = ok(&[&["nav", "bench", "--steps", "2"], &tiny[..]].concat(), "");
    assert!(bench.contains("\"grid_px\":133"), "{bench}");
    let data = dir.join("virl-vl");
    let args = ["data", "sft", "--env", "virl-vl", "--routes", d, "--n", "2"];
    let out = data.to_str().unwrap();
    ok(
        &[&args[..], &["--resolution", "32", "--out", out]].concat(),
        "",
    );
    let text = std::fs::read_to_string(data.join("data.jsonl")).unwrap();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["meta"]["resolution"], 32);
        assert_eq!(
            image_size(&data.join(r["image"].as_str().unwrap())),
            (69, 69)
        );
    }
    let bad = ["--resolution", "4"];
    for command in [
        [
            &[
                "nav",
                "render",
                "--routes",
                d,
                "--out",
                png.to_str().unwrap(),
            ][..],
            &bad,
        ]
        .concat(),
        [&args[..], &["--out", out], &bad].concat(),
    ] {
        let err = fails(&command, "");
        assert!(
            err.contains("--resolution must be in 8..=4096 pixels, got 4"),
            "{err}"
        );
    }
    let err = fails(
        &[
            "nav",
            "render",
            "--routes",
            d,
            "--step",
            "999",
            "--out",
            png.to_str().unwrap(),
        ],
        "",
    );
    assert!(err.contains("--step must be smaller"), "{err}");
}

#[test]
fn world_landmark_looks() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nav-cli-logos");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let world = [
        "nav",
        "world",
        "--city",
        "nyc",
        "--routes",
        "1",
        "--pano-width",
        "256",
    ];
    let summary = ok(
        &[&world[..], &["--out", d, "--landmarks", "logos"]].concat(),
        "",
    );
    assert!(summary.contains("\"landmarks\":\"logos\""), "{summary}");
    let described: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("world.json")).unwrap()).unwrap();
    assert_eq!(
        (&described["landmarks"], &described["style"]),
        (&"logos".into(), &"nyc".into())
    );
    let o = sftvsrl(
        &[&world[..], &["--out", d, "--landmarks", "icons"]].concat(),
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown landmark look \"icons\"; expected signs or logos"),
        "{err}"
    );
}

/// Width and height from a PNG's IHDR chunk.
fn image_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn play_reads_answers_from_stdin() {
    let routes = fixture_routes();
    let out = ok(
        &[
            "nav",
            "play",
            "--routes",
            routes.to_str().unwrap(),
            "--seed",
            "2",
        ],
        "turn_direction(up)\n\nturn_direction(up)\n\nforward()\n\n",
    );
    assert!(out.contains("[Task Description]"));
    assert!(out.contains("reward -1: you make incorrect action."));
    assert!(out.contains("You failed this trial because you make incorrect action."));
    assert!(out.contains("reward -1: Exceed maximum verify steps"));
    assert!(out.contains("episode over: failure"));
}

#[test]
fn bad_input_is_a_one_line_error() {
    let err = fails(&["nav", "sample", "--routes", "/nonexistent/routes"], "");
    assert!(
        err.contains("/nonexistent/routes/route_infos.json"),
        "{err}"
    );
    let err = fails(
        &[
            "nav",
            "world",
            "--city",
            "nyc",
            "--routes",
            "0",
            "--out",
            "/tmp/unused",
        ],
        "",
    );
    assert!(err.contains("at least one route"), "{err}");
    let routes = fixture_routes();
    let err = fails(
        &[
            "nav",
            "sample",
            "--routes",
            routes.to_str().unwrap(),
            "--route",
            "7",
        ],
        "",
    );
    assert!(err.contains("route index 7 is out of range"), "{err}");
    let err = fails(
        &[
            "nav",
            "render",
            "--routes",
            routes.to_str().unwrap(),
            "--out",
            "/tmp/unused.png",
        ],
        "",
    );
    assert!(err.contains("panorama"), "{err}");
}

#[test]
fn expert_data_for_navigation() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nav-cli-sft");
    let _ = std::fs::remove_dir_all(&out);
    let routes = fixture_routes();
    ok(
        &[
            "data",
            "sft",
            "--env",
            "virl-l",
            "--routes",
            routes.to_str().unwrap(),
            "--n",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    let text = std::fs::read_to_string(out.join("data.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(
            r["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("[Observations and actions sequence]")
        );
        assert!(
            r["messages"][1]["content"]
                .as_str()
                .unwrap()
                .contains("\"action\": \"")
        );
        assert!(r["image"].is_null());
    }
    let err = fails(
        &[
            "data",
            "sft",
            "--env",
            "virl-l",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(err.contains("--routes"), "{err}");
}
