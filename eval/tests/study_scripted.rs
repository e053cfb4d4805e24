//! The study driven by scripted policies of known success: a shortened study trains its
//! stages for real, and its checkpoints are played by scripts that solve every hand or none,
//! chosen by run, so the report must show exactly those rates; with `seeds` and `sft_lrs`,
//! each arm's runs, folders and headline column.

use std::path::Path;

use burn::backend::Autodiff;
use sftvsrl_envs::Transcript;
use sftvsrl_envs::gp::expert::answer_from_prompt;
use sftvsrl_envs::gp::prompt::PromptLayout;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_eval::study::real_kl_meter;
use sftvsrl_eval::{EvalConfig, Hooks, Study, evaluate, run_study_with};
use sftvsrl_model::Tokenizer;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_training::engine::gp_envs;
use sftvsrl_training::{ScriptedPolicy, SelfSftConfig, read_chat_jsonl, write_self_sft_data};

const STUDY: &str = r#"name = "scripted"
[init]
data = { valid_fraction = 0.0, generate = { n = 24, seed = 0, prompt_layout = "compact" } }
model = { init = "scratch", hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 }
train = { epochs = 1, micro_batch = 8, lr = 1e-3, checkpoint_every = 100, answer_match = 0 }
[rl]
checkpoint_every = 1
gp = { verify_iter = 1, prompt_layout = "compact" }
rollout = { num_envs = 2, num_steps = 2, max_new_tokens = 8 }
ppo = { num_updates = 2, samples_per_step = 2 }
value_head = { hidden = [8] }
[sft]
data = { valid_fraction = 0.0, generate = { n = 400, seed = 1, prompt_layout = "compact" } }
train = { epochs = 1, micro_batch = 2, lr = 1e-3, checkpoint_every = 1000, answer_match = 0 }
[eval]
variants = ["gp-l-id"]
episodes = 12
seed = 1000
verify_iters = [1]
max_new_tokens = 40
temperature = 0.0
prompt_layout = "compact"
"#;

