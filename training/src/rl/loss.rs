//! The PPO losses as the reference computes them (RL4VLM `ppo.py`): the clipped surrogate with
//! the "any ratio > threshold" rule, the clipped value loss (with its own ½), and the entropy
//! of the tempered next-token distribution for the optional bonus.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, backend::Backend};

/// The clipped surrogate `−mean(min(r·A, clip(r)·A))` over the entries where `mask` is 1.
///
/// `new_logp`, `old_logp` and `mask` are `[batch, n]` (n = 1 for one ratio per action, the
/// response length for per-token ratios); `advantages` is `[batch, 1]`. With `clipped_only`
/// (some ratio exceeded the threshold) the loss is `−mean(clip(r)·A)`.
pub fn policy_loss<B: Backend>(
    new_logp: Tensor<B, 2>,
    old_logp: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    cliprange: f32,
    clipped_only: bool,
) -> Tensor<B, 1> {
    let [batch, n] = new_logp.dims();
    let advantages = advantages.expand([batch, n]);
    let ratio = (new_logp - old_logp).exp();
    let surr2 = ratio.clone().clamp(1.0 - cliprange, 1.0 + cliprange) * advantages.clone();
    let surr = if clipped_only {
        surr2
    } else {
        (ratio * advantages).min_pair(surr2)
    };
    let count = mask.clone().sum();
    -(surr * mask).sum() / count
}

/// `½ · mean(max((v − R)², (v_old + clip(v − v_old) − R)²))` over `[batch]` values.
pub fn value_loss<B: Backend>(
    values: Tensor<B, 1>,
    old_values: Tensor<B, 1>,
    returns: Tensor<B, 1>,
    cliprange_value: f32,
) -> Tensor<B, 1> {
    let clipped =
        old_values.clone() + (values.clone() - old_values).clamp(-cliprange_value, cliprange_value);
    let unclipped = (values - returns.clone()).square();
    let clipped = (clipped - returns).square();
    unclipped.max_pair(clipped).mean() * 0.5
}

/// The mean entropy of `softmax(logits / temperature)` over the rows of `logits`
/// (`[tokens, vocab]`: the response tokens' logits).
pub fn mean_entropy<B: Backend>(logits: Tensor<B, 2>, temperature: f32) -> Tensor<B, 1> {
    let logp = log_softmax(logits / temperature, 1);
    (-(logp.clone().exp() * logp).sum_dim(1)).mean()
}

/// Host-side statistics of the ratios of one minibatch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RatioStats {
    /// The largest ratio.
    pub max: f32,
    /// Entries whose ratio lies outside `[1 − clip, 1 + clip]`.
    pub clipped: usize,
    /// Σ (r − 1 − log r), the "k3" estimate of KL(old ‖ new) summed over entries.
    pub kl_sum: f64,
    /// Entries counted.
    pub count: usize,
}

impl RatioStats {
    /// The statistics of `new − old` log-probs over the entries where `mask` is 1.
    pub fn new(new: &[f32], old: &[f32], mask: &[f32], cliprange: f32) -> Self {
        let mut s = RatioStats {
            max: f32::NEG_INFINITY,
            ..RatioStats::default()
        };
        for ((n, o), m) in new.iter().zip(old).zip(mask) {
            if *m == 0.0 {
                continue;
            }
            let log_ratio = f64::from(n - o);
            let r = log_ratio.exp();
            s.max = s.max.max(r as f32);
            s.clipped += usize::from((r - 1.0).abs() > f64::from(cliprange));
            s.kl_sum += r - 1.0 - log_ratio;
            s.count += 1;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    type B = burn::backend::NdArray<f32>;

    fn t2(v: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn t1(v: Vec<f32>) -> Tensor<B, 1> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), &Default::default())
    }

