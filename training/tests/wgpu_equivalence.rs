//! The GPU backends train and evaluate as the CPU does: on a tiny model, a few SFT steps, one
//! PPO update (rollout, scores, loss, optimizer step) and one evaluation batch give the CPU
//! backend's (Flex) losses, sampled tokens, log-probs, rewards and updated weights, within the
//! tolerances below. The wgpu tests (`--features wgpu`, names holding `wgpu`) run in CI on
//! lavapipe; the same checks run on CUDA with `--features cuda` (names holding `cuda`) on a
//! machine with an NVIDIA GPU, where they fail at device start-up if there is none.
//!
//! The GPU runs use the backends' default padding (sequence lengths, answer slots and short
//! micro-batches rounded up, see `pad_to_multiple_of`), the CPU runs exact shapes: the
//! comparison also checks that padding changes no result.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::AdamConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use sftvsrl_envs::gp::expert::{ExpertSolution, expert_examples};
use sftvsrl_envs::gp::prompt::PromptLayout;
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::device::{CpuBackend, pad_multiple};
use sftvsrl_model::{
    Backbone, GenerateConfig, Llama, LlamaConfig, Sampling, Tokenizer, generate, load_pretrained,
    word_level_tokenizer_with,
};
use sftvsrl_training::data::{read_chat_jsonl, tokenize_all};
use sftvsrl_training::engine::gp_envs;
use sftvsrl_training::rl::buffer::Sample;
use sftvsrl_training::rl::config::PpoConfig;
use sftvsrl_training::rl::logprob::answer_marker;
use sftvsrl_training::rl::ppo::{Experience, UpdateSettings, UpdateStats, advantages, ppo_update};
use sftvsrl_training::rl::rollout::{CollectSettings, collect, gp_parsable, rl_pool};
use sftvsrl_training::rl::{ActorCritic, ValueHead};
use sftvsrl_training::run::validate;
use sftvsrl_training::{RunConfig, SftConfig, StepStats, backbone_policy, run_sft};

/// Losses (per token, of order 1–10): the GPU backends sum f32 products and reduce rows in
/// another order than the CPU (tiled matmuls, tree reductions, fused kernels), which moves
/// the last bits of every activation; through a two-layer model and a softmax that is about
/// 1e-6 relative. 1e-4 leaves room for that and for the compounding over a few optimizer
/// steps, while a changed seed, learning rate or token moves a loss by 1e-2 or more.
const LOSS_TOLERANCE: f64 = 1e-4;
/// Per-token log-probs and value estimates: the same reordering of f32 sums, one forward pass.
const LOGPROB_TOLERANCE: f32 = 1e-4;
/// Updated weights, absolute: Adam divides each gradient by its running RMS, so an element
/// whose gradient is almost 0 moves by up to `lr` on either backend whatever the sign of the
/// rounding noise in it; the largest difference of a few steps is a few `lr` at worst in
/// theory, and far below in practice (the measured worst case is a few 1e-7 with lr 1e-3).
/// 1e-5 keeps the check two orders of magnitude under one Adam step (`lr` = 1e-3).
const WEIGHT_TOLERANCE: f32 = 1e-5;
/// The learning rates of the compared runs.
const SFT_LR: f64 = 1e-3;
const PPO_LR: f64 = 1e-3;

/// The CPU backend every GPU result is compared with.
type Cpu = CpuBackend;

// ---------------------------------------------------------------------------------------------
// SFT: a few optimizer steps of the real run (data, batches, loss, clipping, AdamW, export).

/// The SFT run's config: 10 GeneralPoints expert examples in the compact prompt layout (8
/// trained, 2 held out) in steps of 2 micro-batches of 3, so that the second step ends the
/// epoch with a short micro-batch (2 sequences, padded to 3 rows on the GPU) and the
/// validation is one short micro-batch. Small, as lavapipe runs it in CI.
fn sft_config(dir: &Path, name: &str, lr: f64) -> SftConfig {
    let text = format!(
        r#"
name = "{name}"
runs_dir = "{runs}"
seed = 4
[data]
path = "{data}"
valid_fraction = 0.2
[data.generate]
n = 10
seed = 0
prompt_layout = "compact"
[model]
init = "scratch"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[train]
epochs = 1
micro_batch = 3
grad_accum = 2
lr = {lr:e}
warmup_ratio = 0.0
max_grad_norm = 1.0
log_every = 1
checkpoint_every = 1000
"#,
        runs = dir.join("runs").display(),
        data = dir.join("data/gp.jsonl").display(),
    );
    SftConfig::from_toml(&text, Path::new("sft.toml")).unwrap()
}

