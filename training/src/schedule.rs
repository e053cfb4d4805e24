//! Learning-rate schedules, each as the reference's libraries compute it (the evidence is in
//! docs/reference-behaviour.md):
//!
//! * [`WarmupLr`]: DeepSpeed's `WarmupLR`, which the reference's SFT actually runs;
//! * [`WarmupCosine`]: Hugging Face's `cosine` with linear warmup, which its SFT script asks for;
//! * [`cosine_annealing`]: PyTorch's `CosineAnnealingLR`, the reference's PPO schedule.

use serde::{Deserialize, Serialize};

/// Which schedule an SFT run follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SftSchedule {
    /// DeepSpeed's `WarmupLR` (the reference: its DeepSpeed config declares this scheduler,
    /// which replaces the cosine the training script asks for): log-rate warmup, then constant.
    #[default]
    WarmupLr,
    /// Hugging Face's `cosine`: linear warmup from 0, then a cosine decay to
    /// `lr × min_lr_ratio` at the last step.
    Cosine,
}

/// The learning rate of each optimizer step of an SFT run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SftLr {
    WarmupLr(WarmupLr),
    Cosine(WarmupCosine),
}

impl SftLr {
    /// The schedule `kind` over `total_steps` optimizer steps, warming up over
    /// `ceil(warmup_ratio × total_steps)` of them (as Hugging Face counts warmup steps).
    pub fn new(
        kind: SftSchedule,
        peak_lr: f64,
        total_steps: usize,
        warmup_ratio: f64,
        min_lr_ratio: f64,
    ) -> Self {
        let warmup_steps = (total_steps as f64 * warmup_ratio).ceil() as usize;
        match kind {
            SftSchedule::WarmupLr => SftLr::WarmupLr(WarmupLr::new(peak_lr, warmup_steps)),
            SftSchedule::Cosine => SftLr::Cosine(WarmupCosine {
                peak_lr,
                total_steps,
                warmup_steps,
                min_lr_ratio,
            }),
        }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        match self {
            SftLr::WarmupLr(s) => s.lr(step),
            SftLr::Cosine(s) => s.lr(step),
        }
    }
}

impl std::fmt::Display for SftLr {
    /// `WarmupLR to 1e-6 over 12 steps (log rate), then constant` or
    /// `cosine from 1e-6 to 0e0 after 12 warmup steps`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftLr::WarmupLr(s) => write!(
                f,
                "lr: WarmupLR to {:.3e} over {} steps (log rate), then constant",
                s.peak_lr, s.warmup_steps
            ),
            SftLr::Cosine(s) => write!(
                f,
                "lr: cosine from {:.3e} to {:.3e} after {} warmup steps",
                s.peak_lr,
                s.peak_lr * s.min_lr_ratio,
                s.warmup_steps
            ),
        }
    }
}

/// DeepSpeed's `WarmupLR` with `warmup_min_lr` 0 and its default log-rate warmup, stepped by
/// the engine after every optimizer step. Optimizer step 0 runs at the optimizer's own rate
/// (the peak: the scheduler has not been stepped yet); before step `k ≥ 1` the scheduler has
/// counted iteration `k − 1`, so the rate is `peak · ln(k) / ln(W)` while `k − 1 < W`, then the
/// peak for good. `W` is at least 2, as DeepSpeed enforces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupLr {
    pub peak_lr: f64,
    /// DeepSpeed's `warmup_num_steps` (at least 2).
    pub warmup_steps: usize,
}

impl WarmupLr {
    /// A schedule warming up over `warmup_steps` (raised to 2 if smaller, as DeepSpeed does).
    pub fn new(peak_lr: f64, warmup_steps: usize) -> Self {
        WarmupLr {
            peak_lr,
            warmup_steps: warmup_steps.max(2),
        }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let Some(iteration) = step.checked_sub(1) else {
            return self.peak_lr;
        };
        if iteration >= self.warmup_steps {
            return self.peak_lr;
        }
        let gamma = ((iteration + 1) as f64).ln() / (self.warmup_steps as f64).ln();
        self.peak_lr * gamma
    }
}

/// Hugging Face's `get_cosine_schedule_with_warmup` over `total_steps` optimizer steps, with a
/// floor: step `s < W` runs at `peak · s / W` (step 0 at 0), later steps follow a half cosine
/// from the peak to `peak × min_lr_ratio` at `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    pub peak_lr: f64,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// The final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl WarmupCosine {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * step as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

