//! The study driven by scripted policies of known success: a shortened study trains its three
//! stages for real, and its checkpoints are played by scripts (the Init and the SFT branch never
//! solve a hand, the RL branch always does), so the report must show exactly those rates.

use std::path::Path;

use burn::backend::Autodiff;
use sftvsrl_envs::Transcript;
use sftvsrl_envs::gp::expert::answer_from_prompt;
use sftvsrl_envs::gp::prompt::PromptLayout;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_eval::{EvalConfig, Study, evaluate, run_study_with};
use sftvsrl_model::Tokenizer;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_training::ScriptedPolicy;

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

#[test]
fn a_study_of_scripted_checkpoints_reports_their_known_success() {
    let dir = std::env::temp_dir().join(format!("sftvsrl-study-scripted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("runs_dir = \"{}\"\n{STUDY}", dir.display());
    let study = Study::from_toml(&text, Path::new("study.toml")).unwrap();
    let mut evaluator = |model: &Path, config: &EvalConfig, progress: &mut dyn FnMut(usize)| {
        let tokenizer = Tokenizer::from_file(&model.join("tokenizer.json"))?;
        let solves = model.starts_with(study.dir.join("rl"));
        let compact = GpConfig {
            prompt_layout: PromptLayout::Compact,
            ..GpConfig::variant(Variant::Id, false)
        };
        let answer = move |t: &Transcript| match solves {
            true => answer_from_prompt(&t.turns[0].text, &compact).unwrap(),
            false => "{\"formula\": \"1\"}".to_string(),
        };
        let mut policy = ScriptedPolicy {
            tokenizer: tokenizer.clone(),
            answer,
            sees_images: false,
        };
        evaluate(&mut policy, &tokenizer, config, progress)
    };
    let device = Default::default();
    let outcome = run_study_with::<Autodiff<CpuBackend>>(
        &study,
        false,
        &device,
        &mut |_: &str| {},
        &mut evaluator,
    )
    .unwrap();
    for p in &outcome.points {
        let r = &p.results[0];
        let expected = if p.branch.name() == "rl" { 12 } else { 0 };
        assert_eq!((r.successes, r.episodes), (expected, 12), "{:?}", p.branch);
    }
    let report = std::fs::read_to_string(&outcome.report).unwrap();
    let headline = report
        .lines()
        .find(|l| l.starts_with("| gp-l-id (verify 1) |"))
        .unwrap();
    assert_eq!(
        headline,
        "| gp-l-id (verify 1) | 0.0% ± 0.0 | 100.0% ± 0.0 (+100.0 pp) | 0.0% ± 0.0 (+0.0 pp) |"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
