//! `sftvsrl study`: the SFT-versus-RL comparison as one command. From one Init model, an RL
//! branch and an SFT branch are trained at matched compute, every checkpoint is evaluated ID
//! and OOD, and `report.md` tabulates and plots the outcome (paper-spec §5–§7).

pub mod config;
pub mod kl;
pub mod report;
pub mod run;

pub use config::Study;
pub use run::{
    Branch, Evaluator, Hooks, KlMeter, Point, SelfSampler, StudyOutcome, real_evaluator,
    real_kl_meter, real_self_sampler, run_study, run_study_with,
};
