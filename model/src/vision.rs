//! A SigLIP-style vision transformer: non-overlapping patches are embedded linearly, a learned
//! position embedding is added (no CLS token), pre-norm encoder layers with bidirectional
//! attention follow, and a final LayerNorm. Parameter names follow Hugging Face's SigLIP
//! (`embeddings.patch_embedding`, `embeddings.position_embedding`, `encoder.layers.{i}`,
//! `post_layernorm`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ModelError;
use crate::kernel_matmul::matmul;
use crate::layers::{embedding, layer_norm};
use crate::vision_layer::VisionLayer;
use crate::weights::{ParamKind, ParamSource, RandomInit, load_tensor, prefixed};

/// The hyperparameters of a [`VisionEncoder`] (the `vision_config` of a VLM's `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionConfig {
    /// Input image `[height, width]` in pixels; a single integer in JSON means a square.
    #[serde(deserialize_with = "height_width")]
    pub image_size: [usize; 2],
    /// Side of the square patches.
    pub patch_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_num_channels")]
    pub num_channels: usize,
}

fn default_layer_norm_eps() -> f64 {
    1e-6
}

fn default_num_channels() -> usize {
    3
}

/// `image_size` as `[height, width]` or one integer for a square.
fn height_width<'de, D: Deserializer<'de>>(d: D) -> Result<[usize; 2], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Square(usize),
        HeightWidth([usize; 2]),
    }
    Ok(match Size::deserialize(d)? {
        Size::Square(s) => [s, s],
        Size::HeightWidth(hw) => hw,
    })
}

impl VisionConfig {
    /// The patch grid `[rows, columns]`.
    pub fn grid(&self) -> [usize; 2] {
        self.image_size.map(|s| s / self.patch_size)
    }

    /// Checks that a projector merging `merge`×`merge` neighbouring patches tiles the patch
    /// grid; the error says why not.
    pub fn check_merge(&self, merge: usize) -> Result<(), String> {
        let grid = self.grid();
        if merge == 0 || grid.iter().any(|g| !g.is_multiple_of(merge)) {
            return Err(format!(
                "{merge} does not divide the {}×{} patch grid",
                grid[0], grid[1]
            ));
        }
        Ok(())
    }

    /// Patches per image (tokens of the encoder's output).
    pub fn num_patches(&self) -> usize {
        let [rows, cols] = self.grid();
        rows * cols
    }

    /// Features of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The number of images in a pixel batch of shape `dims`, or an error unless it is
    /// `[n, num_channels, height, width]` of this configuration.
    pub fn check_pixels(&self, dims: [usize; 4]) -> Result<usize, ModelError> {
        let [n, channels, height, width] = dims;
        let [h, w] = self.image_size;
        if [channels, height, width] == [self.num_channels, h, w] {
            Ok(n)
        } else {
            Err(ModelError::Input(format!(
                "images of shape {dims:?}; the vision encoder takes [n, {}, {h}, {w}]",
                self.num_channels
            )))
        }
    }

