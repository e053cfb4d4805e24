//! The learning-rate schedule: linear warmup from 0, then a cosine decay (the reference's
//! `warmup_ratio` + `cosine`).

/// Warmup + cosine over `total_steps` optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    pub peak_lr: f64,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// The final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl WarmupCosine {
    /// A schedule whose warmup is `warmup_ratio` of `total_steps`, rounded up (as HF does).
    pub fn new(peak_lr: f64, total_steps: usize, warmup_ratio: f64, min_lr_ratio: f64) -> Self {
        WarmupCosine {
            peak_lr,
            total_steps,
            warmup_steps: (total_steps as f64 * warmup_ratio).ceil() as usize,
            min_lr_ratio,
        }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_linearly_then_cosine_decays() {
        let s = WarmupCosine::new(1.0, 100, 0.03, 0.0);
        assert_eq!(s.warmup_steps, 3);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.lr(0), 1.0 / 3.0));
        assert!(close(s.lr(1), 2.0 / 3.0));
        assert!(close(s.lr(2), 1.0));
        assert!(close(s.lr(3), 1.0));
        // Halfway through the decay the cosine is at one half.
        let half = WarmupCosine::new(2.0, 12, 0.0, 0.0);
        assert!(close(half.lr(6), 1.0));
        assert!(close(half.lr(12), 0.0));
        let floor = WarmupCosine::new(1.0, 10, 0.0, 0.1);
        assert!(close(floor.lr(10), 0.1));
        assert!(close(floor.lr(0), 1.0));
    }

    #[test]
    fn learning_rate_never_increases_after_warmup() {
        let s = WarmupCosine::new(1e-3, 50, 0.1, 0.0);
        let lrs: Vec<f64> = (0..50).map(|i| s.lr(i)).collect();
        assert!(lrs[..5].windows(2).all(|w| w[0] < w[1]));
        assert!(lrs[4..].windows(2).all(|w| w[0] >= w[1]));
    }
}
