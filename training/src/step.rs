//! The masked next-token loss (NLL, or DFT's probability-weighted NLL) and the statistics
//! logged beside it.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};
use sftvsrl_model::kernel_logprobs::target_scores;
use sftvsrl_model::{LanguageModel, ModelError};

use crate::batch::SftBatch;

/// The SFT loss per answer token (`train.loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SftLoss {
    /// The negative log-likelihood `−log p(y_t)`.
    #[default]
    Nll,
    /// Dynamic fine-tuning (DFT, arXiv 2508.05629): `−sg(p(y_t)) · log p(y_t)`, the NLL scaled
    /// by the token's own probability with its gradient stopped, so the gradient is
    /// `p · ∇log p` (not `∇(p log p)`).
    Dft,
}

/// The outcome of one forward pass over a micro-batch.
#[derive(Debug)]
pub struct StepOutput<B: Backend> {
    /// The answer tokens' summed loss ([`SftLoss`]) divided by `normalizer` (a scalar).
    pub loss: Tensor<B, 1>,
    pub stats: StepStats,
}

/// Counts summed over micro-batches to report loss, token accuracy and exact match.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Summed negative log-likelihood of answer tokens.
    pub nll_sum: f64,
    /// Answer tokens.
    pub tokens: usize,
    /// Answer tokens whose argmax prediction is right (teacher forcing).
    pub correct: usize,
    /// Sequences.
    pub sequences: usize,
    /// Sequences whose every answer token is predicted right (teacher-forced exact match).
    pub exact: usize,
}

impl StepStats {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &StepStats) {
        self.nll_sum += other.nll_sum;
        self.tokens += other.tokens;
        self.correct += other.correct;
        self.sequences += other.sequences;
        self.exact += other.exact;
    }

    /// Mean loss per answer token.
    pub fn loss(&self) -> f64 {
        self.nll_sum / self.tokens.max(1) as f64
    }

    /// Fraction of answer tokens predicted right.
    pub fn token_accuracy(&self) -> f64 {
        self.correct as f64 / self.tokens.max(1) as f64
    }

    /// Fraction of sequences whose answer is reproduced exactly.
    pub fn exact_match(&self) -> f64 {
        self.exact as f64 / self.sequences.max(1) as f64
    }
}

/// The loss of `batch` under `model`: the answer tokens' summed negative log-likelihood divided by
/// `normalizer` (the answer tokens of the whole optimizer step, so that accumulated micro-batch
/// gradients add up to the gradient of the step's mean loss). Only the answer positions go
/// through the output head and the softmax: prompt and padding positions never reach them.
/// Errors if the batch's images do not fit the model ([`LanguageModel::hidden_states`]).
pub fn masked_loss<B: Backend, M: LanguageModel<B>>(
    model: &M,
    batch: &SftBatch<B>,
    normalizer: usize,
) -> Result<StepOutput<B>, ModelError> {
    masked_loss_with(model, batch, normalizer, SftLoss::Nll)
}

/// [`masked_loss`] with the per-token loss `kind` (the statistics stay the NLL's).
pub fn masked_loss_with<B: Backend, M: LanguageModel<B>>(
    model: &M,
    batch: &SftBatch<B>,
    normalizer: usize,
    kind: SftLoss,
) -> Result<StepOutput<B>, ModelError> {
    let images = batch.images.as_ref().map(|(p, spans)| (p.clone(), spans));
    let hidden = model.hidden_states(
        batch.input_ids.clone(),
        batch.attention_mask.clone(),
        images,
    )?;
    let [b, s, dim] = hidden.dims();
    if batch.target_tokens == 0 {
        // Nothing to score: a zero loss that still belongs to the graph.
        return Ok(StepOutput {
            loss: hidden.sum() * 0.0,
            stats: StepStats {
                sequences: b,
                exact: b,
                ..StepStats::default()
            },
        });
    }
    let answers = hidden
        .reshape([b * s, dim])
        .select(0, batch.answer_positions.clone());
    let logits = model.head(answers.unsqueeze::<3>());
    let [_, n, vocab] = logits.dims();
    Ok(loss_from_logits(
        logits.reshape([n, vocab]),
        batch,
        normalizer,
        kind,
    ))
}

