//! The evaluation protocol, metrics, reports and the SFT-vs-RL study runner (issue 6).
//! `evaluate` plays a model's episodes on every configured variant with the environments' own
//! verifiers; `report` writes the results as JSON and Markdown.

pub mod config;
pub mod error;
pub mod evaluate;
pub mod plot;
pub mod report;
pub mod study;

pub use config::{EvalConfig, EvalVariant};
pub use error::EvalError;
pub use evaluate::{EvalReport, VariantResult, evaluate, rate_with_error};
pub use plot::{Plot, Series, render};
pub use report::{table, write_report};
pub use study::{Hooks, Study, StudyOutcome, run_study, run_study_with};