/// PyTorch's `CosineAnnealingLR` after `t` scheduler steps:
/// `min + (base − min) · (1 + cos(π t / t_max)) / 2`. Past `t_max` the rate rises again (the
/// curve has period `2 · t_max`), as PyTorch's does when stepped beyond it.
pub fn cosine_annealing(base_lr: f64, min_lr: f64, t_max: usize, t: usize) -> f64 {
    let phase = std::f64::consts::PI * t as f64 / t_max.max(1) as f64;
    min_lr + (base_lr - min_lr) * 0.5 * (1.0 + phase.cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn cosine_warms_up_from_zero_then_decays() {
        let s = SftLr::new(SftSchedule::Cosine, 1.0, 100, 0.03, 0.0);
        assert!(close(s.lr(0), 0.0));
        assert!(close(s.lr(1), 1.0 / 3.0));
        assert!(close(s.lr(2), 2.0 / 3.0));
        assert!(close(s.lr(3), 1.0));
        // Halfway through the decay the cosine is at one half.
        let half = SftLr::new(SftSchedule::Cosine, 2.0, 12, 0.0, 0.0);
        assert!(close(half.lr(0), 2.0));
        assert!(close(half.lr(6), 1.0));
        assert!(close(half.lr(12), 0.0));
        let floor = SftLr::new(SftSchedule::Cosine, 1.0, 10, 0.0, 0.1);
        assert!(close(floor.lr(10), 0.1));
        let lrs: Vec<f64> = (0..50)
            .map(|i| SftLr::new(SftSchedule::Cosine, 1e-3, 50, 0.1, 0.0).lr(i))
            .collect();
        assert!(lrs[..5].windows(2).all(|w| w[0] < w[1]));
        assert!(lrs[5..].windows(2).all(|w| w[0] >= w[1]));
    }

    /// 400 steps with 3% warmup: DeepSpeed warms up over 12 steps. Step 0 runs at the peak (the
    /// optimizer's own rate), step 1 at 0 (ln 1), then ln(k)/ln(12), the peak from step 12 on.
    #[test]
    fn warmup_lr_is_deepspeeds() {
        let s = SftLr::new(SftSchedule::WarmupLr, 1e-6, 400, 0.03, 0.0);
        assert_eq!(s, SftLr::WarmupLr(WarmupLr::new(1e-6, 12)));
        assert!(close(s.lr(0), 1e-6));
        assert_eq!(s.lr(1), 0.0);
        assert!(close(s.lr(2), 1e-6 * 2f64.ln() / 12f64.ln()));
        assert!(close(s.lr(11), 1e-6 * 11f64.ln() / 12f64.ln()));
        assert!(close(s.lr(12), 1e-6));
        assert!((12..400).all(|k| s.lr(k) == 1e-6));
        // No warmup asked for: DeepSpeed still warms up over 2 steps.
        let none = SftLr::new(SftSchedule::WarmupLr, 1.0, 10, 0.0, 0.0);
        assert_eq!((none.lr(0), none.lr(1), none.lr(2)), (1.0, 0.0, 1.0));
    }

    /// The reference's PPO: t_max 100, stepped 8 times per update: the floor comes between
    /// updates 12 and 13, and the rate rises again after it.
    #[test]
    fn cosine_annealing_is_periodic_past_t_max() {
        let lr = |update: usize| cosine_annealing(1e-6, 1e-9, 100, 8 * update);
        assert!(close(lr(0), 1e-6));
        assert!(close(cosine_annealing(1e-6, 1e-9, 100, 100), 1e-9));
        assert!(close(cosine_annealing(1e-6, 1e-9, 100, 200), 1e-6));
        let lrs: Vec<f64> = (0..20).map(lr).collect();
        assert!(lrs[..13].windows(2).all(|w| w[0] > w[1]), "{lrs:?}");
        assert!(lrs[13..].windows(2).all(|w| w[0] < w[1]), "{lrs:?}");
        assert!(lrs[12] < 0.01 * 1e-6 && lrs[19] > 0.5 * 1e-6, "{lrs:?}");
        // Stepped once per update, 20 updates barely decay it.
        assert!(cosine_annealing(1e-6, 1e-9, 100, 19) > 0.9 * 1e-6);
    }
}
