//! Whether prompt and feedback text keep the reference's quirks (paper-spec §8 D10), and how
//! long prompts and expert answers are. Shared by every environment.

use serde::{Deserialize, Serialize};

/// Prompt and feedback text, shared by every environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptText {
    /// Verbatim, quirks included: `count as '10'., and` (GeneralPoints), "stree tviews" and the
    /// literal `{{ }}` in the navigation feedback format.
    #[default]
    Reference,
    /// The face-card message without its trailing period, "street views", and single braces.
    Cleaned,
}

/// How long prompts and expert answers are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptLayout {
    /// The reference prompts and answer templates (`ResponseEqn`, `ResponseVIRL`).
    #[default]
    Reference,
    /// Not in the reference: only what a model needs to answer, and a one-line JSON answer, for
    /// tiny models trained from scratch on a CPU; graded by the same verifiers.
    /// * GeneralPoints: the cards, the face-card rule and the target, answered with `number` and
    ///   `formula`: about a quarter of the reference's 230 word-level tokens.
    /// * Navigation: the instruction, the turn words of the action rule and the observation/action
    ///   history, answered `{"action": "…"}`: about half the word-level tokens (on a fixture
    ///   route, 238 instead of 504 per position, prompt and answer together).
    Compact,
}