/// Runs `text` (a study file less `runs_dir`) in a fresh folder, its checkpoints played by a
/// script that solves every hand for the models `solves` picks (by folder) and none for the
/// others; returns the outcome and the study.
fn scripted(
    name: &str,
    text: &str,
    solves: impl Fn(&Study, &Path) -> bool,
) -> (sftvsrl_eval::StudyOutcome, Study) {
    let dir = std::env::temp_dir().join(format!("sftvsrl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("runs_dir = \"{}\"\n{text}", dir.display());
    let study = Study::from_toml(&text, Path::new("study.toml")).unwrap();
    let evaluator = |model: &Path, config: &EvalConfig, progress: &mut dyn FnMut(usize)| {
        let tokenizer = Tokenizer::from_file(&model.join("tokenizer.json"))?;
        let solved = solves(&study, model);
        let mut policy = script(&tokenizer, move |_| solved);
        evaluate(&mut policy, &tokenizer, config, progress)
    };
    // Self-SFT data from a script that solves the hands whose prompt has an even length.
    let self_sft = |model: &Path, config: &SelfSftConfig, out: &Path| {
        let tokenizer = Tokenizer::from_file(&model.join("tokenizer.json"))?;
        let mut policy = script(&tokenizer, even_prompt);
        let envs = gp_envs(&study.rl.gp, config.batch)?;
        let stop = tokenizer.stop_tokens();
        Ok(write_self_sft_data(
            &mut policy,
            &tokenizer,
            envs,
            config,
            &stop,
            out,
        )?)
    };
    let device = Default::default();
    let mut hooks = Hooks {
        evaluate: Box::new(evaluator),
        kl_from_init: real_kl_meter::<CpuBackend>(&study, &device),
        self_sft: Box::new(self_sft),
    };
    let outcome = run_study_with::<Autodiff<CpuBackend>>(
        &study,
        false,
        &device,
        &mut |_: &str| {},
        &mut hooks,
    )
    .unwrap();
    drop(hooks);
    (outcome, study)
}

fn even_prompt(t: &Transcript) -> bool {
    t.turns[0].text.len().is_multiple_of(2)
}

/// A script that answers the (compact, ID) hands `solves` picks rightly and the others wrongly.
fn script(
    tokenizer: &Tokenizer,
    solves: impl Fn(&Transcript) -> bool,
) -> ScriptedPolicy<impl FnMut(&Transcript) -> String> {
    let compact = GpConfig {
        prompt_layout: PromptLayout::Compact,
        ..GpConfig::variant(Variant::Id, false)
    };
    ScriptedPolicy {
        tokenizer: tokenizer.clone(),
        // Hands of another rule (the retention variant's) may have no ID answer: answered
        // wrongly.
        answer: move |t: &Transcript| {
            let right = solves(t).then(|| answer_from_prompt(&t.turns[0].text, &compact));
            right
                .flatten()
                .unwrap_or_else(|| "{\"formula\": \"1\"}".to_string())
        },
        sees_images: false,
    }
}

/// The report's line that starts with `start`.
fn line_of(report: &Path, start: &str) -> String {
    let text = std::fs::read_to_string(report).unwrap();
    let line = text.lines().find(|l| l.starts_with(start));
    line.unwrap_or_else(|| panic!("no `{start}` in\n{text}"))
        .to_string()
}

#[test]
fn a_study_of_scripted_checkpoints_reports_their_known_success() {
    let (outcome, study) = scripted("study-scripted", STUDY, |study, model| {
        model.starts_with(study.dir.join("rl"))
    });
    for p in &outcome.points {
        let r = &p.results[0];
        let expected = if p.branch.name() == "rl" { 12 } else { 0 };
        assert_eq!((r.successes, r.episodes), (expected, 12), "{:?}", p.branch);
    }
    assert_eq!(
        line_of(&outcome.report, "| gp-l-id (verify 1) |"),
        "| gp-l-id (verify 1) | 0.0% ± 0.0 | 100.0% ± 0.0 (+100.0 pp) | 0.0% ± 0.0 (+0.0 pp) |"
    );
    let _ = std::fs::remove_dir_all(study.dir.parent().unwrap());
}

/// `seeds` and `sft_lrs`: every branch runs at each seed, the SFT branch at each learning rate,
/// each run in its own folder with its seed and rate, the SFT runs checkpointed at the compute
/// of the RL run of their seed; the headline shows each arm's mean and spread over seeds.
#[test]
fn seeds_and_sft_learning_rates_each_get_their_runs_and_columns() {
    let text = format!("seeds = [0, 1]\nsft_lrs = [1e-3, 1e-2]\n{STUDY}");
    // RL seed 0 and both seeds of SFT at 1e-2 solve every hand.
    let (outcome, study) = scripted("study-arms", &text, |study, model| {
        ["rl-seed0", "sft-lr1e-2-seed0", "sft-lr1e-2-seed1"]
            .iter()
            .any(|run| model.starts_with(study.dir.join(run)))
    });
    let runs: Vec<(String, u64)> = study
        .sft_runs()
        .iter()
        .map(|r| (r.config.name.clone(), r.seed))
        .collect();
    assert_eq!(
        runs,
        [
            ("sft-lr1e-3-seed0".to_string(), 0),
            ("sft-lr1e-3-seed1".to_string(), 1),
            ("sft-lr1e-2-seed0".to_string(), 0),
            ("sft-lr1e-2-seed1".to_string(), 1),
        ]
    );
    for (run, seed, lr) in [
        ("rl-seed1", 1, None),
        ("sft-lr1e-3-seed1", 1, Some(1e-3)),
        ("sft-lr1e-2-seed0", 0, Some(1e-2)),
    ] {
        let config: toml::Table = toml::from_str(
            &std::fs::read_to_string(study.dir.join(run).join("config.toml")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["seed"].as_integer(), Some(seed), "{run}");
        if let Some(lr) = lr {
            assert_eq!(config["train"]["lr"].as_float(), Some(lr), "{run}");
        }
    }
    let flops = |run: &str| -> Vec<f64> {
        outcome
            .points
            .iter()
            .filter(|p| p.run == run)
            .map(|p| p.flops)
            .collect()
    };
    for seed in [0, 1] {
        let rl = flops(&format!("rl-seed{seed}"));
        let sft = flops(&format!("sft-lr1e-3-seed{seed}"));
        assert_eq!(rl.len(), sft.len(), "seed {seed}");
        for (s, r) in sft.iter().zip(&rl) {
            assert!(s >= r && *s < 1.5 * r, "seed {seed}: SFT {s:e} vs RL {r:e}");
        }
    }
    assert_eq!(
        line_of(&outcome.report, "| variant |"),
        "| variant | Init | RL | SFT lr 1e-3 | SFT lr 1e-2 |"
    );
    assert_eq!(
        line_of(&outcome.report, "| gp-l-id (verify 1) |"),
        "| gp-l-id (verify 1) | 0.0% ± 0.0 | 50.0% ± 70.7 s.d. (2 seeds, +50.0 pp) | \
         0.0% ± 0.0 s.d. (2 seeds, +0.0 pp) | 100.0% ± 0.0 s.d. (2 seeds, +100.0 pp) |"
    );
    let _ = std::fs::remove_dir_all(study.dir.parent().unwrap());
}

/// `[arms.<name>]`: a further branch with some settings changed, trained and reported beside
/// the two branches in its own folder and column.
#[test]
fn a_further_arm_changes_its_branch_and_gets_its_own_column() {
    let text = format!(
        "{STUDY}[arms.grpo]\nrl = {{ ppo = {{ advantage = \"group\", group_size = 2 }} }}\n\
         [arms.more-data]\nsft = {{ data = {{ generate = {{ n = 200, seed = 7 }} }} }}\n"
    );
    let (outcome, study) = scripted("study-more-arms", &text, |study, model| {
        model.starts_with(study.dir.join("grpo"))
    });
    let config = |run: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(study.dir.join(run).join("config.toml")).unwrap())
            .unwrap()
    };
    let grpo = config("grpo");
    assert_eq!(grpo["ppo"]["advantage"].as_str(), Some("group"));
    assert_eq!(grpo["ppo"]["group_size"].as_integer(), Some(2));
    assert_eq!(
        grpo["ppo"]["num_updates"].as_integer(),
        Some(2),
        "the rest is the RL branch's"
    );
    let more = config("more-data");
    let data = &more["data"];
    assert_eq!(data["generate"]["n"].as_integer(), Some(200));
    assert_eq!(data["generate"]["prompt_layout"].as_str(), Some("compact"));
    assert!(data["path"].as_str().unwrap().contains("more-data"));
    assert!(outcome.points.iter().any(|p| p.run == "more-data"));
    assert_eq!(
        line_of(&outcome.report, "| variant |"),
        "| variant | Init | RL | grpo | SFT | more-data |"
    );
    assert_eq!(
        line_of(&outcome.report, "| gp-l-id (verify 1) |"),
        "| gp-l-id (verify 1) | 0.0% ± 0.0 | 0.0% ± 0.0 (+0.0 pp) | 100.0% ± 0.0 (+100.0 pp) | \
         0.0% ± 0.0 (+0.0 pp) | 0.0% ± 0.0 (+0.0 pp) |"
    );
    let _ = std::fs::remove_dir_all(study.dir.parent().unwrap());
}

