//! Whether prompt and feedback text keep the reference's quirks (paper-spec §8 D10).

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
