//! Choosing the next token on the device: greedy, or temperature with nucleus (top-p)
//! truncation by inverse-CDF sampling. The random numbers come from the host (one uniform per
//! sequence and step, from a seeded generator), so a seed gives the same tokens on every
//! backend whose arithmetic agrees, and nothing waits on the device to draw them.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, backend::Backend};

use crate::error::ModelError;

/// How the next token is drawn from the logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus mass: sample among the most likely tokens whose probabilities sum to at least
    /// this (1 keeps every token).
    pub top_p: f32,
}

impl Sampling {
    /// Always the most likely token.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
    };

    /// Whether this is argmax decoding (no randomness).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the ranges: temperature finite and >= 0, top_p in (0, 1].
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ModelError::Generation(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ModelError::Generation(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }

    /// One token per row of `logits` (`[batch, vocab]`) and its log-probability under
    /// `softmax(logits / temperature)` (temperature 1 when greedy): `([batch], [batch])`.
    /// `uniforms` (`[batch, 1]`, in [0, 1)) drive the draw; greedy ignores them.
    pub fn sample<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        uniforms: Tensor<B, 2>,
    ) -> (Tensor<B, 1, Int>, Tensor<B, 1>) {
        let [batch, vocab] = logits.dims();
        if self.is_greedy() {
            let tokens = logits.clone().argmax(1);
            let logprobs = log_softmax(logits, 1).gather(1, tokens.clone());
            return (tokens.reshape([batch]), logprobs.reshape([batch]));
        }
        let logprobs = log_softmax(logits / self.temperature, 1);
        let probs = logprobs.clone().exp();
        let tokens = if self.top_p < 1.0 {
            let (sorted, order) = probs.sort_descending_with_indices(1);
            let cumulative = sorted.clone().cumsum(1);
            // Keep a token while the mass strictly before it is below top_p (the first always).
            let before = cumulative - sorted.clone();
            let keep = before.lower_elem(self.top_p);
            let kept = sorted.mask_fill(keep.clone().bool_not(), 0.0);
            let last_kept = keep.int().sum_dim(1) - 1;
            let pick = inverse_cdf(kept, uniforms).min_pair(last_kept);
            order.gather(1, pick)
        } else {
            inverse_cdf(probs, uniforms).clamp_max(vocab as i64 - 1)
        };
        let chosen = logprobs.gather(1, tokens.clone());
        (tokens.reshape([batch]), chosen.reshape([batch]))
    }
}

/// The index `k` of each row where the running sum of `weights` (`[batch, n]`) first exceeds
/// `u * total`, i.e. the number of prefix sums at or below that threshold: `[batch, 1]`.
fn inverse_cdf<B: Backend>(weights: Tensor<B, 2>, uniforms: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [batch, n] = weights.dims();
    let cumulative = weights.cumsum(1);
    let total = cumulative.clone().slice([0..batch, n - 1..n]);
    let threshold = (total * uniforms).expand([batch, n]);
    cumulative.lower_equal(threshold).int().sum_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;
    use burn::tensor::TensorData;

    type B = CpuBackend;

    fn draw(sampling: Sampling, logits: [[f32; 4]; 1], u: f32) -> (i64, f32) {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_data(logits, &device);
        let u = Tensor::<B, 2>::from_data(TensorData::new(vec![u], [1, 1]), &device);
        let (t, lp) = sampling.sample(logits, u);
        let t: Vec<i64> = t.into_data().iter::<i64>().collect();
        let lp: Vec<f32> = lp.into_data().to_vec().unwrap();
        (t[0], lp[0])
    }

    #[test]
    fn greedy_takes_argmax_with_its_logprob() {
        let (t, lp) = draw(Sampling::GREEDY, [[0.0, 2.0, 1.0, -1.0]], 0.9);
        assert_eq!(t, 1);
        let z: f32 = [0.0f32, 2.0, 1.0, -1.0].iter().map(|x| x.exp()).sum();
        assert!((lp - (2.0 - z.ln())).abs() < 1e-6);
    }

    #[test]
    fn inverse_cdf_follows_the_uniform() {
        // probabilities 0.1, 0.2, 0.3, 0.4 at temperature 1
        let logits = [[0.1f32.ln(), 0.2f32.ln(), 0.3f32.ln(), 0.4f32.ln()]];
        let s = Sampling {
            temperature: 1.0,
            top_p: 1.0,
        };
        assert_eq!(draw(s, logits, 0.05).0, 0);
        assert_eq!(draw(s, logits, 0.15).0, 1);
        assert_eq!(draw(s, logits, 0.55).0, 2);
        assert_eq!(draw(s, logits, 0.95).0, 3);
        let (t, lp) = draw(s, logits, 0.95);
        assert_eq!(t, 3);
        assert!((lp - 0.4f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // sorted: 0.4 (id 3), 0.3 (id 2), 0.2, 0.1; top_p 0.6 keeps ids 3 and 2 (mass 0.7).
        let logits = [[0.1f32.ln(), 0.2f32.ln(), 0.3f32.ln(), 0.4f32.ln()]];
        let s = Sampling {
            temperature: 1.0,
            top_p: 0.6,
        };
        assert_eq!(draw(s, logits, 0.0).0, 3);
        assert_eq!(draw(s, logits, 0.5).0, 3); // 0.5 * 0.7 = 0.35 < 0.4
        assert_eq!(draw(s, logits, 0.6).0, 2);
        assert_eq!(draw(s, logits, 0.9999).0, 2);
        // The log-prob is that of the full tempered distribution.
        let (_, lp) = draw(s, logits, 0.9);
        assert!((lp - 0.3f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_settings() {
        for (temperature, top_p) in [(-1.0, 1.0), (f32::NAN, 1.0), (1.0, 0.0), (1.0, 1.5)] {
            assert!(Sampling { temperature, top_p }.validate().is_err());
        }
        assert!(Sampling::GREEDY.validate().is_ok());
    }
}