/// Runs SFT on backend `B` and returns the per-step training losses, the validation stats and
/// the exported model folder.
fn sft_run<B: Backend>(
    dir: &Path,
    name: &str,
    lr: f64,
    device: &B::Device,
) -> (Vec<f64>, StepStats, PathBuf) {
    let config = sft_config(dir, name, lr);
    let mut quiet = |_: &str| {};
    let summary = run_sft::<Autodiff<B>>(&config, false, device, &mut quiet).unwrap();
    let metrics = std::fs::read_to_string(summary.run_dir.join("metrics.jsonl")).unwrap();
    let losses = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    (losses, summary.valid.unwrap(), summary.final_dir)
}

/// A few SFT steps on `device` give the CPU's losses, validation stats and weights.
fn sft_steps_match_cpu<G: Backend>(device: G::Device, tag: &str) {
    let dir = common::scratch(&format!("equivalence-sft-{tag}"));
    let (cpu_losses, cpu_valid, cpu_final) =
        sft_run::<Cpu>(&dir, "cpu", SFT_LR, &Default::default());
    let (gpu_losses, gpu_valid, gpu_final) = sft_run::<G>(&dir, "gpu", SFT_LR, &device);
    let loss_gap = (cpu_losses.iter().zip(&gpu_losses))
        .map(|(c, g)| (c - g).abs())
        .fold(0.0, f64::max);
    eprintln!("SFT on {tag}: losses differ by at most {loss_gap:e}");
    assert_eq!(cpu_losses.len(), 2, "two optimizer steps: {cpu_losses:?}");
    assert_eq!(gpu_losses.len(), cpu_losses.len());
    for (step, (c, g)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        assert!(
            (c - g).abs() < LOSS_TOLERANCE,
            "step {}: loss {c} on the CPU, {g} on {tag}",
            step + 1
        );
    }
    // Padding rows do not count as sequences, on either backend.
    assert_eq!(
        (gpu_valid.sequences, gpu_valid.tokens),
        (cpu_valid.sequences, cpu_valid.tokens)
    );
    assert_eq!(cpu_valid.sequences, 2);
    assert!(
        (cpu_valid.loss() - gpu_valid.loss()).abs() < LOSS_TOLERANCE,
        "validation loss {} vs {}",
        cpu_valid.loss(),
        gpu_valid.loss()
    );
    // Both exports read back on the CPU: the weights the GPU run trained.
    let device = Default::default();
    let cpu = load_pretrained::<Cpu>(&cpu_final, &device).unwrap().model;
    let gpu = load_pretrained::<Cpu>(&gpu_final, &device).unwrap().model;
    assert_weights_match(&cpu, &gpu, tag);
}

// ---------------------------------------------------------------------------------------------
// PPO: one rollout and one update with the same seeds.

/// GeneralPoints GP-L (ID) with the compact prompts (a quarter of the reference's tokens), as
/// the SFT data above.
fn compact_gp() -> GpConfig {
    GpConfig {
        prompt_layout: PromptLayout::Compact,
        ..GpConfig::variant(Variant::Id, false)
    }
}

