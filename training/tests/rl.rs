//! The RL learner end to end on a tiny model (CPU backend): log-probs recorded while sampling
//! equal those of the training forward pass, with exact or rounded-up batch widths; the
//! accumulation window of an update; PPO raises the mean reward of a briefly SFT-trained
//! policy on GeneralPoints; an interrupted and resumed run ends with the same weights as an
//! uninterrupted one; every option runs; a diverging run stops with a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use sftvsrl_envs::gp::expert::{ExpertSolution, expert_examples};
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::word_level::IMAGE;
use sftvsrl_model::{
    Backbone, GenerateConfig, ImageProcessor, Llama, LlamaConfig, Sampling, Tokenizer,
    VisionConfig, Vlm, VlmConfig, word_level_tokenizer_with,
};
use sftvsrl_training::engine::gp_envs;
use sftvsrl_training::rl::buffer::{Sample, ScoreBatch};
use sftvsrl_training::rl::config::PpoConfig;
use sftvsrl_training::rl::logprob::{ActionWeights, answer_marker};
use sftvsrl_training::rl::ppo::{Experience, UpdateSettings, UpdateStats, advantages, ppo_update};
use sftvsrl_training::rl::rollout::{CollectSettings, collect, gp_parsable, rl_pool};
use sftvsrl_training::rl::{ActorCritic, RlConfig, ValueHead, run_rl};
use sftvsrl_training::{PixelCache, RunConfig, SftConfig, TrainError, backbone_policy, run_sft};

type A = Autodiff<CpuBackend>;

#[test]
fn recorded_logprobs_match_the_training_forward_pass() {
    let gp = GpConfig::variant(Variant::Id, false);
    let tokenizer = gp_tokenizer(&gp, &[]);
    let text = Backbone::Text(Llama::init(&tiny_text(&tokenizer), 5, &Default::default()));
    check_recorded_logprobs(text, None, &gp, &tokenizer);
}

/// The same on GP-VL with a vision-language policy: the image tokens sit in every prompt, and
/// the pixels come from the rollout's cache in the update as in generation.
#[test]
fn recorded_logprobs_of_a_vision_policy_match_the_training_forward_pass() {
    let gp = GpConfig::variant(Variant::Id, true);
    let tokenizer = gp_tokenizer(&gp, &[IMAGE]);
    let config = VlmConfig {
        text_config: tiny_text(&tokenizer),
        vision_config: VisionConfig {
            image_size: [32, 32],
            patch_size: 8,
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            layer_norm_eps: 1e-6,
            num_channels: 3,
        },
        image_token_id: tokenizer.token_id(IMAGE).unwrap(),
        projector_merge: 2,
    };
    let vision = Backbone::Vision(Vlm::init(&config, 5, &Default::default()));
    let pixels = PixelCache::new(ImageProcessor::new([32, 32]));
    check_recorded_logprobs(vision, Some(&pixels), &gp, &tokenizer);
    assert!(!pixels.is_empty(), "the update read no cached pixels");
}

/// A word-level tokenizer over GeneralPoints expert data of `gp`, with `extra` specials.
fn gp_tokenizer(gp: &GpConfig, extra: &[&str]) -> Tokenizer {
    let examples: Vec<_> = expert_examples(gp, 0, 50, ExpertSolution::Random).collect();
    let corpus = examples
        .iter()
        .flat_map(|e| [e.prompt.as_str(), e.response.as_str()]);
    word_level_tokenizer_with(corpus, 1, extra).unwrap()
}

/// A two-layer language model of width 32 over `tokenizer`'s vocabulary.
fn tiny_text(tokenizer: &Tokenizer) -> LlamaConfig {
    LlamaConfig {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        head_dim: 8,
        ..LlamaConfig::tiny(tokenizer.vocab_size())
    }
}

