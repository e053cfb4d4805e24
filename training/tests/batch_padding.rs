//! Rounding batch sizes up (as the GPU backends do, so that a run compiles kernels for one
//! batch size) changes no result on the CPU: padded SFT micro-batches and PPO minibatches give
//! the losses, statistics, gradients and updated weights of exact ones, the short last
//! micro-batch of an epoch included.

mod common;

use std::path::Path;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::AdamConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::{Backbone, Llama, LlamaConfig};
use sftvsrl_training::batch::{SftBatch, batch_rows};
use sftvsrl_training::data::Sequence;
use sftvsrl_training::rl::buffer::{Sample, ScoreBatch};
use sftvsrl_training::rl::config::PpoConfig;
use sftvsrl_training::rl::logprob::ActionWeights;
use sftvsrl_training::rl::ppo::{Experience, UpdateSettings, advantages, ppo_update};
use sftvsrl_training::rl::{ActorCritic, ValueHead};
use sftvsrl_training::{RunConfig, SftConfig, masked_loss, run_sft};

type B = CpuBackend;
type A = Autodiff<B>;

/// Padding rows and columns change the shapes of the CPU's matmuls, and so at most the order
/// in which some f32 sums are taken: results agree to rounding.
const TOLERANCE: f64 = 1e-5;

fn tiny() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        ..LlamaConfig::tiny(16)
    }
}

#[test]
fn batch_rows_pad_short_micro_batches_only_where_lengths_are_rounded() {
    assert_eq!(batch_rows(1, 4, 32), 4);
    assert_eq!(batch_rows(4, 4, 32), 4);
    assert_eq!(batch_rows(1, 4, 1), 1, "exact shapes on the CPU by default");
    assert_eq!(batch_rows(5, 4, 8), 5, "never fewer rows than sequences");
}

/// Two sequences padded to four rows: the same loss, statistics and gradients as the exact
/// batch; the padding rows hold no answer slot and no input token.
#[test]
fn padding_rows_change_no_sft_loss_statistic_or_gradient() {
    let device = Default::default();
    let model = Llama::<A>::init(&tiny(), 4, &device);
    let a = Sequence::text(vec![1, 5, 7, 9, 3, 11], 3);
    let b = Sequence::text(vec![2, 4, 6], 1);
    let run = |rows: usize, multiple: usize| {
        let batch = SftBatch::<A>::with_rows(&[&a, &b], rows, multiple, None, &device).unwrap();
        let out = masked_loss(&model, &batch, 10).unwrap();
        let stats = batch.real_stats(out.stats);
        let loss = out.loss.clone().into_data().to_vec::<f32>().unwrap()[0];
        let grads = out.loss.backward();
        let grad: Vec<f32> = model
            .embed_tokens
            .weight
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        (batch, stats, loss, grad)
    };
    let (exact, exact_stats, exact_loss, exact_grad) = run(2, 1);
    for multiple in [1, 8] {
        let (padded, stats, loss, grad) = run(4, multiple);
        assert_eq!(padded.input_ids.dims()[0], 4);
        assert_eq!(padded.padding_rows, 2);
        assert_eq!(padded.input_tokens, exact.input_tokens);
        assert_eq!(padded.target_tokens, exact.target_tokens);
        assert_eq!(stats.sequences, 2, "padding rows are no sequences");
        assert_eq!(
            (stats.tokens, stats.correct),
            (exact_stats.tokens, exact_stats.correct)
        );
        assert_eq!(stats.exact, exact_stats.exact);
        assert!((stats.nll_sum - exact_stats.nll_sum).abs() < TOLERANCE);
        assert!((f64::from(loss) - f64::from(exact_loss)).abs() < TOLERANCE);
        let worst = max_diff(&grad, &exact_grad);
        assert!(f64::from(worst) < TOLERANCE, "gradient differs by {worst}");
    }
}

