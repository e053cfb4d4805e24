//! What a study does with real models besides evaluating them: each checkpoint's KL from the
//! Init (RL's Razor), a self-SFT arm's data, and the Init's base model for arms that start
//! `from = "base"`.
//!
//! **KL from the Init** of a checkpoint π: on `kl_prompts` ID training prompts (the RL branch's
//! environment, hands dealt from seeds `0..kl_prompts`), π samples one response each at
//! temperature 1; the figure is the mean over those responses' tokens of the exact
//! KL(π(·|y<t) ‖ π_Init(·|y<t)) over the vocabulary, in nats per token. It is 0 for the Init
//! itself and grows as a branch moves away from it.

use std::path::Path;

use burn::tensor::backend::Backend;
use sftvsrl_model::device::pad_multiple;
use sftvsrl_model::{Backbone, GenerateConfig, Llama, Sampling, load_backbone, save_backbone};
use sftvsrl_training::engine::{Pool, Seeds, Step};
use sftvsrl_training::rl::RlConfig;
use sftvsrl_training::rl::buffer::Sample;
use sftvsrl_training::rl::distill::response_kl;
use sftvsrl_training::rl::logprob::ActionWeights;
use sftvsrl_training::rl::rollout::rl_envs;
use sftvsrl_training::{
    PixelCache, SelfSftConfig, SelfSftSummary, TrainError, backbone_policy, durable,
    write_self_sft_data,
};

use crate::error::EvalError;

/// The mean per-token KL of the checkpoint in `model_dir` from `init` on `prompts` prompts of
/// the RL branch's task `rl` (see the module docs).
pub fn kl_from_init<B: Backend>(
    model_dir: &Path,
    init: &Backbone<B>,
    rl: &RlConfig,
    prompts: usize,
    device: &B::Device,
) -> Result<f64, EvalError> {
    let loaded = load_backbone::<B>(model_dir, device)?;
    let tokenizer = loaded.tokenizer.ok_or_else(|| no_tokenizer(model_dir))?;
    let pixels = loaded.processor.map(PixelCache::new);
    let mut task = rl.clone();
    task.rollout.num_envs = prompts;
    let (envs, _) = rl_envs(&task)?;
    let mut pool = Pool::new(
        envs,
        Seeds::List((0..prompts as u64).collect()),
        None,
        &tokenizer,
    )?;
    let generate = GenerateConfig {
        max_new_tokens: rl.rollout.max_new_tokens,
        sampling: Sampling {
            temperature: 1.0,
            top_p: 1.0,
        },
        stop_tokens: loaded.stop_tokens.clone(),
        seed: 0,
        pad_to_multiple_of: None,
    };
    let steps = {
        let mut policy = backbone_policy(&loaded.model, None, pixels.as_ref(), device)?;
        pool.step(policy.as_mut(), &tokenizer, &generate, false)?
    };
    let samples: Vec<Sample> = steps
        .into_iter()
        .filter(|s| !s.response.tokens.is_empty())
        .map(sample)
        .collect();
    let refs: Vec<&Sample> = samples.iter().collect();
    let vision = loaded.model.vision_config().zip(pixels.as_ref());
    let pad = pad_multiple::<B>(rl.pad_to_multiple_of, device);
    let kl = response_kl(&loaded.model, init, &refs, 1.0, pad, vision, device)?;
    let tokens: usize = samples.iter().map(|s| s.response.len()).sum();
    Ok(kl.iter().sum::<f64>() / tokens.max(1) as f64)
}

/// A scored response of the engine (only its prompt, response and image are read).
fn sample(s: Step) -> Sample {
    let n = s.response.tokens.len();
    Sample {
        env: s.env,
        episode: s.episode,
        depth: s.depth,
        prompt: s.prompt,
        response: s.response.tokens,
        text: s.text,
        token_logprobs: s.response.logprobs,
        weights: ActionWeights {
            weights: vec![1.0; n],
            constant: None,
        },
        logprob: 0.0,
        value: 0.0,
        reward: s.verdict.reward,
        kl: 0.0,
        terminated: s.verdict.terminated,
        truncated: s.verdict.truncated,
        parsable: true,
        image: s.image,
    }
}

/// A self-SFT arm's data: the model in `model_dir` plays `config`'s episodes of the RL
/// branch's task `rl`, and its solved ones are written to `out`.
pub fn sample_self_sft<B: Backend>(
    model_dir: &Path,
    rl: &RlConfig,
    config: &SelfSftConfig,
    out: &Path,
    device: &B::Device,
) -> Result<SelfSftSummary, EvalError> {
    let loaded = load_backbone::<B>(model_dir, device)?;
    let tokenizer = loaded.tokenizer.ok_or_else(|| no_tokenizer(model_dir))?;
    let pixels = loaded.processor.map(PixelCache::new);
    let mut task = rl.clone();
    task.rollout.num_envs = config.batch;
    let (envs, _) = rl_envs(&task)?;
    let mut policy = backbone_policy(&loaded.model, None, pixels.as_ref(), device)?;
    let stop = &loaded.stop_tokens;
    Ok(write_self_sft_data(
        policy.as_mut(),
        &tokenizer,
        envs,
        config,
        stop,
        out,
    )?)
}

/// Writes the Init's base model into `out`: the architecture and tokenizer of the Init in
/// `init_dir` with fresh random weights (seeded by `seed`), as a from-scratch Init starts.
pub fn write_base_model<B: Backend>(
    init_dir: &Path,
    seed: u64,
    out: &Path,
    device: &B::Device,
) -> Result<(), EvalError> {
    let loaded = load_backbone::<B>(init_dir, device)?;
    let Backbone::Text(llama) = &loaded.model else {
        return Err(EvalError::Invalid(
            "`from = \"base\"` needs a pretrained Init or a from-scratch language model; a \
             from-scratch vision-language Init has no base checkpoint"
                .into(),
        ));
    };
    let fresh = Backbone::Text(Llama::<B>::init(llama.config(), seed, device));
    let tmp = durable::fresh_tmp_dir(out)?;
    save_backbone(
        &fresh,
        None,
        loaded.tokenizer.as_ref(),
        &loaded.stop_tokens,
        &tmp,
    )?;
    durable::commit_dir(&tmp, out)?;
    Ok(())
}

fn no_tokenizer(dir: &Path) -> EvalError {
    EvalError::Training(TrainError::Invalid(format!(
        "{} has no tokenizer.json",
        dir.display()
    )))
}
