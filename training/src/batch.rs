//! Mixed-length sequences → one right-padded batch of next-token targets with a loss mask.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use sftvsrl_model::device::pad_len;

use crate::data::Sequence;

/// One micro-batch. Position `j` of row `i` predicts token `j + 1` of sequence `i` from
/// `input_ids[i][..=j]`; the loss covers only the positions whose target is an answer token (or
/// end-of-turn), listed in `answer_positions`, so prompt and padding positions are never scored.
///
/// With a padding multiple above 1 the sequence length and the number of answer slots are
/// rounded up to it (filler slots repeat the first answer with weight 0), so that the GPU
/// backends meet few distinct shapes; the loss and its statistics do not change.
#[derive(Clone, Debug)]
pub struct SftBatch<B: Backend> {
    /// `[batch, seq]`.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`: true for real tokens.
    pub attention_mask: Tensor<B, 2, Bool>,
    /// `[slots]`: the trained positions as flat indices `i * seq + j`, row by row, then fillers.
    pub answer_positions: Tensor<B, 1, Int>,
    /// `[slots]`: the target token at each trained position.
    pub answer_targets: Tensor<B, 1, Int>,
    /// `[slots]`: 1 at trained positions, 0 at fillers.
    pub answer_weights: Tensor<B, 1>,
    /// The row of each trained position.
    pub answer_rows: Vec<usize>,
    /// Real (non-padding) input tokens: what the forward pass costs.
    pub input_tokens: usize,
    /// Trained (masked-in) target tokens.
    pub target_tokens: usize,
}

impl<B: Backend> SftBatch<B> {
    /// Builds a batch from `sequences` (each at least two tokens long), its sequence length and
    /// answer slots rounded up to a multiple of `pad_to_multiple_of`.
    pub fn new(sequences: &[&Sequence], pad_to_multiple_of: usize, device: &B::Device) -> Self {
        let batch = sequences.len();
        let longest = sequences.iter().map(|s| s.ids.len() - 1).max().unwrap_or(0);
        let width = pad_len(longest, pad_to_multiple_of);
        let mut ids = vec![0i64; batch * width];
        let mut valid = vec![false; batch * width];
        let (mut positions, mut targets, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut input_tokens = 0;
        for (i, s) in sequences.iter().enumerate() {
            let n = s.ids.len() - 1;
            input_tokens += n;
            for j in 0..n {
                let k = i * width + j;
                ids[k] = i64::from(s.ids[j]);
                valid[k] = true;
                if j + 1 >= s.prompt_len {
                    positions.push(k as i64);
                    targets.push(i64::from(s.ids[j + 1]));
                    rows.push(i);
                }
            }
        }
        let answers = rows.len();
        let slots = pad_len(answers, pad_to_multiple_of);
        let mut weights = vec![1f32; answers];
        if let (Some(&position), Some(&target)) = (positions.first(), targets.first()) {
            positions.resize(slots, position);
            targets.resize(slots, target);
            weights.resize(slots, 0.0);
        }
        let shape = [batch, width];
        let slots = [positions.len()];
        SftBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(valid, shape), device),
            answer_positions: Tensor::from_data(TensorData::new(positions, slots), device),
            answer_targets: Tensor::from_data(TensorData::new(targets, slots), device),
            answer_weights: Tensor::from_data(TensorData::new(weights, slots), device),
            target_tokens: answers,
            answer_rows: rows,
            input_tokens,
        }
    }
}