/// Samples with prompts and responses of different lengths.
fn samples() -> Vec<Sample> {
    (0..8)
        .map(|i| {
            let response: Vec<u32> = (0..2 + i % 3).map(|k| 3 + ((i + k) % 9) as u32).collect();
            let weights = ActionWeights {
                weights: vec![1.0; response.len()],
                constant: None,
            };
            let token_logprobs = vec![-2.5; response.len()];
            Sample {
                env: i % 4,
                episode: 0,
                depth: 0,
                prompt: (0..2 + i % 4)
                    .map(|k| 1 + ((i * 3 + k) % 12) as u32)
                    .collect(),
                logprob: weights.logprob(&token_logprobs),
                response,
                text: String::new(),
                token_logprobs,
                weights,
                value: 0.1 * i as f32,
                reward: if i % 3 == 0 { 1.0 } else { -0.5 },
                kl: 0.0,
                terminated: i >= 4,
                truncated: false,
                parsable: true,
                image: None,
            }
        })
        .collect()
}

fn actor_critic<X: Backend>(device: &X::Device) -> ActorCritic<X> {
    ActorCritic {
        policy: Backbone::Text(Llama::init(&tiny(), 2, device)),
        value_head: ValueHead::new(16, &[8], 2, device),
    }
}

/// A PPO scoring batch padded in rows and slots scores its samples as the exact batch does.
#[test]
fn padded_score_batches_score_the_samples_alone() {
    let device = Default::default();
    let model = actor_critic::<A>(&device);
    let all = samples();
    let picked: Vec<&Sample> = all[..3].iter().collect();
    let score = |rows: usize, multiple: usize| {
        let batch = ScoreBatch::<A>::with_rows(&picked, rows, multiple, None, &device).unwrap();
        let scores = batch.score(&model.policy, 0.7).unwrap();
        let host = |t: Tensor<A, 1>| t.into_data().to_vec::<f32>().unwrap();
        let values = host(batch.values(&model, scores.hidden.clone()));
        let actions = host(batch.action_logprobs(scores.logprobs.clone()));
        let logprobs = batch
            .response_values(scores.logprobs.clone(), &picked)
            .concat();
        let logits: Vec<f32> = scores.logits.into_data().to_vec().unwrap();
        (batch.input_ids.dims(), values, actions, logprobs, logits)
    };
    let (exact_dims, values, actions, logprobs, logits) = score(3, 1);
    assert_eq!(exact_dims[0], 3);
    let (dims, v, a, l, g) = score(5, 8);
    assert_eq!(dims, [5, 8], "rows and width rounded up");
    for (what, x, y) in [
        ("values", &values, &v),
        ("action log-probs", &actions, &a),
        ("token log-probs", &logprobs, &l),
        ("logits", &logits, &g),
    ] {
        assert_eq!(
            x.len(),
            y.len(),
            "{what}: only the samples' rows and tokens"
        );
        let worst = max_diff(x, y);
        assert!(f64::from(worst) < TOLERANCE, "{what} differ by {worst}");
    }
}