    /// Checks the sizes are positive, the image divides into patches and the heads divide the
    /// width. `path` names the file in errors; fields are named as in JSON.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let err = |field: &str, msg: String| Err(ModelError::config(path, field, msg));
        let sizes = [
            ("image_size", self.image_size[0].min(self.image_size[1])),
            ("patch_size", self.patch_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_channels", self.num_channels),
        ];
        if let Some((field, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return err(field, "must be positive".into());
        }
        if let Some(side) = self
            .image_size
            .iter()
            .find(|s| !s.is_multiple_of(self.patch_size))
        {
            return err(
                "image_size",
                format!("{side} is not a multiple of patch_size {}", self.patch_size),
            );
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return err(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return err("layer_norm_eps", "must be positive".into());
        }
        Ok(())
    }
}

/// HF `embeddings.patch_embedding`: a convolution with stride = kernel = patch size, stored as
/// its HF weight `[hidden, channels, patch, patch]` and bias `[hidden]`.
#[derive(Module, Debug)]
pub struct PatchEmbedding<B: Backend> {
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Param<Tensor<B, 1>>,
}

/// HF `embeddings`: patch embedding plus a learned position embedding `[patches, hidden]`.
#[derive(Module, Debug)]
pub struct VisionEmbeddings<B: Backend> {
    pub patch_embedding: PatchEmbedding<B>,
    pub position_embedding: Embedding<B>,
}

/// HF `encoder`: the stack of encoder layers.
#[derive(Module, Debug)]
pub struct VisionLayers<B: Backend> {
    pub layers: Vec<VisionLayer<B>>,
}

/// A SigLIP-style vision transformer, generic over the Burn backend.
#[derive(Module, Debug)]
pub struct VisionEncoder<B: Backend> {
    pub embeddings: VisionEmbeddings<B>,
    pub encoder: VisionLayers<B>,
    pub post_layernorm: LayerNorm<B>,
    config: VisionConfig,
}

impl<B: Backend> VisionEncoder<B> {
    /// An encoder with seeded random weights.
    pub fn init(config: &VisionConfig, seed: u64, device: &B::Device) -> Self {
        Self::load(config, &mut RandomInit::new(seed), "", device)
            .expect("random initialisation supplies every tensor")
    }

    /// An encoder whose weights come from `source` under `{prefix}.` plus their HF names (an
    /// empty prefix for none).
    pub fn load(
        config: &VisionConfig,
        source: &mut dyn ParamSource,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (hidden, p, c) = (config.hidden_size, config.patch_size, config.num_channels);
        let name = |n: &str| prefixed(prefix, n);
        let patch = name("embeddings.patch_embedding");
        let patch_embedding = PatchEmbedding {
            weight: Param::from_tensor(load_tensor(
                source,
                &format!("{patch}.weight"),
                [hidden, c, p, p],
                ParamKind::Weight,
                device,
            )?),
            bias: Param::from_tensor(load_tensor(
                source,
                &format!("{patch}.bias"),
                [hidden],
                ParamKind::Bias,
                device,
            )?),
        };
        let position_embedding = embedding(
            source,
            &name("embeddings.position_embedding"),
            config.num_patches(),
            hidden,
            device,
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                VisionLayer::load(
                    config,
                    source,
                    &name(&format!("encoder.layers.{i}")),
                    device,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VisionEncoder {
            embeddings: VisionEmbeddings {
                patch_embedding,
                position_embedding,
            },
            encoder: VisionLayers { layers },
            post_layernorm: layer_norm(
                source,
                &name("post_layernorm"),
                hidden,
                config.layer_norm_eps,
                device,
            )?,
            config: config.clone(),
        })
    }

    /// The hyperparameters this encoder was built from.
    pub fn config(&self) -> &VisionConfig {
        &self.config
    }

    /// Patch features `[n, patches, hidden]` of images `[n, channels, height, width]`, patches
    /// in row-major order. Errors if the images do not have the configured channels and size.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, ModelError> {
        let c = &self.config;
        c.check_pixels(pixels.dims())?;
        let mut x = self.embeddings.forward(pixels, c);
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        Ok(self.post_layernorm.forward(x))
    }
}

impl<B: Backend> VisionEmbeddings<B> {
    /// `[n, channels, height, width] -> [n, patches, hidden]`: each patch flattened in
    /// (channel, row, column) order, the weight's own order, and projected by one matrix
    /// product.
    fn forward(&self, pixels: Tensor<B, 4>, config: &VisionConfig) -> Tensor<B, 3> {
        let [n, channels, _, _] = pixels.dims();
        let [rows, cols] = config.grid();
        let (p, hidden) = (config.patch_size, config.hidden_size);
        let patch_dim = channels * p * p;
        let patches = pixels
            .reshape([n, channels, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * rows * cols, patch_dim]);
        let weight = self
            .patch_embedding
            .weight
            .val()
            .reshape([hidden, patch_dim]);
        let x = matmul(patches, weight.transpose()) + self.patch_embedding.bias.val().unsqueeze();
        x.reshape([n, rows * cols, hidden]) + self.position_embedding.weight.val().unsqueeze()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::TensorData;
    use serde_json::json;

    use super::*;
    use crate::device::CpuBackend;

    type B = CpuBackend;

    /// Two layers of width 32 over 16×24 images in patches of 8 (a 2×3 grid).
    pub(crate) fn tiny_vision() -> VisionConfig {
        VisionConfig {
            image_size: [16, 24],
            patch_size: 8,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            layer_norm_eps: 1e-6,
            num_channels: 3,
        }
    }

    /// Deterministic pixels in [-1, 1] for `n` images of `config`'s size.
    pub(crate) fn pixels<B: Backend>(config: &VisionConfig, n: usize, seed: usize) -> Tensor<B, 4> {
        let [h, w] = config.image_size;
        let shape = [n, config.num_channels, h, w];
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| (((i + seed) * 7919 % 1013) as f32 / 506.5) - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    fn rows(t: Tensor<B, 3>) -> Vec<Vec<f32>> {
        let [n, s, d] = t.dims();
        let v: Vec<f32> = t.into_data().to_vec().unwrap();
        (0..n * s).map(|r| v[r * d..(r + 1) * d].to_vec()).collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn config_reads_square_or_rectangular_sizes_and_round_trips() {
        let v = json!({"image_size": 32, "patch_size": 8, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2});
        let c: VisionConfig = serde_json::from_value(v).unwrap();
        assert_eq!(
            (c.image_size, c.grid(), c.num_patches()),
            ([32, 32], [4, 4], 16)
        );
        assert_eq!((c.layer_norm_eps, c.num_channels), (1e-6, 3));
        let rect = tiny_vision();
        let back: VisionConfig =
            serde_json::from_value(serde_json::to_value(&rect).unwrap()).unwrap();
        assert_eq!(back, rect);
        assert_eq!(rect.grid(), [2, 3]);
    }

    #[test]
    fn validation_names_the_field() {
        let path = Path::new("vision.json");
        let cases = [
            (
                VisionConfig {
                    image_size: [16, 20],
                    ..tiny_vision()
                },
                "`image_size`: 20 is not a multiple of patch_size 8",
            ),
            (
                VisionConfig {
                    num_attention_heads: 5,
                    ..tiny_vision()
                },
                "`num_attention_heads`: 5 does not divide hidden_size 32",
            ),
            (
                VisionConfig {
                    patch_size: 0,
                    ..tiny_vision()
                },
                "`patch_size`: must be positive",
            ),
        ];
        for (config, message) in cases {
            let e = config.validate(path).unwrap_err().to_string();
            assert_eq!(e, format!("vision.json: field {message}"));
        }
        assert!(tiny_vision().validate(path).is_ok());
    }

    #[test]
    fn forward_gives_one_feature_row_per_patch() {
        let config = tiny_vision();
        let encoder = VisionEncoder::<B>::init(&config, 1, &Default::default());
        let out = encoder.forward(pixels::<B>(&config, 3, 0)).unwrap();
        assert_eq!(out.dims(), [3, 6, 32]);
        // Each image is encoded on its own: the batch does not mix images.
        let alone = encoder
            .forward(pixels::<B>(&config, 3, 0).narrow(0, 1, 1))
            .unwrap();
        assert!(close(&rows(alone).concat(), &rows(out)[6..12].concat()));
    }

    /// Images of another size or channel count are an error, not a panic.
    #[test]
    fn forward_refuses_images_of_the_wrong_shape() {
        let config = tiny_vision();
        let encoder = VisionEncoder::<B>::init(&config, 1, &Default::default());
        let good = pixels::<B>(&config, 1, 0);
        for wrong in [
            good.clone().narrow(2, 0, 8),
            good.clone().narrow(1, 0, 1),
            good.narrow(3, 0, 16),
        ] {
            let dims = wrong.dims();
            let e = encoder.forward(wrong).unwrap_err().to_string();
            assert!(e.contains(&format!("{dims:?}")), "{e}");
        }
    }

    /// Swaps the pixels of patches (0, 0) and (1, 2) of every image.
    fn swap_patches(x: Tensor<B, 4>) -> Tensor<B, 4> {
        let a = x.clone().slice([0..2, 0..3, 0..8, 0..8]);
        let b = x.clone().slice([0..2, 0..3, 8..16, 16..24]);
        x.slice_assign([0..2, 0..3, 0..8, 0..8], b)
            .slice_assign([0..2, 0..3, 8..16, 16..24], a)
    }

    #[test]
    fn patches_are_row_major_and_positions_tell_them_apart() {
        let config = tiny_vision();
        let device = Default::default();
        let mut encoder = VisionEncoder::<B>::init(&config, 1, &device);
        let x = pixels::<B>(&config, 2, 3);
        let swapped = swap_patches(x.clone());

        // Without attention layers or position embeddings each output row depends on its own
        // patch only: swapping two patches' pixels swaps rows 0 and 5 (row-major order).
        let mut local = encoder.clone();
        local.encoder.layers.clear();
        local.embeddings.position_embedding.weight =
            Param::from_tensor(Tensor::zeros([6, 32], &device));
        let (a, b) = (
            rows(local.forward(x.clone()).unwrap()),
            rows(local.forward(swapped.clone()).unwrap()),
        );
        for image in 0..2 {
            let r = |i: usize| image * 6 + i;
            assert!(close(&a[r(0)], &b[r(5)]) && close(&a[r(5)], &b[r(0)]));
            assert!((1..5).all(|i| close(&a[r(i)], &b[r(i)])));
            assert!(!close(&a[r(0)], &a[r(5)]));
        }

        // Attention without position embeddings is permutation-equivariant: the full encoder
        // swaps the rows too. With them, the swapped image is encoded differently.
        encoder.embeddings.position_embedding.weight =
            local.embeddings.position_embedding.weight.clone();
        let (a, b) = (
            rows(encoder.forward(x.clone()).unwrap()),
            rows(encoder.forward(swapped.clone()).unwrap()),
        );
        assert!(close(&a[0], &b[5]) && close(&a[5], &b[0]));
        assert!(!close(&a[1], &a[0]));
        let positioned = VisionEncoder::<B>::init(&config, 1, &device);
        let (a, b) = (
            rows(positioned.forward(x).unwrap()),
            rows(positioned.forward(swapped).unwrap()),
        );
        assert!(!close(&a[0], &b[5]));
    }
}