/// A word-level tokenizer over GeneralPoints expert data.
fn gp_tokenizer(gp: &GpConfig) -> Tokenizer {
    let examples: Vec<_> = expert_examples(gp, 0, 50, ExpertSolution::Random).collect();
    let corpus = examples
        .iter()
        .flat_map(|e| [e.prompt.as_str(), e.response.as_str()]);
    word_level_tokenizer_with(corpus, 1, &[]).unwrap()
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

/// What one rollout and update on a backend produced.
struct PpoOutcome {
    samples: Vec<Sample>,
    next_values: Vec<f64>,
    stats: UpdateStats,
    /// Every float parameter of the policy and value head after the update, in module order.
    weights: Vec<Vec<f32>>,
}

/// Collects two steps of four GeneralPoints environments with a seeded tiny policy (sampling
/// at temperature 0.7 from host-drawn uniforms, seeded) and runs one PPO update over them
/// (two epochs of minibatches of 3 out of 8 samples, so each epoch ends with a short one).
fn ppo_round<B: Backend>(device: &B::Device, lr: f64) -> PpoOutcome {
    type A<B> = Autodiff<B>;
    let gp = compact_gp();
    let tokenizer = gp_tokenizer(&gp);
    let model = ActorCritic::<A<B>> {
        policy: Backbone::Text(Llama::init(&tiny_text(&tokenizer), 5, device)),
        value_head: ValueHead::new(32, &[16], 5, device),
    };
    let marker = answer_marker(&tokenizer, "formula").unwrap();
    let multiple = pad_multiple::<B>(None, device);
    let mut pool = rl_pool(gp_envs(&gp, 4).unwrap(), 3, 1, None, &tokenizer).unwrap();
    let inference = model.valid();
    let mut policy =
        backbone_policy(&inference.policy, Some(&inference.value_head), None, device).unwrap();
    let collected = collect(
        policy.as_mut(),
        &tokenizer,
        &mut pool,
        &CollectSettings::<B> {
            num_steps: 2,
            generate: GenerateConfig {
                max_new_tokens: 12,
                sampling: Sampling {
                    temperature: 0.7,
                    top_p: 1.0,
                },
                stop_tokens: tokenizer.stop_tokens(),
                seed: 0,
                pad_to_multiple_of: Some(multiple),
            },
            seed: 11,
            marker: &marker,
            thought_coef: 0.5,
            parsable: gp_parsable,
            kl: None,
        },
        None,
        device,
    )
    .unwrap();
    drop(policy);
    let cfg = PpoConfig {
        num_ppo_epochs: 2,
        mini_batch_size: 3,
        samples_per_step: 3,
        max_grad_norm: 1.0,
        entropy_coef: 0.01,
        ..PpoConfig::default()
    };
    let (adv, returns) = advantages(&collected.samples, &collected.next_values, &cfg);
    let mut optim = AdamConfig::new().init();
    let (model, stats) = ppo_update(
        model,
        &mut optim,
        Experience {
            samples: &collected.samples,
            advantages: &adv,
            returns: &returns,
        },
        &cfg,
        UpdateSettings {
            lr,
            temperature: 0.7,
            seed: 9,
            steps_before: 0,
            pad_to_multiple_of: multiple,
        },
        None,
        device,
    )
    .unwrap();
    PpoOutcome {
        samples: collected.samples,
        next_values: collected.next_values,
        stats,
        weights: parameters(&model.valid()),
    }
}

/// One rollout and PPO update on `device` give the CPU's.
fn ppo_update_matches_cpu<G: Backend>(device: G::Device, tag: &str) {
    let cpu = ppo_round::<Cpu>(&Default::default(), PPO_LR);
    let gpu = ppo_round::<G>(&device, PPO_LR);
    let logprob_gap = (cpu.samples.iter().zip(&gpu.samples))
        .flat_map(|(c, g)| c.token_logprobs.iter().zip(&g.token_logprobs))
        .map(|(c, g)| (c - g).abs())
        .fold(0f32, f32::max);
    eprintln!("PPO on {tag}: token log-probs differ by at most {logprob_gap:e}");
    assert_eq!(cpu.samples.len(), 8);
    assert_eq!(gpu.samples.len(), cpu.samples.len());
    // Tokens are drawn by inverse CDF from host uniforms: the same draw picks the same token
    // unless a uniform falls within rounding distance (~1e-7) of a boundary of the cumulative
    // probabilities, which these seeds do not; so tokens and rewards compare exactly.
    for (i, (c, g)) in cpu.samples.iter().zip(&gpu.samples).enumerate() {
        assert_eq!(c.prompt, g.prompt, "sample {i}: prompt");
        assert_eq!(
            c.response, g.response,
            "sample {i}: sampled tokens on {tag}"
        );
        assert_eq!(c.reward, g.reward, "sample {i}: verifier reward");
        assert_eq!((c.terminated, c.parsable), (g.terminated, g.parsable));
        assert_close(
            &c.token_logprobs,
            &g.token_logprobs,
            LOGPROB_TOLERANCE,
            "log-probs",
        );
        assert_close(
            &[c.logprob],
            &[g.logprob],
            LOGPROB_TOLERANCE,
            "action log-prob",
        );
        assert_close(&[c.value], &[g.value], LOGPROB_TOLERANCE, "value");
    }
    let next = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    assert_close(
        &next(&cpu.next_values),
        &next(&gpu.next_values),
        LOGPROB_TOLERANCE,
        "bootstrap values",
    );
    let (c, g) = (&cpu.stats, &gpu.stats);
    assert_eq!(c.optimizer_steps, 6, "two epochs of minibatches 3 + 3 + 2");
    assert_eq!(
        (g.optimizer_steps, g.skipped, g.trained_tokens),
        (c.optimizer_steps, c.skipped, c.trained_tokens)
    );
    for (what, a, b) in [
        ("policy loss", c.policy_loss, g.policy_loss),
        ("value loss", c.value_loss, g.value_loss),
        ("entropy", c.entropy, g.entropy),
        ("approx KL", c.approx_kl, g.approx_kl),
        ("gradient norm", c.grad_norm, g.grad_norm),
    ] {
        assert!(
            (a - b).abs() < LOSS_TOLERANCE,
            "{what}: {a} on the CPU, {b} on {tag}"
        );
    }
    assert_eq!(cpu.weights.len(), gpu.weights.len());
    let worst = weights_gap(&cpu.weights, &gpu.weights);
    eprintln!("PPO on {tag}: updated weights differ by at most {worst:e}");
    assert!(
        worst < WEIGHT_TOLERANCE,
        "updated weights differ by {worst} on {tag}"
    );
}

// ---------------------------------------------------------------------------------------------
// Evaluation: one batch of greedy generation and of teacher-forced scoring.

/// One evaluation batch on `device` gives the CPU's: greedy answers to GeneralPoints prompts
/// (tokens and log-probs) and the validation loss, token accuracy and exact match.
fn evaluation_matches_cpu<G: Backend>(device: G::Device, tag: &str) {
    let dir = common::scratch(&format!("equivalence-eval-{tag}"));
    // The SFT run's data and tokenizer, and a seeded model over them.
    let config = sft_config(&dir, "data", SFT_LR);
    sftvsrl_training::setup::ensure_data(&config.data).unwrap();
    let examples = read_chat_jsonl(&config.data.path).unwrap();
    let gp = compact_gp();
    let tokenizer = gp_tokenizer(&gp);
    let sequences = tokenize_all(&tokenizer, &examples, 1024, &config.data.path, None).unwrap();
    let sequences = &sequences[..5];
    let prompts: Vec<Vec<u32>> = sequences
        .iter()
        .map(|s| s.ids[..s.prompt_len].to_vec())
        .collect();

    let evaluate = |cpu_side: bool| -> (Vec<Vec<u32>>, Vec<Vec<f32>>, StepStats) {
        fn run<B: Backend>(
            tokenizer: &Tokenizer,
            prompts: &[Vec<u32>],
            sequences: &[sftvsrl_training::data::Sequence],
            device: &B::Device,
        ) -> (Vec<Vec<u32>>, Vec<Vec<f32>>, StepStats) {
            let model = Llama::<B>::init(&tiny_text(tokenizer), 6, device);
            let multiple = pad_multiple::<B>(None, device);
            let out = generate(
                &model,
                prompts,
                &GenerateConfig {
                    max_new_tokens: 16,
                    sampling: Sampling::GREEDY,
                    stop_tokens: tokenizer.stop_tokens(),
                    seed: 0,
                    pad_to_multiple_of: Some(multiple),
                },
                device,
            )
            .unwrap();
            let backbone = Backbone::Text(model);
            // Micro-batches of 2: the last (of 1) is padded to 2 rows on the GPU.
            let stats = validate(&backbone, None, sequences, 2, multiple, device).unwrap();
            let (tokens, logprobs) = out
                .sequences
                .into_iter()
                .map(|s| (s.tokens, s.logprobs))
                .unzip();
            (tokens, logprobs, stats)
        }
        if cpu_side {
            run::<Cpu>(&tokenizer, &prompts, sequences, &Default::default())
        } else {
            run::<G>(&tokenizer, &prompts, sequences, &device)
        }
    };
    let (cpu_tokens, cpu_logprobs, cpu_stats) = evaluate(true);
    let (gpu_tokens, gpu_logprobs, gpu_stats) = evaluate(false);
    let gap = (cpu_logprobs.iter().zip(&gpu_logprobs))
        .map(|(c, g)| max_diff(&c[..c.len().min(g.len())], &g[..c.len().min(g.len())]))
        .fold(0f32, f32::max);
    eprintln!("evaluation on {tag}: greedy log-probs differ by at most {gap:e}");
    // Greedy decoding takes the argmax: the same token unless two logits tie within rounding,
    // which a seeded random model's do not here.
    assert_eq!(cpu_tokens, gpu_tokens, "greedy answers on {tag}");
    assert!(cpu_tokens.iter().all(|t| !t.is_empty()));
    for (c, g) in cpu_logprobs.iter().zip(&gpu_logprobs) {
        assert_close(c, g, LOGPROB_TOLERANCE, "greedy log-probs");
    }
    assert!(
        (cpu_stats.loss() - gpu_stats.loss()).abs() < LOSS_TOLERANCE,
        "validation loss {} on the CPU, {} on {tag}",
        cpu_stats.loss(),
        gpu_stats.loss()
    );
    // Counts of argmax hits compare exactly, for the same reason as the greedy tokens.
    assert_eq!(
        (
            cpu_stats.tokens,
            cpu_stats.correct,
            cpu_stats.sequences,
            cpu_stats.exact
        ),
        (
            gpu_stats.tokens,
            gpu_stats.correct,
            gpu_stats.sequences,
            gpu_stats.exact
        )
    );
    assert_eq!(cpu_stats.sequences, 5);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Collects every float parameter of a module as host values, in module order.
struct Parameters(Vec<Vec<f32>>);

impl<B: Backend> ModuleVisitor<B> for Parameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let values = param.val().into_data().convert::<f32>().to_vec().unwrap();
        self.0.push(values);
    }
}

