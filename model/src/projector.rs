//! The multi-modal projector of a [`crate::Vlm`]: it merges each `m × m` block of neighbouring
//! patch features into one token ("pixel shuffle": their features concatenated, so an image
//! gives `patches / m²` tokens) and maps the merged features to the language model's width with
//! `linear_2(gelu(linear_1(x)))`, as LLaVA's `multi_modal_projector`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::gelu;
use burn::tensor::{Tensor, backend::Backend};

use crate::error::ModelError;
use crate::layers::{apply, linear};
use crate::weights::ParamSource;

/// HF `multi_modal_projector`: `linear_1`, GELU, `linear_2`.
#[derive(Module, Debug)]
pub struct Projector<B: Backend> {
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
    /// The patch grid `[rows, columns]` of the vision encoder.
    grid: [usize; 2],
    /// The merge factor `m`.
    merge: usize,
}

impl<B: Backend> Projector<B> {
    /// Builds `{prefix}.linear_1` (`vision_hidden · m²` → `text_hidden`) and `{prefix}.linear_2`
    /// (`text_hidden` → `text_hidden`) for a `grid` of patches merged `merge × merge`.
    pub(crate) fn load(
        source: &mut dyn ParamSource,
        prefix: &str,
        grid: [usize; 2],
        merge: usize,
        vision_hidden: usize,
        text_hidden: usize,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let merged = vision_hidden * merge * merge;
        Ok(Projector {
            linear_1: linear(
                source,
                &format!("{prefix}.linear_1"),
                merged,
                text_hidden,
                true,
                device,
            )?,
            linear_2: linear(
                source,
                &format!("{prefix}.linear_2"),
                text_hidden,
                text_hidden,
                true,
                device,
            )?,
            grid,
            merge,
        })
    }

    /// Patch features `[n, rows · cols, vision_hidden]` (row-major) to image tokens
    /// `[n, rows · cols / m², text_hidden]`.
    pub fn forward(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        apply(
            &self.linear_2,
            None,
            gelu(apply(&self.linear_1, None, self.merge(features))),
        )
    }

    /// Pixel shuffle: token `(i, j)` of the merged `(rows / m) × (cols / m)` grid holds the
    /// features of patches `(i·m + a, j·m + b)` for `a, b < m`, in row-major order of `(a, b)`.
    fn merge(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        let m = self.merge;
        if m == 1 {
            return features;
        }
        let [n, _, d] = features.dims();
        let [rows, cols] = self.grid;
        features
            .reshape([n, rows / m, m, cols / m, m * d])
            .swap_dims(2, 3)
            .reshape([n, (rows / m) * (cols / m), m * m * d])
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::device::CpuBackend;
    use crate::weights::RandomInit;

    type B = CpuBackend;

    #[test]
    fn merge_concatenates_each_block_of_neighbours() {
        let device = Default::default();
        // A 2×4 grid of 1-feature patches numbered row-major, merged 2×2.
        let p =
            Projector::<B>::load(&mut RandomInit::new(0), "p", [2, 4], 2, 1, 8, &device).unwrap();
        let x = Tensor::<B, 3>::from_data(
            TensorData::new((0..8).map(|i| i as f32).collect::<Vec<_>>(), [1, 8, 1]),
            &device,
        );
        let merged: Vec<f32> = p.merge(x).into_data().to_vec().unwrap();
        assert_eq!(merged, [0., 1., 4., 5., 2., 3., 6., 7.]);
        let y = p.forward(Tensor::zeros([3, 8, 1], &device));
        assert_eq!(y.dims(), [3, 2, 8]);
    }
}
