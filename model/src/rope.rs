//! Rotary position embedding (RoPE) in the "rotate-half" layout that Hugging Face checkpoints
//! use: dimension `i` of a head is paired with dimension `i + head_dim/2`. (Burn's
//! `RotaryEncoding` pairs neighbours `2i, 2i+1`, the layout of Meta and GGUF files; GGUF q/k
//! weights are un-permuted at load instead, see `gguf.rs`.) Angles are computed from each
//! token's own position, so left-padded batches and KV-cached decoding share one code path.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::config::LlamaConfig;
use crate::cpu_dispatch::CpuBackend;
use crate::kernel_rope::rotate;

/// The inverse frequencies of one model's RoPE, including Llama 3 frequency scaling.
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

/// cos and sin of the rotation angles of a batch of positions, laid out like the heads they
/// rotate (`[batch, seq, heads, head_dim]`, in memory, so the rotation is plain element-wise
/// products); `sin` carries the sign of the rotation (negative in the first half).
#[derive(Clone, Debug)]
pub struct RopeAngles<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

/// The rotations of one forward pass: for the query heads and for the key/value heads.
#[derive(Clone, Debug)]
pub struct QkAngles<B: Backend> {
    pub q: RopeAngles<B>,
    pub k: RopeAngles<B>,
}