fn parameters<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    let mut visitor = Parameters(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// The largest elementwise difference between two models' parameters.
fn weight_difference<B: Backend>(a: &Llama<B>, b: &Llama<B>) -> f32 {
    weights_gap(&parameters(a), &parameters(b))
}

/// The largest elementwise difference between two lists of parameters.
fn weights_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| max_diff(x, y))
        .fold(0f32, f32::max)
}

fn assert_weights_match<B: Backend>(cpu: &Llama<B>, gpu: &Llama<B>, tag: &str) {
    let worst = weight_difference(cpu, gpu);
    eprintln!("SFT on {tag}: trained weights differ by at most {worst:e}");
    assert!(
        worst < WEIGHT_TOLERANCE,
        "trained weights differ by {worst} on {tag}"
    );
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = max_diff(a, b);
    assert!(worst < tolerance, "{what}: {a:?} vs {b:?} (worst {worst})");
}

// ---------------------------------------------------------------------------------------------
// The backends.

#[cfg(feature = "wgpu")]
mod wgpu {
    use sftvsrl_model::device::WgpuBackend;

    #[test]
    fn sft_steps_match_cpu_on_wgpu() {
        super::sft_steps_match_cpu::<WgpuBackend>(Default::default(), "wgpu");
    }

    #[test]
    fn ppo_update_matches_cpu_on_wgpu() {
        super::ppo_update_matches_cpu::<WgpuBackend>(Default::default(), "wgpu");
    }