/// Collects two steps of four GeneralPoints environments with `policy` and checks that the
/// log-probs, action log-probs and values recorded then equal those of the training pass,
/// at exact and rounded-up batch widths.
fn check_recorded_logprobs(
    policy: Backbone<A>,
    pixels: Option<&PixelCache>,
    gp: &GpConfig,
    tokenizer: &Tokenizer,
) {
    let device = Default::default();
    let model = ActorCritic::<A> {
        policy,
        value_head: ValueHead::new(32, &[16], 5, &device),
    };
    let marker = answer_marker(tokenizer, "formula").unwrap();
    // Two steps of four environments: the second batch mixes prompts of different lengths
    // (first attempts and revisions).
    let mut pool = rl_pool(gp_envs(gp, 4).unwrap(), 3, 1, None, tokenizer).unwrap();
    let inference = model.valid();
    let mut rollout_policy = backbone_policy(
        &inference.policy,
        Some(&inference.value_head),
        pixels,
        &device,
    )
    .unwrap();
    let collected = collect(
        rollout_policy.as_mut(),
        tokenizer,
        &mut pool,
        &CollectSettings::<CpuBackend> {
            num_steps: 2,
            generate: GenerateConfig {
                max_new_tokens: 12,
                sampling: Sampling {
                    temperature: 0.7,
                    top_p: 0.9,
                },
                stop_tokens: Vec::new(),
                seed: 0,
                pad_to_multiple_of: None,
            },
            seed: 11,
            marker: &marker,
            thought_coef: 0.5,
            parsable: gp_parsable,
            kl: None,
        },
        pixels,
        &device,
    )
    .unwrap();
    let samples: Vec<&Sample> = collected.samples.iter().collect();
    let lengths: Vec<usize> = samples.iter().map(|s| s.prompt.len()).collect();
    assert!(lengths.iter().any(|&l| l != lengths[0]), "{lengths:?}");
    assert_eq!(
        samples.iter().all(|s| s.image.is_some()),
        gp.vision,
        "every GP-VL sample keeps its episode's image, and only those"
    );

    // Exact widths, and widths rounded up as on the GPU backends: the same scores.
    for multiple in [1, 16] {
        let vision = model.policy.vision_config().zip(pixels);
        let batch = ScoreBatch::<A>::new(&samples, multiple, vision, &device).unwrap();
        let scores = batch.score(&model.policy, 0.7).unwrap();
        let recomputed = batch.response_values(scores.logprobs.clone(), &samples);
        let mut worst = 0f32;
        for (s, r) in samples.iter().zip(&recomputed) {
            assert_eq!(r.len(), s.token_logprobs.len());
            for (a, b) in s.token_logprobs.iter().zip(r) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(
            worst < 1e-4,
            "multiple {multiple}: largest difference {worst}"
        );
        let actions: Vec<f32> = batch
            .action_logprobs(scores.logprobs)
            .into_data()
            .to_vec()
            .unwrap();
        for (s, a) in samples.iter().zip(actions) {
            assert!((s.logprob - a).abs() < 1e-3, "{} vs {a}", s.logprob);
        }
        // The value estimates recorded at generation equal the training pass's.
        let values: Vec<f32> = batch
            .values(&model, scores.hidden)
            .into_data()
            .to_vec()
            .unwrap();
        for (s, v) in samples.iter().zip(values) {
            assert!((s.value - v).abs() < 1e-4, "{} vs {v}", s.value);
        }
    }
    // Without the vision config, image samples are refused rather than scored blind.
    if gp.vision {
        let e = ScoreBatch::<A>::new(&samples, 1, None, &device).unwrap_err();
        assert!(e.to_string().contains("language model"), "{e}");
    }
}

/// The reference's update, in the default settings: 8 environments × 256 steps, 4 epochs of
/// one-sample minibatches make 8 optimizer steps of 1024 samples (8 processes × gradient
/// accumulation 128), all at the update's learning rate; advantages are whitened per 256
/// samples, i.e. per environment, as each reference process whitens its own buffer. Short
/// made-up responses and a tiny model keep its 8192 passes fast.
/// A made-up step-major buffer of `envs` environments over `steps` steps: short responses,
/// each environment at its own reward level, every episode one step long.
fn made_up_samples(envs: usize, steps: usize) -> Vec<Sample> {
    let weights = ActionWeights {
        weights: vec![0.0, 0.5, 1.0],
        constant: None,
    };
    (0..envs * steps)
        .map(|i| {
            let (t, env) = (i / envs, i % envs);
            let token_logprobs = vec![-1.0, -1.2, -0.8];
            Sample {
                env,
                episode: t as u64,
                depth: 0,
                prompt: vec![1 + (t % 5) as u32, 2],
                response: vec![3, 4 + (i % 3) as u32, 5],
                text: String::new(),
                logprob: weights.logprob(&token_logprobs),
                token_logprobs,
                weights: weights.clone(),
                value: 0.0,
                // Each environment has its own reward level, so that whitening the whole
                // buffer would leave the environments' means apart.
                reward: env as f64 + if t % 2 == 0 { 1.0 } else { -1.0 },
                kl: 0.0,
                terminated: true,
                truncated: false,
                parsable: true,
                image: None,
            }
        })
        .collect()
}

/// One PPO update of `model` over `samples` with Adam at `lr`.
fn update(
    model: ActorCritic<A>,
    samples: &[Sample],
    envs: usize,
    cfg: &PpoConfig,
    lr: f64,
) -> (ActorCritic<A>, UpdateStats) {
    let (adv, returns) = advantages(samples, &vec![0.0; envs], cfg);
    let mut optim = AdamConfig::new().init();
    let settings = UpdateSettings {
        lr,
        temperature: 0.2,
        seed: 0,
        steps_before: 0,
        pad_to_multiple_of: 1,
    };
    let experience = Experience {
        samples,
        advantages: &adv,
        returns: &returns,
    };
    ppo_update(
        model,
        &mut optim,
        experience,
        cfg,
        settings,
        None,
        &Default::default(),
    )
    .unwrap()
}

/// The reference's update, in the default settings: 8 environments × 256 steps, 4 epochs of
/// one-sample minibatches make 8 optimizer steps of 1024 samples (8 processes × gradient
/// accumulation 128), all at the update's learning rate; advantages are whitened per 256
/// samples, i.e. per environment, as each reference process whitens its own buffer. Short
/// made-up responses and a tiny model keep its 8192 passes fast.
#[test]
fn default_update_takes_eight_steps_of_1024_samples() {
    let (envs, steps) = (8, 256);
    let samples = made_up_samples(envs, steps);
    let cfg = PpoConfig::default();
    let (adv, _) = advantages(&samples, &vec![0.0; envs], &cfg);
    for env in 0..envs {
        let own: Vec<f64> = (0..steps).map(|t| adv[t * envs + env]).collect();
        let mean = own.iter().sum::<f64>() / steps as f64;
        let var = own.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (steps - 1) as f64;
        assert!(
            mean.abs() < 1e-9 && (var.sqrt() - 1.0).abs() < 1e-4,
            "env {env}: {mean} {var}"
        );
    }
    let (_, stats) = update(common::tiny_actor_critic(), &samples, envs, &cfg, 1e-6);
    assert_eq!(stats.optimizer_steps, 8);
    let sizes: Vec<usize> = stats.steps.iter().map(|s| s.samples).collect();
    assert_eq!(sizes, vec![1024; 8]);
    assert!(stats.steps.iter().all(|s| s.lr == 1e-6));
    assert_eq!(stats.skipped, 0);
    // Every sample was trained 4 times, 4 input tokens each.
    assert_eq!(stats.trained_tokens, 4 * 2048 * 4);
}

/// The accumulation window: gradients of the minibatches of one optimizer step are averaged
/// by their share of the step's samples, so four minibatches of 2 samples step exactly as one
/// minibatch of the same 8 samples would; stepping after every minibatch does not.
#[test]
fn accumulated_minibatches_step_as_one_batch_of_their_samples() {
    let (envs, steps) = (4, 4);
    let samples = made_up_samples(envs, steps);
    let with = |mini_batch_size: usize, samples_per_step: usize| PpoConfig {
        num_ppo_epochs: 1,
        mini_batch_size,
        samples_per_step,
        ..PpoConfig::default()
    };
    let (accumulated, stats) = update(
        common::tiny_actor_critic(),
        &samples,
        envs,
        &with(2, 8),
        1e-2,
    );
    assert_eq!(
        stats.steps.iter().map(|s| s.samples).collect::<Vec<_>>(),
        [8, 8]
    );
    let (one_batch, _) = update(
        common::tiny_actor_critic(),
        &samples,
        envs,
        &with(8, 8),
        1e-2,
    );
    let (every_minibatch, stats) = update(
        common::tiny_actor_critic(),
        &samples,
        envs,
        &with(2, 2),
        1e-2,
    );
    assert_eq!(stats.optimizer_steps, 8);
    let [a, b, c] = [accumulated, one_batch, every_minibatch].map(|m| common::param_values(&m));
    let max_diff = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        max_diff(&a, &b) < 1e-6,
        "accumulated vs one batch: {}",
        max_diff(&a, &b)
    );
    assert!(
        max_diff(&a, &c) > 1e-3,
        "stepping per minibatch: {}",
        max_diff(&a, &c)
    );
}