/// A PPO update whose epochs end with a short minibatch (8 samples in minibatches of 3): with
/// rows and widths rounded up, the same statistics and updated weights.
#[test]
fn padded_minibatches_give_the_same_ppo_update() {
    let device = Default::default();
    let all = samples();
    let cfg = PpoConfig {
        num_ppo_epochs: 2,
        mini_batch_size: 3,
        samples_per_step: 3,
        max_grad_norm: 1.0,
        entropy_coef: 0.01,
        ..PpoConfig::default()
    };
    let (adv, returns) = advantages(&all, &[0.0; 4], &cfg);
    let update = |multiple: usize| {
        let mut optim = AdamConfig::new().init();
        let (model, stats) = ppo_update(
            actor_critic::<A>(&device),
            &mut optim,
            Experience {
                samples: &all,
                advantages: &adv,
                returns: &returns,
            },
            &cfg,
            UpdateSettings {
                lr: 1e-3,
                temperature: 0.7,
                seed: 3,
                steps_before: 0,
                pad_to_multiple_of: multiple,
            },
            None,
            &device,
        )
        .unwrap();
        (parameters(&model.valid()), stats)
    };
    let (exact, exact_stats) = update(1);
    let (padded, stats) = update(8);
    assert_eq!(stats.optimizer_steps, 6);
    assert_eq!(stats.trained_tokens, exact_stats.trained_tokens);
    for (what, x, y) in [
        ("policy loss", exact_stats.policy_loss, stats.policy_loss),
        ("value loss", exact_stats.value_loss, stats.value_loss),
        ("entropy", exact_stats.entropy, stats.entropy),
        ("gradient norm", exact_stats.grad_norm, stats.grad_norm),
    ] {
        assert!((x - y).abs() < TOLERANCE, "{what}: {x} vs {y}");
    }
    let worst = exact
        .iter()
        .zip(&padded)
        .map(|(a, b)| max_diff(a, b))
        .fold(0f32, f32::max);
    assert!(f64::from(worst) < TOLERANCE, "weights differ by {worst}");
}

/// An SFT run whose epoch ends with a short micro-batch (16 examples in steps of 2 × 3),
/// with lengths rounded to 8 and short micro-batches padded to 3 rows: the losses, the
/// validation statistics and the trained weights of the exact run.
#[test]
fn sft_run_with_padded_micro_batches_trains_as_the_exact_run() {
    let dir = common::scratch("sft-padding");
    let run = |name: &str, multiple: usize| {
        let text = format!(
            r#"
name = "{name}"
runs_dir = "{runs}"
seed = 4
pad_to_multiple_of = {multiple}
[data]
path = "{data}"
valid_fraction = 0.2
[data.generate]
n = 20
seed = 0
[model]
init = "scratch"
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[train]
epochs = 2
micro_batch = 3
grad_accum = 2
lr = 1e-3
warmup_ratio = 0.0
max_grad_norm = 1.0
log_every = 1
checkpoint_every = 3
"#,
            runs = dir.join("runs").display(),
            data = dir.join("data/gp.jsonl").display(),
        );
        let config = SftConfig::from_toml(&text, Path::new("sft.toml")).unwrap();
        let mut quiet = |_: &str| {};
        let summary = run_sft::<A>(&config, false, &Default::default(), &mut quiet).unwrap();
        let metrics = std::fs::read_to_string(summary.run_dir.join("metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = metrics
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let model = sftvsrl_model::load_pretrained::<B>(&summary.final_dir, &Default::default())
            .unwrap()
            .model;
        (lines, parameters(&model))
    };
    let (exact_lines, exact_weights) = run("exact", 1);
    let (padded_lines, padded_weights) = run("padded", 8);
    assert_eq!(exact_lines.len(), padded_lines.len());
    let train = exact_lines.iter().filter(|l| l["split"] == "train").count();
    assert_eq!(train, 6, "two epochs of three steps");
    for (e, p) in exact_lines.iter().zip(&padded_lines) {
        assert_eq!(e["split"], p["split"]);
        assert_eq!(e["tokens"], p["tokens"], "padding is no trained token");
        for key in ["loss", "token_accuracy", "exact_match"] {
            if let (Some(x), Some(y)) = (e[key].as_f64(), p[key].as_f64()) {
                assert!((x - y).abs() < TOLERANCE, "{key} at {e}: {x} vs {y}");
            }
        }
    }
    let worst = exact_weights
        .iter()
        .zip(&padded_weights)
        .map(|(a, b)| max_diff(a, b))
        .fold(0f32, f32::max);
    assert!(f64::from(worst) < TOLERANCE, "weights differ by {worst}");
}

struct Parameters(Vec<Vec<f32>>);

impl<BB: Backend> ModuleVisitor<BB> for Parameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<BB, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

fn parameters<BB: Backend, M: Module<BB>>(module: &M) -> Vec<Vec<f32>> {
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