    #[test]
    fn evaluation_matches_cpu_on_wgpu() {
        super::evaluation_matches_cpu::<WgpuBackend>(Default::default(), "wgpu");
    }

    /// The tolerances are tight enough to see a real change: on the CPU alone, a learning rate
    /// 10% off moves the weights of the same runs by more than the weight tolerance.
    #[test]
    fn tolerances_see_a_changed_learning_rate_beside_wgpu() {
        use super::*;
        let cpu = Default::default();
        let dir = common::scratch("equivalence-sensitivity");
        let (_, _, base) = sft_run::<Cpu>(&dir, "base", SFT_LR, &cpu);
        let (_, _, changed) = sft_run::<Cpu>(&dir, "changed", SFT_LR * 1.1, &cpu);
        let load = |dir: &Path| load_pretrained::<Cpu>(dir, &cpu).unwrap().model;
        let sft_gap = weight_difference(&load(&base), &load(&changed));
        let ppo_gap = weights_gap(
            &ppo_round::<Cpu>(&cpu, PPO_LR).weights,
            &ppo_round::<Cpu>(&cpu, PPO_LR * 1.1).weights,
        );
        eprintln!(
            "a 10% learning-rate change moves weights by {sft_gap:e} (SFT), {ppo_gap:e} (PPO)"
        );
        assert!(sft_gap > WEIGHT_TOLERANCE, "SFT: {sft_gap}");
        assert!(ppo_gap > WEIGHT_TOLERANCE, "PPO: {ppo_gap}");
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use sftvsrl_model::device::CudaBackend;

    #[test]
    fn sft_steps_match_cpu_on_cuda() {
        super::sft_steps_match_cpu::<CudaBackend>(Default::default(), "cuda");
    }

    #[test]
    fn ppo_update_matches_cpu_on_cuda() {
        super::ppo_update_matches_cpu::<CudaBackend>(Default::default(), "cuda");
    }

    #[test]
    fn evaluation_matches_cpu_on_cuda() {
        super::evaluation_matches_cpu::<CudaBackend>(Default::default(), "cuda");
    }
}