/// A policy briefly trained on GeneralPoints expert answers, made once and shared by the
/// tests below.
fn sft_policy() -> &'static Path {
    static POLICY: OnceLock<PathBuf> = OnceLock::new();
    POLICY.get_or_init(|| train_policy(&common::scratch("rl-policy")))
}

fn train_policy(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
name = "init"
runs_dir = "{runs}"
seed = 1
[data]
path = "{data}"
valid_fraction = 0.0
[data.generate]
n = 400
seed = 0
[model]
init = "scratch"
hidden_size = 48
intermediate_size = 96
num_hidden_layers = 2
num_attention_heads = 2
num_key_value_heads = 1
[train]
epochs = 4
micro_batch = 16
lr = 1e-2
warmup_ratio = 0.1
lr_schedule = "cosine"
max_grad_norm = 1.0
checkpoint_every = 1000
"#,
        runs = dir.join("runs").display(),
        data = dir.join("data/gp.jsonl").display(),
    );
    let config = SftConfig::from_toml(&text, Path::new("sft.toml")).unwrap();
    let mut quiet = |_: &str| {};
    run_sft::<A>(&config, false, &Default::default(), &mut quiet)
        .unwrap()
        .final_dir
}

fn rl_config(dir: &Path, policy: &Path, name: &str, extra: &str) -> RlConfig {
    let text = format!(
        r#"
name = "{name}"
runs_dir = "{runs}"
seed = 2
policy = "{policy}"
[rollout]
num_envs = 8
num_steps = 6
max_new_tokens = 96
temperature = 0.7
top_p = 1.0
[optim]
lr = 5e-4
t_max = 100
# One cosine step per update: these few-update runs learn at a steady rate.
schedule_stepping = "per_update"
[value_head]
hidden = [32, 16]
{extra}
"#,
        runs = dir.join("runs").display(),
        policy = policy.display(),
    );
    RlConfig::from_toml(&text, Path::new("rl.toml")).unwrap()
}

