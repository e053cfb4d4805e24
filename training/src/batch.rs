//! Mixed-length sequences → one right-padded batch of next-token targets with a loss mask.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::data::Sequence;

/// One micro-batch. Position `j` of row `i` predicts token `j + 1` of sequence `i` from
/// `input_ids[i][..=j]`; the loss covers only the positions whose target is an answer token (or
/// end-of-turn), listed in `answer_positions`, so prompt and padding positions are never scored.
#[derive(Clone, Debug)]
pub struct SftBatch<B: Backend> {
    /// `[batch, seq]`.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`: true for real tokens.
    pub attention_mask: Tensor<B, 2, Bool>,
    /// `[answers]`: the trained positions as flat indices `i * seq + j`, row by row.
    pub answer_positions: Tensor<B, 1, Int>,
    /// `[answers]`: the target token at each trained position.
    pub answer_targets: Tensor<B, 1, Int>,
    /// The row of each trained position.
    pub answer_rows: Vec<usize>,
    /// Real (non-padding) input tokens: what the forward pass costs.
    pub input_tokens: usize,
    /// Trained (masked-in) target tokens.
    pub target_tokens: usize,
}

impl<B: Backend> SftBatch<B> {
    /// Builds a batch from `sequences` (each at least two tokens long).
    pub fn new(sequences: &[&Sequence], device: &B::Device) -> Self {
        let batch = sequences.len();
        let width = sequences.iter().map(|s| s.ids.len() - 1).max().unwrap_or(0);
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
        let shape = [batch, width];
        let answers = [rows.len()];
        SftBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(valid, shape), device),
            answer_positions: Tensor::from_data(TensorData::new(positions, answers), device),
            answer_targets: Tensor::from_data(TensorData::new(targets, answers), device),
            target_tokens: rows.len(),
            answer_rows: rows,
            input_tokens,
        }
    }
}
