//! Verifiable environments for sftvsrl: GeneralPoints (card arithmetic) and V-IRL (street
//! navigation), as text and vision tasks, reproducing the reference behaviour of "SFT Memorizes,
//! RL Generalizes" (see `paper-spec.md`). Pure Rust, no tensors.

pub mod draw;
pub mod env;
pub mod expert;
pub mod extract;
pub mod gp;
pub mod nav;
pub mod prompt_text;
pub mod pyjson;
pub mod rng;

pub use env::{Env, EnvError, Role, Transcript, Turn, Verdict};
pub use rng::Rng;
