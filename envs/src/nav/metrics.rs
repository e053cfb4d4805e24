//! The V-IRL metrics (paper-spec §5.2): per-step accuracy over every model call (revisions and
//! the ungraded call past the attempt limit included) and route success.

use serde::Serialize;

use super::verify::CORRECT_ACTION;
use crate::Verdict;

/// Running counts for the two V-IRL metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct NavMetrics {
    pub calls: u64,
    pub correct: u64,
    pub episodes: u64,
    pub successes: u64,
}

impl NavMetrics {
    /// Counts one model call.
    pub fn record_call(&mut self, verdict: &Verdict) {
        self.calls += 1;
        self.correct += u64::from(verdict.reward == CORRECT_ACTION);
    }

    /// Counts one finished episode.
    pub fn record_episode(&mut self, success: bool) {
        self.episodes += 1;
        self.successes += u64::from(success);
    }

    /// Calls with reward +1 over all calls (0 when there were none).
    pub fn step_accuracy(&self) -> f64 {
        ratio(self.correct, self.calls)
    }

    /// Successful episodes over finished episodes (0 when there were none).
    pub fn success_rate(&self) -> f64 {
        ratio(self.successes, self.episodes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
