//! One module per subcommand group.

pub mod bench;
pub mod data;
pub mod eval;
pub mod gp;
pub mod input;
pub mod launch;
pub mod model;
pub mod nav;
pub mod orchestrator;
pub mod progress;
pub mod rl;
pub mod sft;
pub mod study;
