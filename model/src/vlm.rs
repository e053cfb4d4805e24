//! A LLaVA-style vision-language model: a [`VisionEncoder`] turns each image into patch
//! features, the [`Projector`] merges and maps them to the language model's width, and they
//! replace the image placeholders of the prompt in the input embeddings of the [`Llama`]
//! decoder. Parameter names are those of HF LLaVA checkpoints: `vision_tower.*`,
//! `multi_modal_projector.*` and the Llama's own names under `language_model.`. The model never
//! predicts the placeholder itself, so a response can never pose as an image.

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::error::ModelError;
use crate::image_spans::ImageSpans;
use crate::llama::Llama;
use crate::projector::Projector;
use crate::vision::VisionEncoder;
use crate::vlm_config::VlmConfig;
use crate::weights::{ParamSource, RandomInit};

/// Images given with a batch of token rows: pixels `[n, channels, height, width]` and where
/// each image's placeholders are.
pub type Images<'a, B> = (Tensor<B, 4>, &'a ImageSpans);

/// A vision-language model, generic over the Burn backend.
#[derive(Module, Debug)]
pub struct Vlm<B: Backend> {
    pub vision_tower: VisionEncoder<B>,
    pub multi_modal_projector: Projector<B>,
    pub language_model: Llama<B>,
    config: VlmConfig,
}

impl<B: Backend> Vlm<B> {
    /// A model with seeded random weights (for training from scratch).
    pub fn init(config: &VlmConfig, seed: u64, device: &B::Device) -> Self {
        Self::load(config, &mut RandomInit::new(seed), device)
            .expect("random initialisation supplies every tensor")
    }

    /// A model whose weights come from `source`, under their HF names.
    pub fn load(
        config: &VlmConfig,
        source: &mut dyn ParamSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let vision = &config.vision_config;
        Ok(Vlm {
            vision_tower: VisionEncoder::load(vision, source, "vision_tower", device)?,
            multi_modal_projector: Projector::load(
                source,
                "multi_modal_projector",
                vision.grid(),
                config.projector_merge,
                vision.hidden_size,
                config.text_config.hidden_size,
                device,
            )?,
            language_model: Llama::load_prefixed(
                &config.text_config,
                source,
                "language_model",
                device,
            )?
            .suppressing(config.image_token_id),
            config: config.clone(),
        })
    }

    /// The hyperparameters this model was built from.
    pub fn config(&self) -> &VlmConfig {
        &self.config
    }

    /// The language model (decoder and output head).
    pub fn language_model(&self) -> &Llama<B> {
        &self.language_model
    }

    /// The model with its language model replaced by `f` of it (to attach or merge LoRA
    /// adapters, for instance).
    pub fn map_language_model(mut self, f: impl FnOnce(Llama<B>) -> Llama<B>) -> Self {
        self.language_model = f(self.language_model);
        self
    }

    /// The image tokens `[n, image_tokens, text_hidden]` of images `[n, channels, height,
    /// width]`. Errors if the images do not have the vision tower's channels and size.
    pub fn image_features(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, ModelError> {
        Ok(self
            .multi_modal_projector
            .forward(self.vision_tower.forward(pixels)?))
    }

    /// The [`ImageSpans`] of `images` images in the token `rows` of a batch.
    pub fn image_spans(&self, rows: &[&[u32]], images: usize) -> Result<ImageSpans, ModelError> {
        self.config.image_spans(rows, images)
    }

    /// Input embeddings `[batch, seq, text_hidden]` of `input_ids` with each image's tokens
    /// in place of its placeholders. Differentiable in both the token embedding and the
    /// image path.
    ///
    /// Errors if the pixel batch and the spans disagree on the number of images (the spans
    /// are built for a given number by [`Vlm::image_spans`]), a span lies outside the token
    /// rows, or the images do not have the vision tower's shape.
    pub fn embed(
        &self,
        input_ids: Tensor<B, 2, Int>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [batch, seq] = input_ids.dims();
        let Some((pixels, spans)) = images else {
            return Ok(self.language_model.embed_tokens.forward(input_ids));
        };
        let n = pixels.dims()[0];
        if n != spans.len() {
            return Err(ModelError::Input(format!(
                "{n} images for {} image spans",
                spans.len()
            )));
        }
        let per_image = self.config.image_tokens();
        let index = spans.gather_index(batch, seq, per_image)?;
        let tokens = self.language_model.embed_tokens.forward(input_ids);
        if n == 0 {
            return Ok(tokens);
        }
        let hidden = tokens.dims()[2];
        let features = self
            .image_features(pixels)?
            .reshape([n * per_image, hidden]);
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(index, [batch * seq]), &tokens.device());
        Ok(
            Tensor::cat(vec![tokens.reshape([batch * seq, hidden]), features], 0)
                .select(0, index)
                .reshape([batch, seq, hidden]),
        )
    }