/// `toml` with `over` merged in, table by table.
fn merged(mut base: toml::Table, over: toml::Table) -> toml::Table {
    for (key, value) in over {
        let value = match (base.remove(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                toml::Value::Table(merged(b, o))
            }
            (_, value) => value,
        };
        base.insert(key, value);
    }
    base
}

/// The shipped every-arm study (config/study/gp-l-arms-tiny.toml), shortened to seconds: every
/// arm runs, gets its folder, its column, its curve (a point per checkpoint) and its KL from the
/// Init; the retention variant has its row; the distilled arm learns from the RL branch's final
/// model after it exists, the base-model arm starts from the study's random base model, and the
/// self-SFT arm trains on exactly the solved episodes of its start model.
#[test]
fn every_arm_of_the_shipped_arms_study_runs_and_is_reported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/study/gp-l-arms-tiny.toml");
    let shipped: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let short: toml::Table = toml::from_str(
        r#"kl_prompts = 6
[init]
data = { valid_fraction = 0.0, generate = { n = 24 } }
model = { hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 }
train = { micro_batch = 8, log_every = 1 }
[rl]
checkpoint_every = 1
rollout = { num_envs = 2, num_steps = 2, max_new_tokens = 8 }
ppo = { num_updates = 2, samples_per_step = 2, mini_batch_size = 2 }
value_head = { hidden = [8] }
[sft]
data = { valid_fraction = 0.0, generate = { n = 400 } }
train = { micro_batch = 2, log_every = 1 }
[arms.grpo]
rl = { ppo = { group_size = 2 } }
[arms.self-sft]
self_sft = { episodes = 16, batch = 4 }
sft = { data = { valid_fraction = 0.0 } }
[eval]
episodes = 12
seed = 1000
"#,
    )
    .unwrap();
    let mut text = toml::to_string(&merged(shipped, short)).unwrap();
    text = text.replace("runs_dir = \"runs\"\n", "");
    let (outcome, study) = scripted("study-every-arm", &text, |study, model| {
        model.starts_with(study.dir.join("rl"))
    });
    let arms = [
        "rl", "grpo", "distill", "base-rl", "sft", "dft", "self-sft", "cot", "diverse",
    ];
    for arm in arms {
        let points: Vec<_> = outcome.points.iter().filter(|p| p.arm == arm).collect();
        assert!(!points.is_empty(), "no checkpoint of `{arm}`");
        for p in &points {
            let kl = p.kl_from_init.unwrap();
            assert!(kl.is_finite() && kl >= 0.0, "{arm}: {kl}");
        }
    }
    let init = outcome.points.iter().find(|p| p.arm == "init").unwrap();
    assert_eq!(init.kl_from_init, Some(0.0));
    // The distilled arm runs after its teacher, the RL branch (whose final model it loads, or
    // fails), and is listed after the other RL runs.
    let at = |arm: &str| outcome.points.iter().position(|p| p.arm == arm).unwrap();
    assert!(
        ["rl", "grpo", "base-rl"]
            .iter()
            .all(|a| at("distill") > at(a))
    );
    let header = line_of(&outcome.report, "| variant |");
    let mut columns: Vec<&str> = header.split('|').map(str::trim).collect();
    columns.sort_unstable();
    let mut expected = vec!["", "", "variant", "Init", "RL", "SFT"];
    expected.extend([
        "grpo", "distill", "base-rl", "dft", "self-sft", "cot", "diverse",
    ]);
    expected.sort_unstable();
    assert_eq!(columns, expected, "{header}");
    let columns = header.matches('|').count();
    for row in [
        "| gp-l-id (verify 5) |",
        "| gp-l-id first attempt (verify 5) |",
        "| gp-l-ood-rule (verify 5) |",
        "| gp-l-retain-face11 (verify 5) |",
        "| KL from the Init (nats/token) | 0.0000 |",
    ] {
        let line = line_of(&outcome.report, row);
        assert_eq!(line.matches('|').count(), columns, "{line}");
        assert!(!line.contains(" - |"), "an arm without a value: {line}");
    }
    for plot in [
        "success-gp-l-id-verify5.png",
        "success-gp-l-retain-face11-verify5.png",
        "id-vs-gp-l-ood-rule-verify5.png",
    ] {
        assert!(study.dir.join(plot).exists(), "{plot}");
    }
    let config = |run: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(study.dir.join(run).join("config.toml")).unwrap())
            .unwrap()
    };
    let distill = config("distill");
    let teacher = study.dir.join("rl").join("final");
    assert_eq!(
        distill["distill"]["teacher"].as_str(),
        Some(teacher.to_str().unwrap())
    );
    assert_eq!(config("grpo")["ppo"]["advantage"].as_str(), Some("group"));
    assert_eq!(config("dft")["train"]["loss"].as_str(), Some("dft"));
    // The data arms write data of their own: answers that show their arithmetic, prompts
    // worded in several ways.
    let cot = read_chat_jsonl(&study.dir.join("data/cot/data.jsonl")).unwrap();
    assert!(cot.iter().all(|e| e.response.contains("\"thought\": \"")));
    let diverse = read_chat_jsonl(&study.dir.join("data/diverse/data.jsonl")).unwrap();
    let wordings: std::collections::BTreeSet<_> = diverse
        .iter()
        .map(|e| {
            e.prompt[0]
                .text
                .lines()
                .last()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(wordings.len() >= 3, "{wordings:?}");
    let base = study.dir.join("base");
    assert_eq!(
        config("base-rl")["policy"].as_str(),
        Some(base.to_str().unwrap())
    );
    assert!(base.join("model.safetensors").exists());
    // The self-SFT data: the start model's solved hands only (even-length prompts).
    let data = read_chat_jsonl(&study.dir.join("data/self-sft/data.jsonl")).unwrap();
    assert!(!data.is_empty());
    for e in &data {
        assert!(
            e.prompt[0].text.len().is_multiple_of(2),
            "an unsolved hand was kept"
        );
    }
    let _ = std::fs::remove_dir_all(study.dir.parent().unwrap());
}
