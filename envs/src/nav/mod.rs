//! V-IRL street navigation as a verifiable text and vision task (paper-spec §2).
//!
//! * Data: [`data`] loads a route folder in the V-IRL layout ([`route`], [`milestone`],
//!   [`pickle`], [`panomap`], [`panorama`]); [`world`] generates synthetic cities in that layout.
//! * Episodes: [`instruction`] and [`rail`] turn a route into the instruction text and the
//!   expert rail; [`episode::Navigation`] implements [`crate::Env`] with the reference's
//!   prompts ([`prompt`]), verifier ([`verify`]) and attempt limit.
//! * Around them: [`config`] (every §8 option), [`metrics`], [`expert`] (SFT data, with the
//!   [`style`] of its answers and prompts) and [`bench`] (render timing).

pub mod bench;
pub mod config;
pub mod data;
pub mod episode;
pub mod error;
pub mod expert;
pub mod geo;
pub mod instruction;
pub mod metrics;
pub mod milestone;
pub mod panomap;
pub mod panorama;
pub mod pickle;
pub mod prompt;
pub mod rail;
pub mod route;
pub mod style;
pub mod verify;
pub mod world;

pub use config::{NavConfig, ObsPenalty, PromptLayout, PromptText, SuccessRule, ViewHeadings};
pub use data::NavData;
pub use episode::Navigation;
pub use error::NavError;
pub use expert::{ExpertIter, expert_examples};
pub use metrics::NavMetrics;
pub use style::NavStyle;