    /// Next-token logits `[batch, seq, vocab]`, as [`Llama::forward`] (same padding and
    /// position semantics) with the images in place of their placeholders; errors as
    /// [`Vlm::embed`].
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let hidden = self.forward_hidden(input_ids, attention_mask, images)?;
        Ok(self.language_model.logits(hidden))
    }

    /// The final (normalised) hidden states `[batch, seq, text_hidden]`, as
    /// [`Llama::forward_hidden`]; errors as [`Vlm::embed`].
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
        images: Option<Images<'_, B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let embeds = self.embed(input_ids, images)?;
        Ok(self
            .language_model
            .forward_hidden_embeds(embeds, attention_mask))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::test_util::max_diff;
    use burn::backend::Autodiff;

    use super::*;
    use crate::device::CpuBackend;
    use crate::vision::tests::pixels;
    use crate::vlm_config::tests::tiny_vlm;

    type B = CpuBackend;

    /// Three prompts around the 6-token images of [`tiny_vlm`] (placeholder 5): one image,
    /// none, and two.
    pub(crate) fn prompts() -> Vec<Vec<u32>> {
        let image = [5u32; 6];
        vec![
            [&[1, 2][..], &image, &[3]].concat(),
            vec![8, 9, 10, 11],
            [&[4][..], &image, &image, &[7, 12]].concat(),
        ]
    }

    /// Padded token rows with their ids and attention mask.
    pub(crate) type Padded<B> = (Vec<Vec<u32>>, Tensor<B, 2, Int>, Tensor<B, 2, Bool>);

    /// `rows` left-padded with id 0: the padded rows, ids and attention mask.
    pub(crate) fn left_padded<B: Backend>(rows: &[Vec<u32>]) -> Padded<B> {
        let width = rows.iter().map(Vec::len).max().unwrap();
        let padded: Vec<Vec<u32>> = rows
            .iter()
            .map(|r| [vec![0; width - r.len()], r.clone()].concat())
            .collect();
        let ids: Vec<i64> = padded.concat().iter().map(|&t| t as i64).collect();
        let mask: Vec<bool> = rows
            .iter()
            .flat_map(|r| (0..width).map(move |j| j >= width - r.len()))
            .collect();
        let device = Default::default();
        let shape = [rows.len(), width];
        (
            padded,
            Tensor::from_data(TensorData::new(ids, shape), &device),
            Tensor::from_data(TensorData::new(mask, shape), &device),
        )
    }

    fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn embed_puts_image_tokens_at_their_placeholders() {
        let model = Vlm::<B>::init(&tiny_vlm(), 2, &Default::default());
        let (padded, ids, _) = left_padded::<B>(&prompts());
        let rows: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
        let spans = model.image_spans(&rows, 3).unwrap();
        let images = pixels::<B>(&model.config().vision_config, 3, 0);
        let embeds = values(model.embed(ids, Some((images.clone(), &spans))).unwrap());
        let features = values(model.image_features(images).unwrap());
        let table = values(model.language_model.embed_tokens.weight.val());
        let (width, hidden) = (padded[0].len(), 48);
        assert_eq!(embeds.len(), 3 * width * hidden);
        let row = |v: &[f32], i: usize| v[i * hidden..(i + 1) * hidden].to_vec();
        // Image k's token t sits at row r, column start + t; every other slot is its token.
        let mut image_slots = vec![None; 3 * width];
        for (k, (&r, &start)) in spans.row.iter().zip(&spans.start).enumerate() {
            for t in 0..6 {
                image_slots[r * width + start + t] = Some(k * 6 + t);
            }
        }
        assert_eq!(
            (&spans.row[..], &spans.start[..]),
            (&[0, 2, 2][..], &[8, 1, 7][..])
        );
        for (slot, image_token) in image_slots.iter().enumerate() {
            let expected = match image_token {
                Some(i) => row(&features, *i),
                None => row(&table, padded.concat()[slot] as usize),
            };
            assert_eq!(row(&embeds, slot), expected, "slot {slot}");
        }
    }

    /// Images that disagree with the spans or the vision tower, and spans outside the token
    /// batch, are errors (they were assertions).
    #[test]
    fn embed_refuses_inputs_of_the_wrong_shape() {
        let model = Vlm::<B>::init(&tiny_vlm(), 2, &Default::default());
        let (padded, ids, _) = left_padded::<B>(&prompts());
        let rows: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
        let spans = model.image_spans(&rows, 3).unwrap();
        let vision = &model.config().vision_config;
        let embed = |ids: Tensor<B, 2, Int>, images: Tensor<B, 4>| {
            model
                .embed(ids, Some((images, &spans)))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let e = embed(ids.clone(), pixels::<B>(vision, 2, 0));
        assert!(e.contains("2 images for 3 image spans"), "{e}");
        let e = embed(ids.clone(), pixels::<B>(vision, 3, 0).narrow(3, 0, 8));
        assert!(e.contains("vision encoder takes"), "{e}");
        let width = padded[0].len();
        let e = embed(ids.narrow(1, 0, width - 2), pixels::<B>(vision, 3, 0));
        assert!(e.contains("outside the"), "{e}");
    }

    #[test]
    fn gradients_reach_the_vision_tower_and_the_token_embedding() {
        type A = Autodiff<B>;
        let model = Vlm::<A>::init(&tiny_vlm(), 2, &Default::default());
        let (padded, ids, mask) = left_padded::<A>(&prompts());
        let rows: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
        let spans = model.image_spans(&rows, 3).unwrap();
        let images = pixels::<A>(&model.config().vision_config, 3, 0);
        let grads = model
            .forward(ids, mask, Some((images, &spans)))
            .unwrap()
            .sum()
            .backward();
        let norm = |g: Option<Tensor<B, 2>>| values(g.expect("a gradient").abs().sum())[0];
        let patch = model
            .vision_tower
            .embeddings
            .patch_embedding
            .weight
            .grad(&grads);
        let patch = patch.map(|g| g.reshape([32, 3 * 8 * 8]));
        let projector = model.multi_modal_projector.linear_1.weight.grad(&grads);
        let tokens = model.language_model.embed_tokens.weight.grad(&grads);
        for (name, g) in [
            ("patch_embedding", patch),
            ("linear_1", projector),
            ("embed_tokens", tokens),
        ] {
            let n = norm(g);
            assert!(n > 0.0 && n.is_finite(), "{name}: gradient norm {n}");
        }
    }

    #[test]
    fn the_placeholder_is_never_predicted() {
        let model = Vlm::<B>::init(&tiny_vlm(), 2, &Default::default());
        let (padded, ids, mask) = left_padded::<B>(&prompts()[1..2]);
        let logits = values(model.forward(ids, mask, None).unwrap());
        let (vocab, placeholder) = (40, tiny_vlm().image_token_id as usize);
        assert_eq!(logits.len(), padded[0].len() * vocab);
        for row in logits.chunks(vocab) {
            assert_eq!(row[placeholder], crate::llama::SUPPRESSED_LOGIT);
            assert!(row.iter().filter(|&&v| v > -1e6).count() == vocab - 1);
        }
    }

    #[test]
    fn a_left_padded_row_gets_the_logits_it_gets_alone() {
        let model = Vlm::<B>::init(&tiny_vlm(), 2, &Default::default());
        let vision = &model.config().vision_config;
        let logits = |rows: &[Vec<u32>], images: Tensor<B, 4>| {
            let (padded, ids, mask) = left_padded::<B>(rows);
            let slices: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
            let spans = model.image_spans(&slices, images.dims()[0]).unwrap();
            model.forward(ids, mask, Some((images, &spans))).unwrap()
        };
        let prompts = prompts();
        let all = pixels::<B>(vision, 3, 0);
        let batch = logits(&prompts, all.clone());
        let (width, vocab) = (prompts[2].len(), 40);
        for (r, images) in [(0, 0..1), (2, 1..3)] {
            let len = prompts[r].len();
            let alone = values(logits(&prompts[r..r + 1], all.clone().slice([images])));
            let padded = values(
                batch
                    .clone()
                    .slice([r..r + 1, width - len..width, 0..vocab]),
            );
            let worst = max_diff(&alone, &padded);
            assert!(worst < 1e-4, "row {r} differs by {worst}");
        }
        // The image matters: another image changes the logits after it.
        let other = values(logits(&prompts[..1], pixels::<B>(vision, 1, 77)));
        let first = values(logits(&prompts[..1], all.narrow(0, 0, 1)));
        assert!(max_diff(&other, &first) > 1e-3);
        assert_eq!(other[..2 * vocab], first[..2 * vocab]);
    }
}