/// [`masked_loss_with`] given the logits `[slots, vocab]` at the batch's answer positions.
pub fn loss_from_logits<B: Backend>(
    logits: Tensor<B, 2>,
    batch: &SftBatch<B>,
    normalizer: usize,
    kind: SftLoss,
) -> StepOutput<B> {
    let n = batch.target_tokens;
    let targets = batch.answer_targets.clone();
    // One fused pass over the logits on the CPU backend (log-softmax, gather and argmax).
    let scores = target_scores(logits, targets.clone());
    let predicted = scores.argmax;
    let weighted = scores.logprobs.clone() * batch.answer_weights.clone();
    let loss_sum = match kind {
        SftLoss::Nll => weighted.clone().sum().neg(),
        SftLoss::Dft => (weighted.clone() * dft_weights(scores.logprobs))
            .sum()
            .neg(),
    };
    let nll_sum = weighted.sum().neg();
    let loss = loss_sum / normalizer.max(1) as f32;

    let right: Vec<f32> = predicted
        .equal(targets)
        .float()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data");
    let sequences = batch.input_ids.dims()[0];
    let mut wrong_rows = vec![false; sequences];
    for (&row, &r) in batch.answer_rows.iter().zip(&right) {
        wrong_rows[row] |= r < 0.5;
    }
    StepOutput {
        loss,
        stats: StepStats {
            nll_sum: f64::from(scalar(nll_sum)),
            tokens: n,
            correct: right[..n].iter().filter(|&&r| r > 0.5).count(),
            sequences,
            exact: wrong_rows.iter().filter(|&&w| !w).count(),
        },
    }
}

/// DFT's per-token weights: each token's probability `exp(log p)`, detached from the graph.
pub fn dft_weights<B: Backend>(logprobs: Tensor<B, 1>) -> Tensor<B, 1> {
    logprobs.detach().exp()
}

