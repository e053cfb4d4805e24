//! On-policy distillation (an RL run's `distill` setting) and the KL between two policies on
//! the same responses (also the study's "KL from the Init", RL's Razor).
//!
//! The student samples its own responses as in any RL run; each is then scored by the student
//! and by a frozen teacher checkpoint, and its reward is `−coef · Σ_t KL_t`, where
//! `KL_t = KL(π_student(·|y<t) ‖ π_teacher(·|y<t))` is the exact reverse KL over the vocabulary
//! at response position `t` (both at the rollout temperature). Its expectation over the
//! student's samples is the sequence-level reverse KL, so PPO on this reward minimises it; the
//! verifier's reward is not used (`reward` is 0, the KL is logged as `kl_penalty`), and the
//! episodes' success is still logged. The full-vocabulary KL (not the one-sample estimate
//! `log π_s(y_t) − log π_T(y_t)`) has no sampling noise and is exactly 0 when the teacher is the
//! student.

use std::path::PathBuf;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};
use sftvsrl_model::{Backbone, ModelError, VlmConfig, load_backbone};

use super::buffer::{Sample, ScoreBatch};
use crate::error::TrainError;
use crate::pixels::PixelCache;

/// `distill`: train toward a teacher by on-policy distillation instead of the verifier's reward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher: a checkpoint folder (Hugging Face layout) with the student's vocabulary. In
    /// a study, also the name of one of its runs (`rl`, `sft`, `init`, an arm's name): that
    /// run's final model at the same seed.
    pub teacher: PathBuf,
    /// The reward of a response is `−coef · Σ_t KL_t` (see the module docs).
    #[serde(default = "one")]
    pub coef: f32,
}

fn one() -> f32 {
    1.0
}

impl DistillConfig {
    /// Checks the coefficient (the message names the field).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.coef.is_finite() && self.coef > 0.0) {
            return Err(format!(
                "`distill.coef` must be positive and finite, not {}",
                self.coef
            ));
        }
        Ok(())
    }
}

/// Samples scored together (the logits of a chunk's response tokens are held at once).
const CHUNK: usize = 16;

/// The teacher of `config`, checked against the student's vocabulary size.
pub fn load_teacher<B: Backend>(
    config: &DistillConfig,
    student_vocab: usize,
    device: &B::Device,
) -> Result<Backbone<B>, TrainError> {
    let teacher = load_backbone::<B>(&config.teacher, device)?.model;
    let vocab = teacher.language_model().config().vocab_size;
    if vocab != student_vocab {
        return Err(TrainError::Config {
            path: config.teacher.clone(),
            message: format!(
                "`distill.teacher` has a vocabulary of {vocab} tokens, the student {student_vocab}: \
                 distillation needs the student's tokenizer"
            ),
        });
    }
    Ok(teacher)
}

/// For each sample, `Σ_t KL(π_a(·|y<t) ‖ π_b(·|y<t))` over its response tokens, both policies
/// at `temperature` (≤ 0 or 1: the plain softmax). Images go through `vision`.
pub fn response_kl<B: Backend>(
    a: &Backbone<B>,
    b: &Backbone<B>,
    samples: &[&Sample],
    temperature: f32,
    pad_to_multiple_of: usize,
    vision: Option<(&VlmConfig, &PixelCache)>,
    device: &B::Device,
) -> Result<Vec<f64>, ModelError> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(CHUNK) {
        let batch = ScoreBatch::<B>::new(chunk, pad_to_multiple_of, vision, device)?;
        let la = tempered_log_softmax(batch.score(a, temperature)?.logits, temperature);
        let lb = tempered_log_softmax(batch.score(b, temperature)?.logits, temperature);
        let per_token: Vec<f32> = (la.clone().exp() * (la - lb))
            .sum_dim(1)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 data");
        let mut at = 0;
        for s in chunk {
            let n = s.response.len();
            // Rounding can leave a KL of equal distributions a hair below 0.
            out.push(
                per_token[at..at + n]
                    .iter()
                    .map(|&k| f64::from(k.max(0.0)))
                    .sum(),
            );
            at += n;
        }
    }
    Ok(out)
}

fn tempered_log_softmax<B: Backend>(logits: Tensor<B, 2>, temperature: f32) -> Tensor<B, 2> {
    let logits = match temperature > 0.0 && temperature != 1.0 {
        true => logits / temperature,
        false => logits,
    };
    log_softmax(logits, 1)
}

