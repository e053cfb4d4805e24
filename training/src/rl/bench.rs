//! `sftvsrl bench rl`: the wall time of PPO updates split into generation (batched KV-cache
//! sampling and value estimates), environment (decoding and verifier steps) and optimisation,
//! on a model with random weights and a word-level tokenizer over GeneralPoints expert data.
//! A random policy answers with `max_new_tokens` tokens every time, the costliest case.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use sftvsrl_envs::gp::expert::{ExpertSolution, expert_examples};
use sftvsrl_envs::gp::{GpConfig, Variant};
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{
    Backbone, FusedAdamW, GenerateConfig, Llama, LlamaConfig, Sampling, word_level_tokenizer,
};

use super::config::PpoConfig;
use super::logprob::answer_marker;
use super::ppo::{Experience, UpdateSettings, advantages, ppo_update};
use super::rollout::{CollectSettings, collect, gp_parsable, rl_pool};
use super::value_head::{ActorCritic, ValueHead};
use crate::engine::gp_envs;
use crate::error::TrainError;
use crate::policy::backbone_policy;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RlBenchConfig {
    /// A name for the model shape.
    pub model_name: String,
    /// The model shape (the vocabulary is at least the tokenizer's).
    #[serde(skip)]
    pub model: LlamaConfig,
    pub num_envs: usize,
    pub num_steps: usize,
    pub max_new_tokens: usize,
    pub num_ppo_epochs: usize,
    pub mini_batch_size: usize,
    /// Samples per optimizer step (a multiple of `mini_batch_size`).
    pub samples_per_step: usize,
    /// Updates timed (after one untimed warm-up update).
    pub updates: usize,
}

/// Mean seconds per update, by phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RlBenchReport {
    pub config: RlBenchConfig,
    /// Policy and value head.
    pub parameters: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub generation_s: f64,
    pub environment_s: f64,
    pub optimisation_s: f64,
    pub total_s: f64,
    /// Environment time as a fraction of the total.
    pub environment_share: f64,
    /// Prompt and generated tokens per update.
    pub prompt_tokens: f64,
    pub generated_tokens: f64,
    /// Generated tokens per second of generation time.
    pub generated_tokens_per_s: f64,
}

/// Times `config.updates` PPO updates (after a warm-up) on GeneralPoints.
pub fn bench_rl<A: AutodiffBackend>(
    config: &RlBenchConfig,
    device: &A::Device,
) -> Result<RlBenchReport, TrainError> {
    let gp = GpConfig::variant(Variant::Id, false);
    let examples: Vec<_> = expert_examples(&gp, 0, 200, ExpertSolution::Random).collect();
    let corpus = examples
        .iter()
        .flat_map(|e| [e.prompt.as_str(), e.response.as_str()]);
    let tokenizer = word_level_tokenizer(corpus, 1)?;
    let shape = LlamaConfig {
        vocab_size: config.model.vocab_size.max(tokenizer.vocab_size()),
        eos_token_ids: tokenizer.eos_id().into_iter().collect(),
        ..config.model.clone()
    };
    let mut model = ActorCritic {
        policy: Backbone::Text(Llama::<A>::init(&shape, 0, device)),
        value_head: ValueHead::new(shape.hidden_size, &[1024, 512], 0, device),
    };
    let mut optim = FusedAdamW::new(0.9, 0.999, 1e-5, 0.0).init::<A, ActorCritic<A>>();
    let ppo = PpoConfig {
        num_ppo_epochs: config.num_ppo_epochs,
        mini_batch_size: config.mini_batch_size,
        samples_per_step: config.samples_per_step,
        ..PpoConfig::default()
    };
    let marker = answer_marker(&tokenizer, &ppo.answer_key)?;
    let envs = gp_envs(&gp, config.num_envs)?;
    let mut pool = rl_pool(envs, 0, 1, None, &tokenizer)?;
    let settings = CollectSettings::<A::InnerBackend> {
        num_steps: config.num_steps,
        generate: GenerateConfig {
            max_new_tokens: config.max_new_tokens,
            sampling: Sampling {
                temperature: 0.2,
                top_p: 0.9,
            },
            // A random policy never stops early: every response is `max_new_tokens` long.
            stop_tokens: Vec::new(),
            seed: 0,
            pad_to_multiple_of: None,
        },
        seed: 0,
        marker: &marker,
        thought_coef: ppo.thought_prob_coef,
        parsable: gp_parsable,
        kl: None,
    };
    let (mut generation, mut environment, mut optimisation) = (0.0, 0.0, 0.0);
    let (mut prompt_tokens, mut generated_tokens) = (0u64, 0u64);
    for update in 0..=config.updates {
        let inference = model.valid();
        let mut policy =
            backbone_policy(&inference.policy, Some(&inference.value_head), None, device)?;
        let collected = collect(
            policy.as_mut(),
            &tokenizer,
            &mut pool,
            &settings,
            None,
            device,
        )?;
        let (adv, returns) = advantages(&collected.samples, &collected.next_values, &ppo);
        let start = Instant::now();
        let update_settings = UpdateSettings {
            lr: 1e-6,
            temperature: 0.2,
            seed: update as u64,
            steps_before: 0,
            pad_to_multiple_of: pad_multiple::<A>(None, device),
        };
        model = ppo_update(
            model,
            &mut optim,
            Experience {
                samples: &collected.samples,
                advantages: &adv,
                returns: &returns,
            },
            &ppo,
            update_settings,
            None,
            device,
        )?
        .0;
        if update > 0 {
            optimisation += start.elapsed().as_secs_f64();
            generation += collected.timing.generation.as_secs_f64();
            environment += collected.timing.environment.as_secs_f64();
            prompt_tokens += collected.prompt_tokens;
            generated_tokens += collected.generated_tokens;
        }
    }
    let n = config.updates.max(1) as f64;
    let total = generation + environment + optimisation;
    Ok(RlBenchReport {
        config: config.clone(),
        parameters: model.num_params(),
        hidden_size: shape.hidden_size,
        layers: shape.num_hidden_layers,
        generation_s: generation / n,
        environment_s: environment / n,
        optimisation_s: optimisation / n,
        total_s: total / n,
        environment_share: environment / total.max(f64::MIN_POSITIVE),
        prompt_tokens: prompt_tokens as f64 / n,
        generated_tokens: generated_tokens as f64 / n,
        generated_tokens_per_s: generated_tokens as f64 / generation.max(f64::MIN_POSITIVE),
    })
}
