//! Returns and advantages over one environment's steps, as the reference's rollout storage
//! computes them (a2c-ppo-acktr / RL4VLM `compute_returns` with GAE), the GRPO-style group
//! baseline, advantage whitening and explained variance.

use std::collections::BTreeMap;

use super::config::Truncation;

/// One environment's steps in time order.
#[derive(Clone, Copy, Debug)]
pub struct Trajectory<'a> {
    pub rewards: &'a [f64],
    /// The value estimates recorded at collection time.
    pub values: &'a [f64],
    pub terminated: &'a [bool],
    pub truncated: &'a [bool],
    /// The value of the state after the last step (the bootstrap).
    pub next_value: f64,
}

/// GAE(γ, λ) returns (advantage + value) of each step.
///
/// After step `t` the mask is `1 − terminated` (`Reference`, so a truncated step bootstraps into
/// the next episode's first value) or `1 − (terminated ∨ truncated)` (`Terminal`);
/// `ProperTimeLimits` keeps the reference mask but zeroes the accumulated advantage at a
/// truncated step, as a2c-ppo-acktr's `bad_masks` do.
pub fn gae_returns(t: &Trajectory<'_>, gamma: f64, lam: f64, truncation: Truncation) -> Vec<f64> {
    let n = t.rewards.len();
    let mut returns = vec![0.0; n];
    let mut gae = 0.0;
    for i in (0..n).rev() {
        let next = if i + 1 < n {
            t.values[i + 1]
        } else {
            t.next_value
        };
        let end = match truncation {
            Truncation::Terminal => t.terminated[i] || t.truncated[i],
            Truncation::Reference | Truncation::ProperTimeLimits => t.terminated[i],
        };
        let mask = if end { 0.0 } else { 1.0 };
        let delta = t.rewards[i] + gamma * next * mask - t.values[i];
        gae = delta + gamma * lam * mask * gae;
        if truncation == Truncation::ProperTimeLimits && t.truncated[i] {
            gae = 0.0;
        }
        returns[i] = gae + t.values[i];
    }
    returns
}

/// Discounted Monte-Carlo returns that stop at every episode end (terminated or truncated);
/// an episode still running at the end of the buffer bootstraps 0.
pub fn discounted_returns(t: &Trajectory<'_>, gamma: f64) -> Vec<f64> {
    let n = t.rewards.len();
    let mut returns = vec![0.0; n];
    let mut acc = 0.0;
    for i in (0..n).rev() {
        if t.terminated[i] || t.truncated[i] {
            acc = 0.0;
        }
        acc = t.rewards[i] + gamma * acc;
        returns[i] = acc;
    }
    returns
}

/// The GRPO-style group baseline: each return minus the mean of the returns that share its
/// key, divided by their standard deviation (+1e-5). A key seen once gets advantage 0.
pub fn group_advantages<K: Ord + Clone>(returns: &[f64], keys: &[K]) -> Vec<f64> {
    let mut groups: BTreeMap<K, Vec<f64>> = BTreeMap::new();
    for (r, k) in returns.iter().zip(keys) {
        groups.entry(k.clone()).or_default().push(*r);
    }
    let stats: BTreeMap<K, (f64, f64, usize)> = groups
        .into_iter()
        .map(|(k, v)| (k, (mean(&v), std_unbiased(&v), v.len())))
        .collect();
    returns
        .iter()
        .zip(keys)
        .map(|(r, k)| {
            let (m, s, n) = stats[k];
            if n < 2 { 0.0 } else { (r - m) / (s + 1e-5) }
        })
        .collect()
}

/// `(x − mean) / (std + 1e-5)` with the unbiased standard deviation, as `torch.std`.
pub fn whiten(x: &[f64]) -> Vec<f64> {
    let (m, s) = (mean(x), std_unbiased(x));
    x.iter().map(|v| (v - m) / (s + 1e-5)).collect()
}

