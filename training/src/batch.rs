//! Mixed-length sequences → one right-padded batch of next-token targets with a loss mask.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use image::RgbImage;
use sftvsrl_model::device::pad_len;
use sftvsrl_model::{ImageProcessor, ImageSpans, VlmConfig};

use crate::data::Sequence;
use crate::error::TrainError;

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
    /// The pixels of the rows' images and where their placeholders sit.
    pub images: Option<(Tensor<B, 4>, ImageSpans)>,
    /// Real (non-padding) input tokens: what the forward pass costs.
    pub input_tokens: usize,
    /// Trained (masked-in) target tokens.
    pub target_tokens: usize,
}

impl<B: Backend> SftBatch<B> {
    /// [`SftBatch::with_images`] for sequences without images.
    ///
    /// # Panics
    /// If a sequence shows an image.
    pub fn new(sequences: &[&Sequence], pad_to_multiple_of: usize, device: &B::Device) -> Self {
        Self::with_images(sequences, pad_to_multiple_of, None, device)
            .expect("text sequences make a batch")
    }

    /// Builds a batch from `sequences` (each at least two tokens long), its sequence length and
    /// answer slots rounded up to a multiple of `pad_to_multiple_of`. The sequences' images
    /// are read from their files and turned into pixels by `vision`'s processor; without
    /// `vision`, an image is an error.
    pub fn with_images(
        sequences: &[&Sequence],
        pad_to_multiple_of: usize,
        vision: Option<(&VlmConfig, &ImageProcessor)>,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
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
        let images = batch_images(sequences, vision, device)?;
        Ok(SftBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(valid, shape), device),
            answer_positions: Tensor::from_data(TensorData::new(positions, slots), device),
            answer_targets: Tensor::from_data(TensorData::new(targets, slots), device),
            answer_weights: Tensor::from_data(TensorData::new(weights, slots), device),
            target_tokens: answers,
            answer_rows: rows,
            images,
            input_tokens,
        })
    }
}

/// The pixels and placeholder spans of the sequences' images, read from their files; `None`
/// when no sequence shows one.
fn batch_images<B: Backend>(
    sequences: &[&Sequence],
    vision: Option<(&VlmConfig, &ImageProcessor)>,
    device: &B::Device,
) -> Result<Option<(Tensor<B, 4>, ImageSpans)>, TrainError> {
    let Some(first) = sequences.iter().find_map(|s| s.image.as_ref()) else {
        return Ok(None);
    };
    let Some((config, processor)) = vision else {
        return Err(TrainError::Invalid(format!(
            "{}: an image for a language model, which cannot read it",
            first.display()
        )));
    };
    let (pixels, n) = sequence_pixels(sequences, processor, device)?;
    let rows: Vec<&[u32]> = sequences.iter().map(|s| &s.ids[..s.prompt_len]).collect();
    let spans = config.image_spans(&rows, n)?;
    Ok(Some((pixels, spans)))
}

/// The pixels `[n, 3, height, width]` of the sequences' images in order, read from their
/// files (errors name the file), and `n`.
pub fn sequence_pixels<B: Backend>(
    sequences: &[&Sequence],
    processor: &ImageProcessor,
    device: &B::Device,
) -> Result<(Tensor<B, 4>, usize), TrainError> {
    let images = sequences
        .iter()
        .filter_map(|s| s.image.as_ref())
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .map_err(|e| TrainError::Invalid(format!("{}: {e}", p.display())))
        })
        .collect::<Result<Vec<RgbImage>, _>>()?;
    let refs: Vec<&RgbImage> = images.iter().collect();
    Ok((processor.pixels(&refs, device)?, refs.len()))
}
