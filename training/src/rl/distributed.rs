//! PPO across worker processes, on one node or several (issue 19), with burn-collective: each
//! worker collects its share of the environments, and the pieces that need every worker's
//! samples — advantage whitening, and each optimizer step's gradient — are all-reduced through
//! burn-collective's global orchestrator, so that N workers take the optimizer steps one worker
//! with all N × `rollout.num_envs` environments would take.
//!
//! Semantics (see also the README's "Several workers"):
//! - Worker `r` of `N` holds the global environments `[r·n, (r+1)·n)`, `n = rollout.num_envs`;
//!   the global buffer is step-major over all `N·n` environments.
//! - Advantages: GAE and group advantages are per environment (group) and computed locally;
//!   whitening gathers the raw advantages of the whole global buffer and whitens it as one
//!   worker would.
//! - Minibatches are cut from one permutation of the global buffer (the same on every worker);
//!   each worker runs the part of every minibatch it holds, weighted by its share of the step's
//!   samples, and the summed gradients are all-reduced before the norm clip and the one
//!   optimizer step, which every worker applies to identical weights. With
//!   `ppo.mini_batch_size = 1` (the reference) this is the one-worker update exactly (up to
//!   float summation order); with larger minibatches it is exact when a minibatch's loss is the
//!   mean of its samples' losses (`ppo.ratio = "action"`, no entropy bonus, no ratio-threshold
//!   hit), and otherwise those per-minibatch rules see each worker's part on its own.
//!
//! The workers and their collective calls are [`crate::collective`]'s.

use crate::collective::Workers;

/// Where the samples of worker `rank`'s step-major buffer of `num_envs` environments sit in
/// the global step-major buffer of all workers.
#[derive(Clone, Copy, Debug)]
pub struct Shard<'a> {
    pub workers: &'a Workers,
    /// Environments of each worker (`rollout.num_envs`).
    pub num_envs: usize,
}

impl Shard<'_> {
    /// Environments over all workers.
    pub fn global_envs(&self) -> usize {
        self.num_envs * self.workers.world_size()
    }

    /// The global index of local sample `i`.
    pub fn global(&self, i: usize) -> usize {
        let (t, e) = (i / self.num_envs, i % self.num_envs);
        t * self.global_envs() + self.workers.rank() * self.num_envs + e
    }

    /// The local index of global sample `g`, if this worker holds it.
    pub fn local(&self, g: usize) -> Option<usize> {
        let (t, column) = (g / self.global_envs(), g % self.global_envs());
        (column / self.num_envs == self.workers.rank())
            .then(|| t * self.num_envs + column % self.num_envs)
    }
}