/// `1 − Var(returns − values) / Var(returns)`; `None` when the returns do not vary.
pub fn explained_variance(values: &[f64], returns: &[f64]) -> Option<f64> {
    let residual: Vec<f64> = returns.iter().zip(values).map(|(r, v)| r - v).collect();
    let var = variance(returns);
    (var > 0.0).then(|| 1.0 - variance(&residual) / var)
}

/// The arithmetic mean (0 for no values).
pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

fn variance(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len().max(1) as f64
}

fn std_unbiased(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }

    /// Three steps: a failure, a truncation (step limit), then the first step of a new episode.
    const REWARDS: [f64; 3] = [-1.0, -1.0, 5.0];
    const VALUES: [f64; 3] = [0.5, 0.2, 1.0];
    const TERMINATED: [bool; 3] = [false, false, true];
    const TRUNCATED: [bool; 3] = [false, true, false];

    fn trajectory() -> Trajectory<'static> {
        Trajectory {
            rewards: &REWARDS,
            values: &VALUES,
            terminated: &TERMINATED,
            truncated: &TRUNCATED,
            next_value: 2.0,
        }
    }

    #[test]
    fn gae_matches_hand_computed_values() {
        let (g, l) = (0.9, 0.95);
        // Step 2 terminates: delta = 5 − 1 = 4, gae = 4.
        let a2 = 4.0;
        // Step 1 truncates; the reference bootstraps into the next episode's value 1.0.
        let d1 = -1.0 + g * 1.0 - 0.2;
        let a1 = d1 + g * l * a2;
        let d0 = -1.0 + g * 0.2 - 0.5;
        let a0 = d0 + g * l * a1;
        let r = gae_returns(&trajectory(), g, l, Truncation::Reference);
        close(&r, &[a0 + 0.5, a1 + 0.2, a2 + 1.0]);

        // Terminal: step 1 is an episode end, nothing flows back across it.
        let a1t = -1.0 - 0.2;
        let a0t = d0 + g * l * a1t;
        let r = gae_returns(&trajectory(), g, l, Truncation::Terminal);
        close(&r, &[a0t + 0.5, a1t + 0.2, a2 + 1.0]);

        // Proper time limits: the truncated step's advantage is 0, and step 0 sees only its delta.
        let r = gae_returns(&trajectory(), g, l, Truncation::ProperTimeLimits);
        close(&r, &[d0 + 0.5, 0.2, a2 + 1.0]);
    }

    #[test]
    fn gae_bootstraps_the_last_step() {
        let t = Trajectory {
            rewards: &[1.0],
            values: &[0.0],
            terminated: &[false],
            truncated: &[false],
            next_value: 3.0,
        };
        close(&gae_returns(&t, 0.5, 1.0, Truncation::Reference), &[2.5]);
    }

    #[test]
    fn monte_carlo_returns_stop_at_episode_ends() {
        let r = discounted_returns(&trajectory(), 0.5);
        close(&r, &[-1.5, -1.0, 5.0]);
    }

    #[test]
    fn group_baseline_centres_and_scales_each_group() {
        let a = group_advantages(&[1.0, 3.0, 10.0, 7.0], &[0, 0, 1, 2]);
        let s = 2f64.sqrt(); // unbiased std of {1, 3}
        close(&a, &[-1.0 / (s + 1e-5), 1.0 / (s + 1e-5), 0.0, 0.0]);
    }

    #[test]
    fn whitening_uses_the_unbiased_std() {
        let w = whiten(&[1.0, 2.0, 3.0]);
        close(&w, &[-1.0 / (1.0 + 1e-5), 0.0, 1.0 / (1.0 + 1e-5)]);
        assert_eq!(explained_variance(&[1.0, 2.0], &[1.0, 2.0]), Some(1.0));
        assert_eq!(explained_variance(&[0.0, 0.0], &[1.0, 1.0]), None);
        let ev = explained_variance(&[0.0, 0.0], &[1.0, 3.0]).unwrap();
        assert!(ev.abs() < 1e-12);
    }
}
