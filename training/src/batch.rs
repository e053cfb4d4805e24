//! Mixed-length sequences → one right-padded batch of next-token targets with a loss mask.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use image::RgbImage;
use sftvsrl_model::device::pad_len;
use sftvsrl_model::{ImageProcessor, ImageSpans, VlmConfig};

use crate::data::Sequence;
use crate::error::TrainError;
use crate::step::StepStats;

/// One micro-batch. Position `j` of row `i` predicts token `j + 1` of sequence `i` from
/// `input_ids[i][..=j]`; the loss covers only the positions whose target is an answer token (or
/// end-of-turn), listed in `answer_positions`, so prompt and padding positions are never scored.
///
/// With a padding multiple above 1 the sequence length and the number of answer slots are
/// rounded up to it (filler slots repeat the first answer with weight 0), so that the GPU
/// backends meet few distinct shapes; the loss and its statistics do not change. The number of
/// rows may be rounded up too ([`SftBatch::with_rows`]): padding rows repeat the first
/// sequence's tokens (a finite forward pass) but hold no answer slot, so no loss or gradient
/// reaches them; [`SftBatch::real_stats`] takes them out of the statistics.
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
    /// Rows after the real sequences that only round the batch size up (see
    /// [`SftBatch::with_rows`]).
    pub padding_rows: usize,
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
        Self::with_rows(
            sequences,
            sequences.len(),
            pad_to_multiple_of,
            vision,
            device,
        )
    }

    /// [`SftBatch::with_images`] with the batch rounded up to `rows` rows (fewer are not
    /// padded), so that a short last micro-batch has the shape of the others. Padding rows
    /// repeat the first sequence (and its image) with no answer slot: the loss, its gradient
    /// and [`SftBatch::real_stats`] are those of the real sequences.
    pub fn with_rows(
        sequences: &[&Sequence],
        rows: usize,
        pad_to_multiple_of: usize,
        vision: Option<(&VlmConfig, &ImageProcessor)>,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let real = sequences.len();
        let mut padded = sequences.to_vec();
        if let Some(&first) = sequences.first() {
            padded.resize(rows.max(real), first);
        }
        let sequences = &padded[..];
        let batch = sequences.len();
        let longest = sequences.iter().map(|s| s.ids.len() - 1).max().unwrap_or(0);
        let width = pad_len(longest, pad_to_multiple_of);
        let mut ids = vec![0i64; batch * width];
        let mut valid = vec![false; batch * width];
        let (mut positions, mut targets, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut input_tokens = 0;
        for (i, s) in sequences.iter().enumerate() {
            let n = s.ids.len() - 1;
            if i < real {
                input_tokens += n;
            }
            for j in 0..n {
                let k = i * width + j;
                ids[k] = i64::from(s.ids[j]);
                valid[k] = true;
                if i < real && j + 1 >= s.prompt_len {
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
            padding_rows: batch - real,
        })
    }

    /// `stats` of a pass over this batch ([`crate::masked_loss`]) without its padding rows,
    /// which count as sequences answered exactly (they have no answer slot to get wrong).
    pub fn real_stats(&self, mut stats: StepStats) -> StepStats {
        stats.sequences -= self.padding_rows.min(stats.sequences);
        stats.exact -= self.padding_rows.min(stats.exact);
        stats
    }
}

/// The rows of a micro-batch of `real` sequences out of `micro_batch`: where lengths are
/// rounded (`pad_to_multiple_of` above 1, as on the GPU backends by default), every
/// micro-batch is padded to the full `micro_batch` rows, the short last one of an epoch or of
/// a step included, so a run compiles kernels for one batch size; elsewhere exactly `real`.
pub fn batch_rows(real: usize, micro_batch: usize, pad_to_multiple_of: usize) -> usize {
    if pad_to_multiple_of > 1 {
        real.max(micro_batch)
    } else {
        real
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