impl Rope {
    /// The frequencies `theta^(-2i/d)` for the model's head size, scaled as its config says.
    pub fn new(config: &LlamaConfig) -> Self {
        let dim = config.head_dim;
        let mut inv_freq: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        if let Some(s) = config.rope_scaling {
            // transformers `_compute_llama3_parameters`: long wavelengths are divided by
            // `factor`, short ones kept, and the band between interpolated smoothly.
            let old_len = s.original_max_position_embeddings as f64;
            let low_wavelen = old_len / s.low_freq_factor;
            let high_wavelen = old_len / s.high_freq_factor;
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old_len / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        Rope {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
        }
    }

    /// The rotation angles of tokens at `positions` (`[batch, seq]`) for `heads` heads. On the
    /// CPU backends they are computed on the host in one pass (the same f32 products, sines
    /// and cosines), elsewhere by tensor operations on the device.
    pub fn angles<B: Backend>(&self, positions: Tensor<B, 2, Int>, heads: usize) -> RopeAngles<B> {
        if CpuBackend::of::<B>().is_some() {
            let [batch, seq] = positions.dims();
            let device = positions.device();
            let positions: Vec<i64> = positions.into_data().iter::<i64>().collect();
            return self.host_angles(&positions, [batch, seq], heads, &device);
        }
        self.device_angles(positions, heads)
    }

    /// [`Rope::angles`] of host positions: each `(position, frequency)` angle's cosine and
    /// signed sine computed once, then copied to every head.
    fn host_angles<B: Backend>(
        &self,
        positions: &[i64],
        [batch, seq]: [usize; 2],
        heads: usize,
        device: &B::Device,
    ) -> RopeAngles<B> {
        let half = self.inv_freq.len();
        let dim = 2 * half;
        let len = positions.len() * heads * dim;
        let (mut cos, mut sin) = (Vec::with_capacity(len), Vec::with_capacity(len));
        let (mut cos_row, mut sin_row) = (vec![0.0f32; dim], vec![0.0f32; dim]);
        for &position in positions {
            for (j, &f) in self.inv_freq.iter().enumerate() {
                let angle = position as f32 * f;
                let (s, c) = (angle.sin(), angle.cos());
                (cos_row[j], cos_row[half + j]) = (c, c);
                (sin_row[j], sin_row[half + j]) = (-s, s);
            }
            for _ in 0..heads {
                cos.extend_from_slice(&cos_row);
                sin.extend_from_slice(&sin_row);
            }
        }
        let shape = [batch, seq, heads, dim];
        RopeAngles {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// [`Rope::angles`] by tensor operations.
    fn device_angles<B: Backend>(
        &self,
        positions: Tensor<B, 2, Int>,
        heads: usize,
    ) -> RopeAngles<B> {
        let [batch, seq] = positions.dims();
        let half = self.inv_freq.len();
        let device = positions.device();
        let row = |values: Vec<f32>| {
            Tensor::<B, 1>::from_data(TensorData::new(values, [2 * half]), &device).reshape([
                1,
                1,
                1,
                2 * half,
            ])
        };
        let inv_freq = row([self.inv_freq.as_slice(), &self.inv_freq].concat());
        let sign = row([vec![-1.0; half], vec![1.0; half]].concat());
        let angles = positions.float().reshape([batch, seq, 1, 1]) * inv_freq;
        RopeAngles {
            cos: angles.clone().cos().repeat_dim(2, heads),
            sin: (angles.sin() * sign).repeat_dim(2, heads),
        }
    }

    /// The angles of `positions` for a model's query heads and key/value heads.
    pub fn qk_angles<B: Backend>(
        &self,
        positions: Tensor<B, 2, Int>,
        heads: usize,
        kv_heads: usize,
    ) -> QkAngles<B> {
        QkAngles {
            q: self.angles(positions.clone(), heads),
            k: self.angles(positions, kv_heads),
        }
    }
}

impl<B: Backend> RopeAngles<B> {
    /// Rotates `x` (`[batch, seq, heads, head_dim]`): `(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)`.
    /// Fused into one operation on the CPU backends (see [`crate::kernel_rope`]).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        rotate(x, &self.cos, &self.sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Llama3RopeScaling;
    use crate::device::CpuBackend;

    #[test]
    fn position_zero_is_identity_and_rotation_keeps_norm() {
        let rope = Rope::new(&LlamaConfig::tiny(10));
        let device = Default::default();
        let x = Tensor::<CpuBackend, 4>::random(
            [1, 3, 2, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let positions = Tensor::<CpuBackend, 2, Int>::from_ints([[0, 5, 1000]], &device);
        let y = rope.angles(positions, 2).apply(x.clone());
        let x0: Vec<f32> = x
            .clone()
            .slice([0..1, 0..1, 0..2, 0..32])
            .into_data()
            .to_vec()
            .unwrap();
        let y0: Vec<f32> = y
            .clone()
            .slice([0..1, 0..1, 0..2, 0..32])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(x0, y0);
        let nx: Vec<f32> = x.powf_scalar(2.0).sum_dim(3).into_data().to_vec().unwrap();
        let ny: Vec<f32> = y.powf_scalar(2.0).sum_dim(3).into_data().to_vec().unwrap();
        for (a, b) in nx.iter().zip(&ny) {
            assert!((a - b).abs() < 1e-3 * a.max(1.0), "{a} vs {b}");
        }
    }

    /// The host angles of the CPU backends equal the device computation (the same f32
    /// products and sines), left padding's clamped positions and large positions included.
    #[test]
    fn host_angles_match_the_tensor_operations() {
        let mut config = LlamaConfig::tiny(10);
        config.head_dim = 24;
        let rope = Rope::new(&config);
        let device = Default::default();
        let positions = [[0i64, 0, 1, 2, 3], [7, 100, 4095, 65_000, 1]];
        let ids = || Tensor::<CpuBackend, 2, Int>::from_ints(positions, &device);
        let host = rope.angles(ids(), 3);
        let tensor_ops = rope.device_angles(ids(), 3);
        for (a, b) in [(host.cos, tensor_ops.cos), (host.sin, tensor_ops.sin)] {
            assert_eq!(a.dims(), [2, 5, 3, 24]);
            assert_eq!(a.dims(), b.dims());
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.into_data().to_vec().unwrap(),
                b.into_data().to_vec().unwrap(),
            );
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!((x - y).abs() <= 1e-6, "element {i}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn llama3_scaling_divides_low_frequencies_only() {
        let mut config = LlamaConfig::tiny(10);
        config.head_dim = 64;
        config.rope_theta = 500_000.0;
        let plain = Rope::new(&config).inv_freq;
        config.rope_scaling = Some(Llama3RopeScaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = Rope::new(&config).inv_freq;
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] * 32.0 - plain[last]).abs() < 1e-12);
    }
}