/// Rewards `samples` by distillation: the verifier's reward set to 0 and the KL term to
/// `coef · Σ_t KL_t` from `teacher` (so PPO's shaped reward is `−coef · Σ_t KL_t`). Returns
/// the tokens the two scoring passes read (inference compute).
#[allow(clippy::too_many_arguments)]
pub fn reward_by_teacher<B: Backend>(
    student: &Backbone<B>,
    teacher: &Backbone<B>,
    coef: f32,
    samples: &mut [Sample],
    temperature: f32,
    pad_to_multiple_of: usize,
    pixels: Option<&PixelCache>,
    device: &B::Device,
) -> Result<u64, TrainError> {
    let refs: Vec<&Sample> = samples.iter().collect();
    let vision = student.vision_config().zip(pixels);
    let kl = response_kl(
        student,
        teacher,
        &refs,
        temperature,
        pad_to_multiple_of,
        vision,
        device,
    )?;
    let tokens: u64 = samples
        .iter()
        .map(|s| (s.prompt.len() + s.response.len()) as u64)
        .sum();
    for (s, k) in samples.iter_mut().zip(kl) {
        s.reward = 0.0;
        s.kl = f64::from(coef) * k;
    }
    Ok(2 * tokens)
}

#[cfg(test)]
mod tests {
    use sftvsrl_model::Llama;

    use super::*;
    use crate::rl::logprob::ActionWeights;

    type B = burn::backend::NdArray<f32>;

    fn model(seed: u64) -> Backbone<B> {
        let config = crate::step::tests::tiny_config();
        Backbone::Text(Llama::<B>::init(&config, seed, &Default::default()))
    }

    fn sample(prompt: Vec<u32>, response: Vec<u32>) -> Sample {
        let n = response.len();
        Sample {
            env: 0,
            episode: 0,
            depth: 0,
            prompt,
            response,
            text: String::new(),
            token_logprobs: vec![0.0; n],
            weights: ActionWeights {
                weights: vec![1.0; n],
                constant: None,
            },
            logprob: 0.0,
            value: 0.0,
            reward: 1.0,
            kl: 0.0,
            terminated: true,
            truncated: false,
            parsable: true,
            image: None,
        }
    }

    /// The distillation reward is exactly 0 when the teacher is the student, and negative
    /// (a positive KL) for any other teacher; the verifier's reward is replaced.
    #[test]
    fn the_reward_is_zero_for_the_student_itself_and_negative_otherwise() {
        let device = Default::default();
        let (student, other) = (model(1), model(2));
        let fresh = || {
            vec![
                sample(vec![1, 2, 3], vec![4, 5]),
                sample(vec![6], vec![7, 8, 9, 10]),
            ]
        };
        let mut same = fresh();
        let tokens =
            reward_by_teacher(&student, &student, 2.0, &mut same, 0.7, 1, None, &device).unwrap();
        assert_eq!(tokens, 2 * (5 + 5));
        for s in &same {
            assert_eq!((s.reward, s.kl, s.shaped_reward()), (0.0, 0.0, 0.0));
        }
        let mut differ = fresh();
        reward_by_teacher(&student, &other, 2.0, &mut differ, 0.7, 1, None, &device).unwrap();
        for s in &differ {
            assert_eq!(s.reward, 0.0);
            assert!(s.kl > 0.0 && s.shaped_reward() < 0.0, "{}", s.kl);
        }
        // The coefficient scales the KL, which sums over the response's tokens.
        let refs: Vec<&Sample> = differ.iter().collect();
        let kl = response_kl(&student, &other, &refs, 0.7, 1, None, &device).unwrap();
        for (s, k) in differ.iter().zip(&kl) {
            assert!((s.kl - 2.0 * k).abs() < 1e-9);
        }
        let first_only = sample(vec![1, 2, 3], vec![4]);
        let one = response_kl(&student, &other, &[&first_only], 0.7, 1, None, &device).unwrap();
        assert!(one[0] > 0.0 && one[0] < kl[0], "{one:?} vs {kl:?}");
    }

    #[test]
    fn the_coefficient_must_be_positive() {
        let config = |coef| DistillConfig {
            teacher: "t".into(),
            coef,
        };
        assert!(config(1.0).validate().is_ok());
        for bad in [0.0, -1.0, f32::NAN] {
            let e = config(bad).validate().unwrap_err();
            assert!(e.contains("distill.coef"), "{e}");
        }
    }
}
