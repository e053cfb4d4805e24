//! Turning RGB images into the pixel tensor a [`crate::VisionEncoder`] reads: an optional crop,
//! an antialiased bilinear (triangle-filter) resize to the encoder's input size, scaling to
//! [0, 1] and per-channel normalisation, laid out `[n, 3, height, width]`.
//!
//! The resize is separable and reads the crop in place, as PIL's and the `image` crate's
//! triangle filter do (the filter widens with the downscaling factor, so every source pixel
//! counts), but it works on the raw bytes in f32: several times faster than `image`'s generic
//! resize, which matters because it runs for every training example. Saved beside a VLM checkpoint as
//! `preprocessor_config.json` (HF's names: `size`, `image_mean`, `image_std`).

use std::path::Path;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, read_json};

/// How images are prepared for the vision encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageProcessor {
    /// The output `[height, width]`, written `{"height": h, "width": w}` in JSON.
    #[serde(with = "height_width")]
    pub size: [u32; 2],
    /// The region `[x, y, width, height]` (source pixels) kept before resizing; the whole
    /// image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[u32; 4]>,
    /// Per-channel mean subtracted after scaling to [0, 1] (SigLIP's 0.5 by default).
    #[serde(default = "half")]
    pub image_mean: [f32; 3],
    /// Per-channel divisor applied after the mean (SigLIP's 0.5 by default).
    #[serde(default = "half")]
    pub image_std: [f32; 3],
}

fn half() -> [f32; 3] {
    [0.5; 3]
}

/// `[height, width]` as HF's `{"height": h, "width": w}`.
mod height_width {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Size {
        height: u32,
        width: u32,
    }

    pub fn serialize<S: Serializer>(size: &[u32; 2], s: S) -> Result<S::Ok, S::Error> {
        let [height, width] = *size;
        Size { height, width }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u32; 2], D::Error> {
        let Size { height, width } = Size::deserialize(d)?;
        Ok([height, width])
    }
}

impl ImageProcessor {
    /// Resizes whole images to `size` (`[height, width]`) with SigLIP's normalisation.
    pub fn new(size: [u32; 2]) -> Self {
        ImageProcessor {
            size,
            crop: None,
            image_mean: half(),
            image_std: half(),
        }
    }

    /// Reads `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let processor: ImageProcessor =
            serde_json::from_value(read_json(path)?).map_err(|source| ModelError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        processor.validate(path)?;
        Ok(processor)
    }

    /// The JSON of `preprocessor_config.json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("JSON serialises")
    }

    /// Checks the output and crop sizes are positive, the `3 · height · width` values of an
    /// image fit in 32 bits, the crop's far edges too, and the deviations are non-zero; `path`
    /// names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        if self.size.contains(&0) {
            return Err(ModelError::config(path, "size", "must be positive"));
        }
        let [height, width] = self.size;
        let values = u64::from(height)
            .checked_mul(u64::from(width))
            .and_then(|n| n.checked_mul(3));
        if values.is_none_or(|n| n > u64::from(u32::MAX)) {
            return Err(ModelError::config(
                path,
                "size",
                format!(
                    "{height}×{width} is too large: 3 · height · width values must fit in 32 bits"
                ),
            ));
        }
        if self.crop.is_some_and(|[_, _, w, h]| w == 0 || h == 0) {
            return Err(ModelError::config(
                path,
                "crop",
                "width and height must be positive",
            ));
        }
        if self
            .crop
            .is_some_and(|[x, y, w, h]| x.checked_add(w).is_none() || y.checked_add(h).is_none())
        {
            return Err(ModelError::config(
                path,
                "crop",
                "x + width and y + height must fit in 32 bits",
            ));
        }
        if self
            .image_std
            .iter()
            .chain(&self.image_mean)
            .any(|s| !s.is_finite())
            || self.image_std.contains(&0.0)
        {
            return Err(ModelError::config(
                path,
                "image_std",
                "mean and std must be finite, std non-zero",
            ));
        }
        Ok(())
    }

    /// The pixels `[n, 3, height, width]` of `images`. Errors if the crop does not fit inside
    /// an image.
    pub fn pixels<B: Backend>(
        &self,
        images: &[&RgbImage],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, ModelError> {
        let mut values = Vec::with_capacity(images.len() * self.values_per_image());
        for (i, image) in images.iter().enumerate() {
            let one = self
                .pixel_values(image)
                .map_err(|e| ModelError::Input(format!("image {i}: {e}")))?;
            values.extend_from_slice(&one);
        }
        Ok(self.tensor(values, images.len(), device))
    }

    /// The `3 · height · width` values of one image (channel planes), as [`Self::pixels`]
    /// lays them out. Errors if the crop does not fit inside the image.
    pub fn pixel_values(&self, image: &RgbImage) -> Result<Vec<f32>, String> {
        let [height, width] = self.size;
        let plane = height as usize * width as usize;
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.image_std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.image_mean[c] / self.image_std[c]);
        let mut out = vec![0.0f32; 3 * plane];
        let (iw, ih) = image.dimensions();
        let [x, y, w, h] = self.crop.unwrap_or([0, 0, iw, ih]);
        if x.checked_add(w).is_none_or(|r| r > iw) || y.checked_add(h).is_none_or(|b| b > ih) {
            return Err(format!(
                "crop [x {x}, y {y}, width {w}, height {h}] lies outside the {iw}×{ih} image"
            ));
        }
        let columns = Taps::new(x as usize, w as usize, width as usize);
        let rows = Taps::new(y as usize, h as usize, height as usize);
        resample(image, &columns, &rows, &mut out);
        for (c, channel) in out.chunks_exact_mut(plane).enumerate() {
            for v in channel {
                *v = *v * scale[c] - shift[c];
            }
        }
        Ok(out)
    }

    /// Values per image: `3 · height · width`.
    pub fn values_per_image(&self) -> usize {
        3 * self.size[0] as usize * self.size[1] as usize
    }

    /// The pixel tensor `[n, 3, height, width]` of `n` images' concatenated values.
    pub fn tensor<B: Backend>(
        &self,
        values: Vec<f32>,
        n: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let [height, width] = self.size;
        let shape = [n, 3, height as usize, width as usize];
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// The filter taps of one axis: output `i` is `Σ_k weights[i][k] · input[first[i] + k]`.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

impl Taps {
    /// Resampling source pixels `offset .. offset + len` to `out` pixels with a triangle
    /// filter of radius `max(1, len / out)` source pixels, weights normalised to sum 1.
    fn new(offset: usize, len: usize, out: usize) -> Self {
        let scale = len as f64 / out as f64;
        let radius = scale.max(1.0);
        let (mut first, mut weights) = (Vec::with_capacity(out), Vec::with_capacity(out));
        for i in 0..out {
            let center = (i as f64 + 0.5) * scale;
            let lo = (center - radius).floor().max(0.0) as usize;
            let hi = ((center + radius).ceil() as usize).min(len);
            let w: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - center) / radius).abs()).max(0.0))
                .collect();
            let total: f64 = w.iter().sum();
            first.push(offset + lo);
            weights.push(w.iter().map(|&x| (x / total) as f32).collect());
        }
        Taps { first, weights }
    }
}