    fn value(t: Tensor<B, 1>) -> f32 {
        t.into_data().to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn clipped_surrogate_matches_hand_computed_values() {
        // Ratios 1.5 (A = 2) and 0.5 (A = −1), clip 0.2.
        let new = t2(vec![1.5f32.ln(), 0.5f32.ln()], [2, 1]);
        let old = t2(vec![0.0, 0.0], [2, 1]);
        let mask = t2(vec![1.0, 1.0], [2, 1]);
        let adv = t2(vec![2.0, -1.0], [2, 1]);
        // min(3, 1.2·2) = 2.4; min(−0.5, 0.8·−1) = −0.8; loss = −(2.4 − 0.8)/2.
        let l = policy_loss(
            new.clone(),
            old.clone(),
            mask.clone(),
            adv.clone(),
            0.2,
            false,
        );
        assert!((value(l) + 0.8).abs() < 1e-5);
        // Only the clipped term: −(2.4 − 0.8)/2 as well here; change A to see the difference.
        let adv2 = t2(vec![-2.0, 1.0], [2, 1]);
        // min(−3, −2.4) = −3; min(0.5, 0.8) = 0.5 → 1.25; clipped only: −2.4, 0.8 → 0.8.
        let l = policy_loss(
            new.clone(),
            old.clone(),
            mask.clone(),
            adv2.clone(),
            0.2,
            false,
        );
        assert!((value(l) - 1.25).abs() < 1e-5);
        let l = policy_loss(new, old, mask, adv2, 0.2, true);
        assert!((value(l) - 0.8).abs() < 1e-5);
    }

    #[test]
    fn per_token_surrogate_averages_unmasked_tokens() {
        // One sample, three tokens, the last one padding.
        let new = t2(vec![0.1f32.ln_1p(), 0.0, 5.0], [1, 3]);
        let old = t2(vec![0.0, 0.0, 0.0], [1, 3]);
        let mask = t2(vec![1.0, 1.0, 0.0], [1, 3]);
        let adv = t2(vec![1.0], [1, 1]);
        // Ratios 1.1 and 1.0, A = 1, clip 0.05: min(1.1, 1.05) = 1.05 and 1 → −2.05 / 2.
        let l = policy_loss(new, old, mask, adv, 0.05, false);
        assert!((value(l) + 1.025).abs() < 1e-5);
    }

    #[test]
    fn clipped_value_loss_matches_hand_computed_values() {
        // v = 1.0, v_old = 0.0, R = 2.0, clip 0.1: unclipped (1−2)² = 1, clipped (0.1−2)² = 3.61.
        // v = 0.0, v_old = 0.5, R = 0.0: unclipped 0, clipped (0.4)² = 0.16.
        let l = value_loss(
            t1(vec![1.0, 0.0]),
            t1(vec![0.0, 0.5]),
            t1(vec![2.0, 0.0]),
            0.1,
        );
        assert!((value(l) - 0.5 * (3.61 + 0.16) / 2.0).abs() < 1e-5);
    }

    #[test]
    fn entropy_of_uniform_and_ratio_statistics() {
        let logits = t2(vec![0.0f32, 0.0, 0.0, 0.0], [1, 4]);
        let h = mean_entropy(logits, 1.0);
        assert!((value(h) - 4f32.ln()).abs() < 1e-5);
        // The mean over rows: a uniform row over 4 and a certain one.
        let logits = t2(
            vec![0.0f32, 0.0, 0.0, 0.0, 90.0, -90.0, -90.0, -90.0],
            [2, 4],
        );
        let h = mean_entropy(logits, 1.0);
        assert!((value(h) - 4f32.ln() / 2.0).abs() < 1e-5);

        let s = RatioStats::new(
            &[0.5f32.ln(), 0.0, 3.0],
            &[0.0, 0.0, 0.0],
            &[1.0, 1.0, 0.0],
            0.1,
        );
        assert_eq!((s.clipped, s.count), (1, 2));
        assert!((s.max - 1.0).abs() < 1e-6);
        assert!((s.kl_sum - (0.5 - 1.0 - 0.5f64.ln())).abs() < 1e-6);
    }
}
