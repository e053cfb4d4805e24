//! Mixed-length sequences → one right-padded batch of next-token targets with a loss mask.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::data::Sequence;

/// One micro-batch. Position `j` of row `i` predicts `targets[i][j]` from `input_ids[i][..=j]`;
/// `loss_mask` is 1 where that target is an answer token (or end-of-turn), 0 on prompt and
/// padding.
#[derive(Clone, Debug)]
pub struct SftBatch<B: Backend> {
    /// `[batch, seq]`.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`: true for real tokens.
    pub attention_mask: Tensor<B, 2, Bool>,
    /// `[batch, seq]`.
    pub targets: Tensor<B, 2, Int>,
    /// `[batch, seq]`, 0 or 1.
    pub loss_mask: Tensor<B, 2>,
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
        let mut targets = vec![0i64; batch * width];
        let mut mask = vec![0f32; batch * width];
        let (mut input_tokens, mut target_tokens) = (0, 0);
        for (i, s) in sequences.iter().enumerate() {
            let n = s.ids.len() - 1;
            input_tokens += n;
            for j in 0..n {
                let k = i * width + j;
                ids[k] = i64::from(s.ids[j]);
                valid[k] = true;
                targets[k] = i64::from(s.ids[j + 1]);
                if j + 1 >= s.prompt_len {
                    mask[k] = 1.0;
                    target_tokens += 1;
                }
            }
        }
        let shape = [batch, width];
        SftBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(valid, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
            loss_mask: Tensor::from_data(TensorData::new(mask, shape), device),
            input_tokens,
            target_tokens,
        }
    }
}
