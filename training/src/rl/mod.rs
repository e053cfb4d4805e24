//! The RL learner (issue 5): multi-step PPO with verifier rewards and sequential revision,
//! as the reference recipe (paper-spec §4) does it, with the common options beyond it as
//! config switches that are off by default.
//!
//! Read in order: [`rollout`] (environments stepped together through batched generation) →
//! [`buffer`] (what is stored per step, and scoring it again) → [`logprob`] (the λ-weighted
//! thought/action log-prob) → [`gae`] (returns and advantages) → [`loss`] (clipped losses) →
//! [`ppo`] (epochs of minibatches with accumulation and global-norm clipping) → [`run`];
//! [`distributed`] splits a run over worker processes.

pub mod bench;
pub mod buffer;
pub mod config;
pub mod distill;
pub mod distributed;
pub mod gae;
pub mod logprob;
pub mod loss;
pub mod ppo;
pub mod rollout;
pub mod run;
pub mod value_head;

pub use crate::collective::{WorkerSpec, Workers, run_orchestrator};
pub use bench::{RlBenchConfig, RlBenchReport, bench_rl};
pub use config::RlConfig;
pub use run::{RlProgress, RlSummary, run_rl, run_rl_across, run_rl_local};
pub use value_head::{ActorCritic, ValueHead};