const PPO: &str = "[ppo]\nnum_updates = 6\nmini_batch_size = 8\nsamples_per_step = 8\nnum_ppo_epochs = 2\nmax_grad_norm = 1.0\n";

#[test]
fn ppo_raises_the_mean_reward() {
    let dir = common::scratch("rl-reward");
    let policy = sft_policy();
    let mut lines = Vec::new();
    let mut log = |l: &str| lines.push(l.to_string());
    // 16 episodes per update keep the per-update mean reward's noise well below the rise.
    let mut config = rl_config(&dir, policy, "reward", PPO);
    config.rollout.num_envs = 16;
    let summary = run_rl::<A>(&config, false, &Default::default(), &mut log).unwrap();
    let r = &summary.mean_rewards;
    let metrics = std::fs::read_to_string(summary.run_dir.join("metrics.jsonl")).unwrap();
    eprintln!(
        "{}\n{metrics}\nmean reward per update: {r:?}",
        lines.join("\n")
    );
    // The reward per update of a GeneralPoints episode that never answers readably is
    // −16/6 ≈ −2.67 (five −3 attempts and the −1 step-limit call); a weak policy whose readable
    // answers collect stacked penalties (−4, −6 …) starts below that.
    assert_eq!(r.len(), 6);
    let (first, last) = (r[0], (r[4] + r[5]) / 2.0);
    assert!(
        last > first + 0.3,
        "mean reward {first:.3} → {last:.3}: {r:?}"
    );
    let first_line: serde_json::Value =
        serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "mean_reward",
        "episode_success",
        "revision_depth",
        "response_length",
        "approx_kl",
        "clip_fraction",
        "value_loss",
        "explained_variance",
        "lr",
        "flops",
        "time_generation_s",
        "time_environment_s",
        "time_update_s",
    ] {
        assert!(first_line.get(key).is_some(), "{key} missing: {first_line}");
    }
    assert!(summary.final_dir.join("model.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The PPO options the options run switches on together (each departs from the reference).
const OPTIONS: [&str; 5] = [
    "advantage = \"group\"\ngroup_size = 4\n",
    "ratio = \"token\"\n",
    "kl_coef = 0.05\n",
    "entropy_coef = 0.01\n",
    "whiten_advantages = \"off\"\n",
];

#[test]
fn resumed_run_matches_uninterrupted_run_and_options_run() {
    let dir = common::scratch("rl-resume");
    let policy = sft_policy();
    let device = Default::default();
    let mut quiet = |_: &str| {};
    let ppo = |updates: usize| {
        format!(
            "[ppo]\nnum_updates = {updates}\nmini_batch_size = 4\nsamples_per_step = 12\nnum_ppo_epochs = 1\n"
        )
    };
    let full = run_rl::<A>(
        &rl_config(&dir, policy, "full", &ppo(2)),
        false,
        &device,
        &mut quiet,
    )
    .unwrap();
    let cut = run_rl::<A>(
        &rl_config(&dir, policy, "cut", &ppo(1)),
        false,
        &device,
        &mut quiet,
    )
    .unwrap();
    assert_eq!(cut.progress.update, 1);
    let e = run_rl::<A>(
        &rl_config(&dir, policy, "cut", &ppo(2)),
        false,
        &device,
        &mut quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    let resumed = run_rl::<A>(
        &rl_config(&dir, policy, "cut", &ppo(2)),
        true,
        &device,
        &mut quiet,
    )
    .unwrap();
    assert_eq!(resumed.progress, full.progress);
    assert_eq!(resumed.mean_rewards, full.mean_rewards[1..]);
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&resumed.final_dir), weights(&full.final_dir));
    assert_ne!(weights(&resumed.final_dir), weights(policy));

    // Every option switched on at once: GRPO-style groups, per-token ratios, KL to the
    // starting policy, entropy bonus, no whitening.
    let options = format!("{}{}", ppo(1), OPTIONS.concat());
    let s = run_rl::<A>(
        &rl_config(&dir, policy, "options", &options),
        false,
        &device,
        &mut quiet,
    )
    .unwrap();
    let metrics = std::fs::read_to_string(s.run_dir.join("metrics.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(line["kl_penalty"].as_f64().unwrap().abs() < 1e-3, "{line}");
    assert!(line["entropy"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["explained_variance"].is_null(), "{line}");
    // Each option is wired: leaving any one of them out trains other weights.
    for (k, left_out) in OPTIONS.iter().enumerate() {
        let others: String = OPTIONS.iter().filter(|o| *o != left_out).copied().collect();
        let without = run_rl::<A>(
            &rl_config(
                &dir,
                policy,
                &format!("without-{k}"),
                &format!("{}{others}", ppo(1)),
            ),
            false,
            &device,
            &mut quiet,
        )
        .unwrap();
        assert_ne!(
            weights(&without.final_dir),
            weights(&s.final_dir),
            "leaving out {left_out:?} changed nothing"
        );
    }

    // A learning rate of 1e30 blows the weights up at the first optimizer step; the next
    // update stops with a clear error, and the checkpoint before it is kept.
    let diverge = "[ppo]\nnum_updates = 3\nmini_batch_size = 8\nsamples_per_step = 800\nnum_ppo_epochs = 1\n[optim]\nlr = 1e30\nmin_lr = 1e30\n";
    let mut cfg = rl_config(&dir, policy, "diverge", "");
    let over = RlConfig::from_toml(
        &format!("name = \"x\"\npolicy = \"p\"\n{diverge}"),
        Path::new("d.toml"),
    )
    .unwrap();
    cfg.ppo = over.ppo;
    cfg.optim = over.optim;
    let e = run_rl::<A>(&cfg, false, &device, &mut quiet).unwrap_err();
    assert!(matches!(e, TrainError::NonFinite { .. }), "{e}");
    assert!(e.to_string().contains("last good checkpoint"), "{e}");
    let checkpoints: Vec<String> = std::fs::read_dir(dir.join("runs/diverge/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(checkpoints, vec!["step-000001".to_string()]);

    // LoRA on the attention projections: the exported (merged) policy keeps every other weight
    // of the starting policy bit for bit and changes the adapted ones.
    let lora = format!("{}[lora]\nrank = 2\nalpha = 4.0\n", ppo(1));
    let s = run_rl::<A>(
        &rl_config(&dir, policy, "lora", &lora),
        false,
        &device,
        &mut quiet,
    )
    .unwrap();
    let tensors = |d: &Path| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut out: Vec<(String, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.data().to_vec()))
            .collect();
        out.sort();
        out
    };
    let (before, after) = (tensors(policy), tensors(&s.final_dir));
    assert_eq!(before.len(), after.len());
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        let adapted = name.contains("self_attn.") && name.ends_with("proj.weight");
        assert_eq!(a != b, adapted, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