/// Resamples the region of `image` that `columns` and `rows` read into `out`, three planes
/// `[channel][row][column]` of values in 0..=255: columns first, over the rows the row taps
/// need, then rows.
fn resample(image: &RgbImage, columns: &Taps, rows: &Taps, out: &mut [f32]) {
    let (out_w, out_h) = (columns.first.len(), rows.first.len());
    let stride = image.width() as usize * 3;
    let bytes = image.as_raw();
    let row_lo = rows.first.first().copied().unwrap_or(0);
    let row_hi = rows
        .first
        .iter()
        .zip(&rows.weights)
        .map(|(f, w)| f + w.len())
        .max()
        .unwrap_or(0);
    // Pass 1: `[row][column][channel]` of the source rows row_lo..row_hi at the output width.
    let mut wide = vec![0.0f32; (row_hi - row_lo) * out_w * 3];
    for (r, dst) in (row_lo..row_hi).zip(wide.chunks_exact_mut(out_w * 3)) {
        let src = &bytes[r * stride..(r + 1) * stride];
        for ((px, &first), weights) in dst
            .chunks_exact_mut(3)
            .zip(&columns.first)
            .zip(&columns.weights)
        {
            let mut acc = [0.0f32; 3];
            for (k, &w) in weights.iter().enumerate() {
                let p = &src[(first + k) * 3..(first + k) * 3 + 3];
                acc[0] += w * p[0] as f32;
                acc[1] += w * p[1] as f32;
                acc[2] += w * p[2] as f32;
            }
            px.copy_from_slice(&acc);
        }
    }
    // Pass 2: rows, written as channel planes.
    let plane = out_w * out_h;
    for (y, (&first, weights)) in rows.first.iter().zip(&rows.weights).enumerate() {
        for x in 0..out_w {
            let mut acc = [0.0f32; 3];
            for (k, &w) in weights.iter().enumerate() {
                let p = &wide[((first - row_lo + k) * out_w + x) * 3..][..3];
                acc[0] += w * p[0];
                acc[1] += w * p[1];
                acc[2] += w * p[2];
            }
            for (c, v) in acc.into_iter().enumerate() {
                out[c * plane + y * out_w + x] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;
    use serde_json::json;

    use super::*;
    use crate::device::CpuBackend;

    type B = CpuBackend;

    fn values(processor: &ImageProcessor, images: &[&RgbImage]) -> Vec<f32> {
        let t = processor.pixels::<B>(images, &Default::default()).unwrap();
        let [h, w] = processor.size;
        assert_eq!(t.dims(), [images.len(), 3, h as usize, w as usize]);
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn solid_colours_normalise_per_channel() {
        let image = RgbImage::from_pixel(40, 30, Rgb([255, 0, 51]));
        let p = ImageProcessor::new([4, 6]);
        let v = values(&p, &[&image]);
        // (x / 255 - 0.5) / 0.5, channel planes in order.
        for (c, expected) in [1.0, -1.0, -0.6].into_iter().enumerate() {
            assert!(
                v[c * 24..(c + 1) * 24]
                    .iter()
                    .all(|x| (x - expected).abs() < 1e-6)
            );
        }
        let imagenet = ImageProcessor {
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
            ..p
        };
        let v = values(&imagenet, &[&image]);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((v[24] - (-0.456 / 0.224)).abs() < 1e-5);
    }

    #[test]
    fn crop_selects_the_region_before_resizing() {
        // Left half red, right half blue; cropping the right half gives pure blue.
        let image = RgbImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let mut p = ImageProcessor::new([8, 8]);
        p.crop = Some([32, 0, 32, 32]);
        let v = values(&p, &[&image, &image]);
        assert_eq!(v.len(), 2 * 3 * 64);
        assert!(
            v[..64].iter().all(|&x| (x + 1.0).abs() < 1e-5),
            "no red left"
        );
        assert!(
            v[128..192].iter().all(|&x| (x - 1.0).abs() < 1e-5),
            "all blue"
        );

        p.crop = Some([40, 0, 32, 32]);
        let e = p.pixels::<B>(&[&image], &Default::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid model input: image 0: crop [x 40, y 0, width 32, height 32] lies \
             outside the 64×32 image"
        );
    }

    #[test]
    fn resize_matches_the_image_crates_triangle_filter() {
        use image::imageops::{FilterType, crop_imm, resize};
        let image = RgbImage::from_fn(97, 61, |x, y| {
            Rgb([
                (x * 37 % 256) as u8,
                (y * 53 % 256) as u8,
                ((x * y) % 251) as u8,
            ])
        });
        // Downscaling, upscaling, and a crop.
        for (size, crop) in [
            ([13, 20], None),
            ([80, 150], None),
            ([9, 11], Some([30, 7, 40, 25])),
        ] {
            let p = ImageProcessor {
                crop,
                ..ImageProcessor::new(size)
            };
            let ours = values(&p, &[&image]);
            let [x, y, w, h] = crop.unwrap_or([0, 0, 97, 61]);
            let view = crop_imm(&image, x, y, w, h).to_image();
            let theirs = resize(&view, size[1], size[0], FilterType::Triangle);
            let plane = (size[0] * size[1]) as usize;
            for (i, px) in theirs.pixels().enumerate() {
                for c in 0..3 {
                    let expected = px.0[c] as f32 / 127.5 - 1.0;
                    let got = ours[c * plane + i];
                    // `image` rounds to whole levels (one level is 2/255 here).
                    assert!((got - expected).abs() <= 1.01 / 127.5, "{size:?} {i} {c}");
                }
            }
        }
    }

    #[test]
    fn json_uses_hf_names_and_rejects_bad_values() {
        let mut p = ImageProcessor::new([16, 24]);
        p.crop = Some([1, 2, 3, 4]);
        let v = p.to_json();
        assert_eq!(v["size"], json!({"height": 16, "width": 24}));
        assert_eq!(v["image_mean"], json!([0.5, 0.5, 0.5]));
        assert_eq!(serde_json::from_value::<ImageProcessor>(v).unwrap(), p);
        let bare: ImageProcessor =
            serde_json::from_value(json!({"size": {"height": 2, "width": 3}})).unwrap();
        assert_eq!(bare, ImageProcessor::new([2, 3]));

        let path = Path::new("pre.json");
        p.image_std[1] = 0.0;
        let e = p.validate(path).unwrap_err().to_string();
        assert!(e.starts_with("pre.json: field `image_std`"), "{e}");
        let e = ImageProcessor::new([0, 3]).validate(path).unwrap_err();
        assert_eq!(e.to_string(), "pre.json: field `size`: must be positive");
    }

    /// Sizes whose products overflow 32-bit arithmetic are refused when the file is read (they
    /// were accepted and overflowed, a panic in debug builds, at the first image).
    #[test]
    fn sizes_that_overflow_are_refused_naming_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("sftvsrl-pre-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("preprocessor_config.json");
        for (json, field) in [
            (json!({"size": {"height": 65536, "width": 65536}}), "size"),
            (json!({"size": {"height": 40000, "width": 40000}}), "size"),
            (
                json!({"size": {"height": 2, "width": 2}, "crop": [4294967295u32, 0, 2, 2]}),
                "crop",
            ),
        ] {
            std::fs::write(&path, json.to_string()).unwrap();
            let e = ImageProcessor::from_file(&path).unwrap_err().to_string();
            let expected = format!("{}: field `{field}`", path.display());
            assert!(e.starts_with(&expected), "{e}");
        }
        std::fs::write(
            &path,
            json!({"size": {"height": 30000, "width": 30000}}).to_string(),
        )
        .unwrap();
        let p = ImageProcessor::from_file(&path).unwrap();
        assert_eq!(p.values_per_image(), 3 * 30000 * 30000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
