//! `sftvsrl study` end to end on a shortened study (a tiny model, a few steps and episodes: this
//! checks the plumbing, not what the methods learn): the report's numbers are those of each
//! checkpoint's `eval.json`, the SFT branch is checkpointed at the RL branch's compute, the plots
//! are PNG files, a finished study is not overwritten, and `--resume` reuses every stage.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_files, fails, ok, scratch};
use serde_json::{Value, json};

const MODEL: &str = "init = \"scratch\"\nhidden_size = 16\nintermediate_size = 32\n\
                     num_hidden_layers = 1\nnum_attention_heads = 2\nnum_key_value_heads = 1";

fn write_study(dir: &Path) -> PathBuf {
    let text = format!(
        r#"name = "mini"
runs_dir = "{runs}"
[init]
data = {{ valid_fraction = 0.0, generate = {{ n = 24, seed = 0, prompt_layout = "compact", face_rules = ["id", {{ custom = [11, 11, 11] }}] }} }}
model = {{ {model} }}
train = {{ epochs = 1, micro_batch = 8, lr = 1e-3, checkpoint_every = 100, answer_match = 0 }}
[rl]
checkpoint_every = 1
gp = {{ verify_iter = 1, prompt_layout = "compact" }}
rollout = {{ num_envs = 2, num_steps = 2, max_new_tokens = 8 }}
ppo = {{ num_updates = 2, samples_per_step = 2 }}
value_head = {{ hidden = [8] }}
[sft]
data = {{ valid_fraction = 0.0, generate = {{ n = 400, seed = 1, prompt_layout = "compact" }} }}
train = {{ epochs = 1, micro_batch = 2, lr = 1e-3, checkpoint_every = 1000, answer_match = 0 }}
[eval]
episodes = 3
seed = 1000
verify_iters = [1]
max_new_tokens = 8
temperature = 0.0
prompt_layout = "compact"
"#,
        runs = dir.join("runs").display(),
        model = MODEL.replace('\n', ", "),
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The report's cell for one result: `12.5% ± 2.1`.
fn cell(result: &Value) -> String {
    format!(
        "{:.1}% ± {:.1}",
        100.0 * result["success_rate"].as_f64().unwrap(),
        100.0 * result["std_error"].as_f64().unwrap()
    )
}

#[test]
fn study_report_matches_the_evaluations_and_resumes() {
    let dir = scratch("study-cli");
    let config = write_study(&dir);
    let args = ["study", config.to_str().unwrap()];
    let out = ok(&args, "");
    let study_dir = dir.join("runs/mini");
    assert!(out.contains("report.md"), "{out}");
    assert_files(
        &study_dir,
        &[
            "study.toml",
            "study.json",
            "init/final/model.safetensors",
            "rl/final/model.safetensors",
            "sft/final/model.safetensors",
            "evals/init/eval.json",
            "evals/init/eval.md",
        ],
    );

    let study = read_json(&study_dir.join("study.json"));
    let points = study["points"].as_array().unwrap();
    let branch =
        |name: &str| -> Vec<&Value> { points.iter().filter(|p| p["branch"] == name).collect() };
    let (init, rl, sft) = (branch("init"), branch("rl"), branch("sft"));
    assert_eq!(
        (init.len(), rl.len()),
        (1, 2),
        "RL checkpoints every update"
    );
    // The SFT branch is checkpointed where its compute first reaches each RL checkpoint's.
    assert_eq!(sft.len(), rl.len(), "{sft:?}");
    for (s, r) in sft.iter().zip(&rl) {
        let (s, r) = (s["flops"].as_f64().unwrap(), r["flops"].as_f64().unwrap());
        assert!(s >= r && s < 1.5 * r, "SFT {s:e} vs RL {r:e} FLOPs");
    }
    assert!(rl[0]["flops"].as_f64() > init[0]["flops"].as_f64());

    // Every checkpoint row of the report holds its eval.json numbers, and study.json agrees.
    let report = std::fs::read_to_string(study_dir.join("report.md")).unwrap();
    for p in points {
        let eval = read_json(&PathBuf::from(p["eval_dir"].as_str().unwrap()).join("eval.json"));
        let results = eval["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "ID and rule OOD");
        assert_eq!(&p["results"], &eval["results"]);
        let row = format!(
            "| {} | {} | {:.4} | {} | {} |",
            p["branch"].as_str().unwrap(),
            p["step"],
            p["flops"].as_f64().unwrap() / 1e9,
            cell(&results[0]),
            cell(&results[1])
        );
        assert!(report.contains(&row), "{row} not in\n{report}");
    }
    // The headline compares the Init with each branch's last checkpoint.
    let last = |points: &[&Value]| points.last().unwrap()["results"].clone();
    let (i, r, s) = (last(&init), last(&rl), last(&sft));
    for (k, variant) in ["gp-l-id", "gp-l-ood-rule"].iter().enumerate() {
        let row = format!(
            "| {variant} (verify 1) | {} | {} (",
            cell(&i[k]),
            cell(&r[k])
        );
        let line = report.lines().find(|l| l.starts_with(&row));
        let line = line.unwrap_or_else(|| panic!("{row} not in\n{report}"));
        assert!(line.contains(&format!("| {} (", cell(&s[k]))), "{line}");
        assert!(out.contains(line), "the headline is printed:\n{out}");
    }
    for plot in [
        "success-gp-l-id-verify1.png",
        "success-gp-l-ood-rule-verify1.png",
        "id-vs-gp-l-ood-rule-verify1.png",
    ] {
        let bytes = std::fs::read(study_dir.join(plot)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{plot} is not a PNG"
        );
        assert!(report.contains(&format!("]({plot})")), "{plot} not linked");
    }

    // A finished study is kept; --resume reuses every stage and evaluation.
    let e = fails(&args, "");
    assert!(e.contains("--resume"), "{e}");
    let out_again = ok(&["study", config.to_str().unwrap(), "--resume"], "");
    let again = read_json(&study_dir.join("study.json"));
    assert_eq!(again["points"], study["points"]);
    assert!(out_again.contains("report.md"), "{out_again}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_study_configs_fail_with_one_line_naming_the_field() {
    let dir = scratch("study-cli-bad");
    let config = write_study(&dir);
    let text = std::fs::read_to_string(&config).unwrap();
    for (change, field) in [
        (("[rl]\n", "[rl]\npolicy = \"x\"\n"), "policy"),
        (("episodes = 3", "episodes = 0"), "episodes"),
        (("num_updates = 2", "num_update = 2"), "num_update"),
    ] {
        std::fs::write(&config, text.replace(change.0, change.1)).unwrap();
        let e = fails(&["study", config.to_str().unwrap()], "");
        assert!(e.contains("study.toml") && e.contains(field), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_navigation_study_generates_its_world_and_reports_per_step_accuracy() {
    navigation_study(false);
}

/// V-IRL-VL: a VLM from scratch on street views of a logo world, and a second city generated
/// for the visual-OOD variant.
#[test]
fn a_street_view_study_generates_two_cities_and_tests_in_the_other() {
    navigation_study(true);
}

/// A shortened navigation study through the binary, on text or (`vision`) on street views.
fn navigation_study(vision: bool) {
    let name = if vision { "mini-nav-vl" } else { "mini-nav" };
    let dir = scratch(&format!("study-cli-{name}"));
    // The views' size; the evaluation's variants say whether they are shown.
    let size = if vision {
        "resolution = 16, crop_size = 32, "
    } else {
        ""
    };
    let shown = if vision { "vision = true, " } else { "" };
    let nav = format!("nav = {{ {shown}{size}prompt_layout = \"compact\", route_range = [0, 3] }}");
    let (model_vision, worlds, variants, task) = if vision {
        (
            ", vision = { image_size = 32, patch_size = 8, hidden_size = 16, \
             intermediate_size = 16, num_hidden_layers = 1, num_attention_heads = 2, \
             projector_merge = 2 }",
            "landmarks = \"logos\"\n[ood_world]\nstyle = \"worldwide\"\nnames = \"nyc\"\n\
             grid_heading = 29.0\nroutes = 2\nseed = 2\nlandmarks = \"logos\"\n",
            ["virl-vl-id", "virl-vl-ood-rule", "virl-vl-ood-visual"].as_slice(),
            "vl",
        )
    } else {
        ("", "", ["virl-l-id", "virl-l-ood-rule"].as_slice(), "l")
    };
    let text = format!(
        r#"name = "{name}"
runs_dir = "{runs}"
[world]
routes = 4
seed = 1
{worlds}
[init]
data = {{ valid_fraction = 0.0, generate_nav = {{ n = 30, seed = 0, {nav} }} }}
model = {{ {model}{model_vision} }}
train = {{ epochs = 1, micro_batch = 8, lr = 1e-3, checkpoint_every = 100, answer_match = 0 }}
[rl]
env = "virl-l"
{nav}
checkpoint_every = 1
rollout = {{ num_envs = 2, num_steps = 2, max_new_tokens = 8 }}
ppo = {{ num_updates = 1, samples_per_step = 2 }}
value_head = {{ hidden = [8] }}
[sft]
data = {{ valid_fraction = 0.0, generate_nav = {{ n = 200, seed = 1, {nav} }} }}
train = {{ epochs = 1, micro_batch = 2, lr = 1e-3, checkpoint_every = 1000, answer_match = 0 }}
[eval]
variants = {variants:?}
max_new_tokens = 8
temperature = 0.0
nav = {{ episodes = 2, seed = 5, env = {{ {size}prompt_layout = "compact", route_range = [3, 4] }} }}
"#,
        runs = dir.join("runs").display(),
        model = MODEL.replace('\n', ", "),
    );
    let config = dir.join("study.toml");
    std::fs::write(&config, text).unwrap();
    let out = ok(&["study", config.to_str().unwrap()], "");
    let study_dir = dir.join("runs").join(name);
    assert_files(
        &study_dir,
        &[
            "world/route_infos.json",
            "world/gps_pano_mapping.pkl",
            "rl/final/model.safetensors",
            "sft/final/model.safetensors",
            &format!("step-accuracy-virl-{task}-id-verify2.png"),
            &format!("success-virl-{task}-ood-rule-verify2.png"),
        ],
    );
    let study = read_json(&study_dir.join("study.json"));
    let report = std::fs::read_to_string(study_dir.join("report.md")).unwrap();
    for p in study["points"].as_array().unwrap() {
        let eval = read_json(&PathBuf::from(p["eval_dir"].as_str().unwrap()).join("eval.json"));
        assert_eq!(&p["results"], &eval["results"]);
        let results = eval["results"].as_array().unwrap();
        assert_eq!(results.len(), variants.len());
        for r in results {
            assert_eq!(r["episodes"], 2);
            assert_eq!(r["verify_iter"], 2);
            let a = &r["step_accuracy"];
            assert!(a["calls"].as_u64().unwrap() >= 2, "{a}");
        }
    }
    assert!(
        report.contains(&format!("virl-{task}-id per-step accuracy (verify 2)")),
        "{report}"
    );
    assert!(
        report.contains(
            "relative turns named left, right, slightly left, slightly right, is held out"
        ),
        "{report}"
    );
    if vision {
        assert_files(
            &study_dir,
            &[
                "ood-world/route_infos.json",
                "data/init/images/000000.png",
                "init/final/preprocessor_config.json",
                "success-virl-vl-ood-visual-verify2.png",
            ],
        );
        let world: Value = read_json(&study_dir.join("ood-world/world.json"));
        assert_eq!(
            (&world["style"], &world["names"], &world["landmarks"]),
            (&json!("worldwide"), &json!("nyc"), &json!("logos"))
        );
        let other = study_dir.join("ood-world");
        assert!(
            report.contains(&format!(
                "`virl-vl-ood-visual` walks every route of `{}`",
                other.display()
            )) && report.contains("2×2 grid of 16×16-pixel street views"),
            "{report}"
        );
    }
    assert!(out.contains("report.md"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A vision study end to end: a VLM from scratch on GP-VL images, PPO with the VLM policy, the
/// SFT branch on images, every checkpoint evaluated on ID and visual OOD with recognition
/// plotted beside success; `--task` and a config path exclude each other.
#[test]
fn a_vision_study_trains_a_vlm_and_plots_recognition() {
    let dir = scratch("study-cli-vl");
    let gp = "vision = true, image_size = 64";
    let vision = "vision = { image_size = 32, patch_size = 8, hidden_size = 16, \
                  intermediate_size = 16, num_hidden_layers = 1, num_attention_heads = 2, \
                  projector_merge = 2 }";
    let text = format!(
        r#"name = "mini-vl"
runs_dir = "{runs}"
[init]
data = {{ valid_fraction = 0.0, generate = {{ n = 16, seed = 0, {gp}, prompt_layout = "compact" }} }}
model = {{ {model}, {vision} }}
train = {{ epochs = 1, micro_batch = 8, lr = 1e-3, checkpoint_every = 100, answer_match = 0 }}
[rl]
checkpoint_every = 1
gp = {{ verify_iter = 1, prompt_layout = "compact", suits = "black", {gp} }}
rollout = {{ num_envs = 2, num_steps = 2, max_new_tokens = 8 }}
ppo = {{ num_updates = 1, samples_per_step = 2 }}
value_head = {{ hidden = [8] }}
[sft]
data = {{ valid_fraction = 0.0, generate = {{ n = 200, seed = 1, {gp}, prompt_layout = "compact" }} }}
train = {{ epochs = 1, micro_batch = 2, lr = 1e-3, checkpoint_every = 1000, answer_match = 0 }}
[eval]
variants = ["gp-vl-id", "gp-vl-ood-visual"]
episodes = 2
seed = 1000
verify_iters = [1]
max_new_tokens = 8
temperature = 0.0
prompt_layout = "compact"
image_size = 64
"#,
        runs = dir.join("runs").display(),
        model = MODEL.replace('\n', ", "),
    );
    let config = dir.join("study.toml");
    std::fs::write(&config, &text).unwrap();
    ok(&["study", config.to_str().unwrap()], "");
    let study_dir = dir.join("runs/mini-vl");
    assert_files(
        &study_dir,
        &[
            "data/init/images/000000.png",
            "data/sft/images/000000.png",
            "init/final/preprocessor_config.json",
            "rl/final/preprocessor_config.json",
            "sft/final/preprocessor_config.json",
            "recognition-gp-vl-id-verify1.png",
            "success-gp-vl-ood-visual-verify1.png",
        ],
    );
    let report = std::fs::read_to_string(study_dir.join("report.md")).unwrap();
    assert!(
        report.contains("gp-vl-ood-visual card recognition (verify 1)"),
        "{report}"
    );
    assert!(
        report.contains("64×64-pixel images with `reference` faces"),
        "{report}"
    );
    assert!(
        report.contains("the visual-OOD red suits are held out")
            && report.contains("The OOD rule, J/Q/K = 11/12/13, is held out"),
        "{report}"
    );
    let study = read_json(&study_dir.join("study.json"));
    for p in study["points"].as_array().unwrap() {
        for r in p["results"].as_array().unwrap() {
            assert!(r["recognition"]["calls"].as_u64().unwrap() >= 2, "{r}");
        }
    }
    let both = common::sftvsrl(&["study", config.to_str().unwrap(), "--task", "gp-vl"], "");
    let e = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(2), "{e}");
    assert!(e.contains("cannot be used with '--task"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
