//! V-IRL-VL through the real binary: a city with logo landmarks, street-view expert data at a
//! tiny resolution, SFT of a from-scratch VLM on it, then PPO with that VLM on the same streets
//! (the grids as its observations); a language model refuses the same data.

mod common;

use common::{assert_files, fails, ok, scratch};

#[test]
fn navigation_with_images_trains_a_vlm_with_sft_and_ppo() {
    let dir = scratch("vision-cli");
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let world = path("world");
    ok(
        &[
            "nav",
            "world",
            "--city",
            "nyc",
            "--routes",
            "6",
            "--pano-width",
            "256",
            "--landmarks",
            "logos",
            "--out",
            &world,
        ],
        "",
    );
    std::fs::write(dir.join("nav.toml"), "prompt_layout = \"compact\"\n").unwrap();
    ok(
        &[
            "data",
            "sft",
            "--env",
            "virl-vl",
            "--routes",
            &world,
            "--n",
            "64",
            "--resolution",
            "32",
            "--config",
            &path("nav.toml"),
            "--out",
            &path("data"),
        ],
        "",
    );
    let sft = format!(
        r#"name = "vl-sft"
runs_dir = "{runs}"
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
vision = {{ image_size = 32, patch_size = 8, hidden_size = 16, intermediate_size = 16, num_hidden_layers = 1, num_attention_heads = 2, projector_merge = 2 }}
[train]
epochs = 1
micro_batch = 16
lr = 1e-3
checkpoint_every = 100
answer_match = 2
"#,
        runs = path("runs"),
        data = path("data/data.jsonl"),
    );
    std::fs::write(dir.join("sft.toml"), sft).unwrap();
    ok(&["sft", &path("sft.toml"), "--plain"], "");
    let vlm = path("runs/vl-sft/final");
    assert_files(&dir, &["runs/vl-sft/final/preprocessor_config.json"]);

    let rl = |policy: &str| {
        format!(
            r#"name = "vl-rl"
runs_dir = "{runs}"
policy = "{policy}"
env = "virl-l"
routes = "{world}"
checkpoint_every = 1
nav = {{ vision = true, resolution = 32, prompt_layout = "compact" }}
rollout = {{ num_envs = 2, num_steps = 2, max_new_tokens = 8 }}
ppo = {{ num_updates = 1, samples_per_step = 2 }}
value_head = {{ hidden = [8] }}
"#,
            runs = path("runs"),
        )
    };
    std::fs::write(dir.join("rl.toml"), rl(&vlm)).unwrap();
    // The run's report, its progress lines (stderr) after its summary (stdout).
    let rl_run = |config: &str| {
        let out = common::sftvsrl(&["rl", &path(config)], "");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stderr}");
        format!("{stdout}{stderr}")
    };
    let out = rl_run("rl.toml");
    assert!(out.contains("trained 1 updates"), "{out}");
    assert_files(&dir, &["runs/vl-rl/final/preprocessor_config.json"]);
    let trained = |out: &str| -> (usize, usize) {
        let line = out.lines().find(|l| l.contains(" trained); ")).unwrap();
        let numbers: Vec<usize> = line
            .split([' ', '('])
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    };
    let (all, full) = trained(&out);
    assert_eq!(all, full, "{out}");

    // LoRA on the language model: the adapters, the projector and the value head train.
    let lora = rl(&vlm).replace("vl-rl", "vl-lora") + "lora = { rank = 2, alpha = 4.0 }\n";
    std::fs::write(dir.join("lora.toml"), lora).unwrap();
    let out = rl_run("lora.toml");
    let (all, adapted) = trained(&out);
    assert!(0 < adapted && adapted < all / 2, "{out}");
    assert_files(&dir, &["runs/vl-lora/final/preprocessor_config.json"]);

    // A language model refuses data that shows images, naming the field.
    let text_sft = std::fs::read_to_string(dir.join("sft.toml"))
        .unwrap()
        .replace("vl-sft", "text-sft")
        .lines()
        .filter(|l| !l.starts_with("vision = "))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("text.toml"), text_sft).unwrap();
    let e = fails(&["sft", &path("text.toml"), "--plain"], "");
    assert!(e.contains("`image`") && e.contains("language model"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
