//! Post-training for sftvsrl. Supervised fine-tuning: chat JSONL is rendered through the
//! model's chat template and trained with a loss on the answer tokens only, AdamW with the
//! reference's schedules ([`schedule`]), gradient accumulation and global-norm clipping
//! ([`grad_clip`], shared with PPO), step checkpoints that resume exactly, and FLOPs accounting
//! ([`run`]). The RL learner ([`rl`]): PPO on rollouts of the episode engine
//! ([`engine`]), through which evaluation plays its episodes too.

pub mod answer_match;
pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod data;
pub mod display;
pub mod durable;
pub mod engine;
pub mod error;
pub mod flops;
pub mod gp_eval;
pub mod grad_clip;
pub mod kernel_bench;
pub mod learner;
pub mod metrics_log;
pub mod pixels;
pub mod policy;
pub mod resume_check;
pub mod rl;
pub mod run;
pub mod schedule;
pub mod self_sft;
pub mod setup;
pub mod skeleton;
pub mod step;

pub use answer_match::{greedy_answer_match, same_answer};
pub use batch::SftBatch;
pub use bench::{BenchModel, TrainBenchConfig, TrainBenchReport, bench_train};
pub use config::{
    DataConfig, GenerateData, GpEvalConfig, ModelConfig, RunConfig, SftConfig, TrainConfig,
    parse_config, read_config,
};
pub use data::{ChatExample, Sequence, read_chat_jsonl};
pub use display::{Dashboard, RunDisplay};
pub use engine::{Call, EpisodeError, EpisodeRecord, Policy, Pool, Seeds, play_episodes};
pub use error::TrainError;
pub use gp_eval::{GpEvalResult, gp_success};
pub use pixels::PixelCache;
pub use policy::{ScriptedPolicy, TextPolicy, VisionPolicy, backbone_policy, vision_prompt};
pub use run::{RunSummary, run_sft, run_sft_across, run_sft_on};
pub use schedule::{SftLr, SftSchedule, WarmupCosine, WarmupLr, cosine_annealing};
pub use self_sft::{SelfSftConfig, SelfSftSummary, write_self_sft_data};
pub use step::{SftLoss, StepOutput, StepStats, masked_loss, masked_loss_with};