/// The value of a one-element float tensor.
pub(crate) fn scalar<B: Backend>(t: Tensor<B, 1>) -> f32 {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")[0]
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::*;
    use crate::data::Sequence;
    use sftvsrl_model::Llama;

    type B = burn::backend::NdArray<f32>;

    /// Deterministic logits `[2, 3, 5]`.
    fn logits_values() -> Vec<f32> {
        (0..30).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect()
    }

    /// The rows of full logits `[batch, seq, vocab]` at the batch's answer positions.
    fn at_answers(values: Vec<f32>, shape: [usize; 3], batch: &SftBatch<B>) -> Tensor<B, 2> {
        let [b, s, v] = shape;
        Tensor::<B, 3>::from_data(TensorData::new(values, shape), &Default::default())
            .reshape([b * s, v])
            .select(0, batch.answer_positions.clone())
    }

    fn log_softmax_host(row: &[f32], k: usize) -> f64 {
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        row[k] as f64 - max - z.ln()
    }

    #[test]
    fn loss_counts_only_answer_tokens() {
        let device = Default::default();
        // Row 0: prompt [1, 2], answer [3]; targets [2, 3], only position 1 trained; then padding.
        // Row 1: prompt [4], answer [1, 0, 2]; every target trained.
        let a = Sequence::text(vec![1, 2, 3], 2);
        let b = Sequence::text(vec![4, 1, 0, 2], 1);
        let batch = SftBatch::<B>::new(&[&a, &b], 1, &device);
        assert_eq!(batch.target_tokens, 4);
        assert_eq!(batch.input_tokens, 5);

        let values = logits_values();
        let out = loss_from_logits(
            at_answers(values.clone(), [2, 3, 5], &batch),
            &batch,
            4,
            SftLoss::Nll,
        );
        let at = |i: usize, j: usize| &values[(i * 3 + j) * 5..(i * 3 + j + 1) * 5];
        let expected = -(log_softmax_host(at(0, 1), 3)
            + log_softmax_host(at(1, 0), 1)
            + log_softmax_host(at(1, 1), 0)
            + log_softmax_host(at(1, 2), 2))
            / 4.0;
        let loss = out.loss.into_data().to_vec::<f32>().unwrap()[0] as f64;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
        assert!((out.stats.loss() - expected).abs() < 1e-5);

        // Changing the logits at prompt and padding positions changes nothing.
        let mut changed = values.clone();
        for (i, j) in [(0, 0), (0, 2)] {
            for v in &mut changed[(i * 3 + j) * 5..(i * 3 + j + 1) * 5] {
                *v += 3.7;
            }
        }
        let again = loss_from_logits(
            at_answers(changed, [2, 3, 5], &batch),
            &batch,
            4,
            SftLoss::Nll,
        );
        assert!((again.stats.nll_sum - out.stats.nll_sum).abs() < 1e-5);
    }

    #[test]
    fn accuracy_and_exact_match_follow_the_argmax() {
        let device = Default::default();
        let a = Sequence::text(vec![1, 2, 3], 1);
        let b = Sequence::text(vec![1, 4], 1);
        let batch = SftBatch::<B>::new(&[&a, &b], 1, &device);
        // Row 0 predicts 2 then 0 (wrong), row 1 predicts 4 (right); row 1's padding is ignored.
        let mut values = vec![0f32; 2 * 2 * 5];
        values[2] = 1.0;
        values[5] = 1.0;
        values[10 + 4] = 1.0;
        let s = loss_from_logits(
            at_answers(values, [2, 2, 5], &batch),
            &batch,
            3,
            SftLoss::Nll,
        )
        .stats;
        assert_eq!((s.tokens, s.correct, s.sequences, s.exact), (3, 2, 2, 1));
        assert!((s.token_accuracy() - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.exact_match() - 0.5).abs() < 1e-12);
    }

    /// DFT weighs each answer token by its probability, detached: the loss is
    /// `−Σ sg(p) log p / N` and its gradient in the logits `−p (onehot − softmax) / N`, not
    /// the gradient of `p log p`; the logged statistics stay the NLL's.
    #[test]
    fn dft_scales_each_token_by_its_detached_probability() {
        type A = burn::backend::Autodiff<B>;
        let device = Default::default();
        let a = Sequence::text(vec![1, 2, 3], 1);
        let b = Sequence::text(vec![4, 1, 0], 2);
        let batch = SftBatch::<A>::new(&[&a, &b], 1, &device);
        assert_eq!(batch.target_tokens, 3);
        // The logits at the three answer slots: row 0 → 2, row 0 → 3, row 1 → 0.
        let rows: Vec<f32> = logits_values()[..15].to_vec();
        let targets = [2usize, 3, 0];
        let logprobs: Vec<f64> = (0..3)
            .map(|i| log_softmax_host(&rows[i * 5..(i + 1) * 5], targets[i]))
            .collect();
        let weights: Vec<f32> = dft_weights(Tensor::<B, 1>::from_floats(
            logprobs
                .iter()
                .map(|&l| l as f32)
                .collect::<Vec<_>>()
                .as_slice(),
            &device,
        ))
        .into_data()
        .to_vec()
        .unwrap();
        for (w, l) in weights.iter().zip(&logprobs) {
            assert!((f64::from(*w) - l.exp()).abs() < 1e-6, "{w} vs {}", l.exp());
        }
        let logits = Tensor::<A, 2>::from_data(TensorData::new(rows.clone(), [3, 5]), &device)
            .require_grad();
        let dft = loss_from_logits(logits.clone(), &batch, 3, SftLoss::Dft);
        let expected: f64 = -logprobs.iter().map(|l| l.exp() * l).sum::<f64>() / 3.0;
        let loss = f64::from(dft.loss.clone().into_data().to_vec::<f32>().unwrap()[0]);
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
        let nll_sum = -logprobs.iter().sum::<f64>();
        assert!((dft.stats.nll_sum - nll_sum).abs() < 1e-4);
        let grads = dft.loss.backward();
        let grad: Vec<f32> = logits.grad(&grads).unwrap().into_data().to_vec().unwrap();
        for (i, &k) in targets.iter().enumerate() {
            let row = &rows[i * 5..(i + 1) * 5];
            let p = logprobs[i].exp();
            for j in 0..5 {
                let softmax = log_softmax_host(row, j).exp();
                let onehot = f64::from(u8::from(j == k));
                let detached = -p * (onehot - softmax) / 3.0;
                let through = -(logprobs[i] + 1.0) * p * (onehot - softmax) / 3.0;
                let g = f64::from(grad[i * 5 + j]);
                assert!((g - detached).abs() < 1e-5, "[{i},{j}] {g} vs {detached}");
                if (onehot - softmax).abs() > 1e-3 {
                    assert!((g - through).abs() > 1e-4, "[{i},{j}] not detached");
                }
            }
        }
    }

    /// A batch padded to a multiple of 8 (longer rows, filler answer slots) gives the loss,
    /// statistics and gradients of the exact batch.
    #[test]
    fn padded_batches_give_the_same_loss_and_gradients() {
        type A = burn::backend::Autodiff<B>;
        let device = Default::default();
        let config = tiny_config();
        let model = Llama::<A>::init(&config, 4, &device);
        let a = Sequence::text(vec![1, 5, 7, 9, 3, 11], 3);
        let b = Sequence::text(vec![2, 4, 6], 1);
        let run = |multiple: usize| {
            let batch = SftBatch::<A>::new(&[&a, &b], multiple, &device);
            let out = masked_loss(&model, &batch, 10).unwrap();
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
            (batch, out.stats, loss, grad)
        };
        let (exact, exact_stats, exact_loss, exact_grad) = run(1);
        let (padded, padded_stats, padded_loss, padded_grad) = run(8);
        assert_eq!(exact.input_ids.dims(), [2, 5]);
        assert_eq!(padded.input_ids.dims(), [2, 8]);
        assert_eq!(exact.answer_positions.dims(), [5]);
        assert_eq!(padded.answer_positions.dims(), [8]);
        assert_eq!(padded.target_tokens, 5);
        assert_eq!(padded.input_tokens, exact.input_tokens);
        assert!((exact_loss - padded_loss).abs() < 1e-6);
        assert!((exact_stats.nll_sum - padded_stats.nll_sum).abs() < 1e-5);
        assert_eq!(
            (exact_stats.tokens, exact_stats.correct, exact_stats.exact),
            (
                padded_stats.tokens,
                padded_stats.correct,
                padded_stats.exact
            )
        );
        for (x, y) in exact_grad.iter().zip(&padded_grad) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }

    /// A one-layer model of width 16 over 20 tokens.
    pub(crate) fn tiny_config() -> sftvsrl_model::LlamaConfig {
        sftvsrl_model::LlamaConfig {
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 8,
            ..sftvsrl_model::LlamaConfig::tiny(20)
        }
    }

    #[test]
    fn masked_loss_scores_the_model_at_answer_positions_only() {
        let device = Default::default();
        let config = tiny_config();
        let model = Llama::<B>::init(&config, 2, &device);
        let a = Sequence::text(vec![1, 5, 7, 9, 3], 3);
        let b = Sequence::text(vec![2, 4, 6], 1);
        let batch = SftBatch::<B>::new(&[&a, &b], 1, &device);
        let out = masked_loss(&model, &batch, 10).unwrap();
        // The full logits [2, 4, 20]; answers: row 0 at 2 (→ 9) and 3 (→ 3), row 1 at 0 (→ 4)
        // and 1 (→ 6).
        let logits: Vec<f32> = model
            .forward(batch.input_ids.clone(), batch.attention_mask.clone())
            .into_data()
            .to_vec()
            .unwrap();
        let at = |i: usize, j: usize| &logits[(i * 4 + j) * 20..(i * 4 + j + 1) * 20];
        let expected = -(log_softmax_host(at(0, 2), 9)
            + log_softmax_host(at(0, 3), 3)
            + log_softmax_host(at(1, 0), 4)
            + log_softmax_host(at(1, 1), 6));
        assert!(
            (out.stats.nll_sum - expected).abs() < 1e-4,
            "{out:?} vs {expected}"
        );
        let loss = out.loss.into_data().to_vec::<f32>().unwrap()[0] as f64;
        assert!((loss - expected / 10.0).abs() < 1e-5);
        assert_eq!((out.stats.tokens, out.stats.sequences), (4, 2));
    }
}
