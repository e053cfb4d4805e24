//! GeneralPoints: the 24-points card game as a verifiable text and vision task (paper-spec §1).
pub mod cards;
pub mod config;
pub mod episode;
pub mod formula;
pub mod paraphrase;
pub mod prompt;
pub mod render;
pub mod revision;
pub mod solver;
pub mod thought;
pub mod verify;

pub use cards::{Card, FaceRule, Sampling, Suit, SuitSet};
pub use config::{GpConfig, Variant};
pub use episode::{GeneralPoints, GpError, Hand};
pub use verify::{Grade, RewardScheme};
pub mod expert;
