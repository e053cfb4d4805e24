//! Pixels computed once per observation. An episode's image is shown at every turn of its
//! conversation and scored again in each PPO epoch; the cache resizes and normalises it the
//! first time and hands out the same values afterwards, for as long as anyone holds the image.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::{Tensor, backend::Backend};
use image::RgbImage;
use sftvsrl_model::{ImageProcessor, ModelError};

/// An [`ImageProcessor`] with a cache of its output, keyed by the shared image. Shared by
/// reference between the rollout policy, the KL reference and the update.
#[derive(Debug)]
pub struct PixelCache {
    processor: ImageProcessor,
    /// By the image's address; the entry's own handle keeps that address from being reused.
    entries: RefCell<HashMap<usize, Entry>>,
}

type Entry = (Arc<RgbImage>, Arc<[f32]>);

impl PixelCache {
    /// An empty cache in front of `processor`.
    pub fn new(processor: ImageProcessor) -> Self {
        PixelCache {
            processor,
            entries: RefCell::new(HashMap::new()),
        }
    }

    /// The pixel values of `image`, computed on first use.
    pub fn values(&self, image: &Arc<RgbImage>) -> Result<Arc<[f32]>, ModelError> {
        let key = Arc::as_ptr(image) as usize;
        if let Some((_, values)) = self.entries.borrow().get(&key) {
            return Ok(values.clone());
        }
        let values: Arc<[f32]> = self
            .processor
            .pixel_values(image)
            .map_err(ModelError::Input)?
            .into();
        self.entries
            .borrow_mut()
            .insert(key, (image.clone(), values.clone()));
        Ok(values)
    }

    /// The pixels `[n, 3, height, width]` of `images`, in order.
    pub fn tensor<B: Backend>(
        &self,
        images: &[&Arc<RgbImage>],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, ModelError> {
        let mut values = Vec::with_capacity(images.len() * self.processor.values_per_image());
        for (i, image) in images.iter().enumerate() {
            let one = self
                .values(image)
                .map_err(|e| ModelError::Input(format!("image {i}: {e}")))?;
            values.extend_from_slice(&one);
        }
        Ok(self.processor.tensor(values, images.len(), device))
    }

    /// Forgets the images nobody else holds any more (finished episodes, spent samples).
    pub fn prune(&self) {
        self.entries
            .borrow_mut()
            .retain(|_, (image, _)| Arc::strong_count(image) > 1);
    }

    /// Images cached.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray<f32>;

    fn image(seed: u8) -> Arc<RgbImage> {
        Arc::new(RgbImage::from_fn(12, 10, |x, y| {
            image::Rgb([seed, (x * 20) as u8, (y * 25) as u8])
        }))
    }

    #[test]
    fn cached_pixels_equal_the_processors_and_are_computed_once() {
        let processor = ImageProcessor::new([4, 6]);
        let cache = PixelCache::new(processor.clone());
        let (a, b) = (image(10), image(200));
        let t = cache
            .tensor::<B>(&[&a, &b, &a], &Default::default())
            .unwrap();
        let expected = processor
            .pixels::<B>(&[&a, &b, &a], &Default::default())
            .unwrap();
        assert_eq!(t.dims(), [3, 3, 4, 6]);
        assert_eq!(t.into_data(), expected.into_data());
        assert_eq!(cache.len(), 2);
        let first = cache.values(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.values(&a).unwrap()));
        // An equal image in another allocation is another entry: the key is the observation.
        let copy = Arc::new((*a).clone());
        assert!(!Arc::ptr_eq(&first, &cache.values(&copy).unwrap()));
        drop((b, copy));
        cache.prune();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_crop_outside_the_image_is_an_error() {
        let mut processor = ImageProcessor::new([4, 4]);
        processor.crop = Some([8, 0, 8, 8]);
        let cache = PixelCache::new(processor);
        let e = cache.tensor::<B>(&[&image(1)], &Default::default());
        assert!(e.unwrap_err().to_string().contains("lies outside"));
    }
}
