//! Settings of a navigation environment. Defaults reproduce the reference's V-IRL configs
//! (`verify_iter: 2`, `relocation: true`, `drop_rate: 0.5`, `straight_line_length: 5`,
//! `resolution: 1200`, FOV 90, 640×640 crops); each paper-vs-code discrepancy of paper-spec §8 is an
//! option whose default is the reference behaviour.

use serde::{Deserialize, Serialize};

pub use crate::prompt_text::{PromptLayout, PromptText};

use super::rail::RailParams;

/// What earns the −1.5 observation penalty when the action is wrong (§8 D3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObsPenalty {
    /// The reference: the model's `current observation` mentions "intersection" (the
    /// landmark-only ground truth never does).
    #[default]
    IntersectionMention,
    /// The paper's reading: the model's `current observation` does not contain the ground-truth
    /// landmark observation.
    LandmarkMismatch,
}

/// The headings of the 2×2 street-view grid (§8 D4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewHeadings {
    /// The reference: `[cur-135, cur-45, cur+45, cur+135]`, row-major.
    #[default]
    Reference,
    /// What the prompt's labels say: `[cur, cur+90, cur+180, cur+270]` (front, right, back, left).
    AsLabelled,
}

/// What makes an episode a success (§8 D11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuccessRule {
    /// The reference's `is_success`: `stop()` reached without exhausting the attempts anywhere.
    #[default]
    Reference,
    /// A correct first attempt at every position.
    FirstAttempt,
}

/// The view sides (`resolution`, `crop_size`) `validate` accepts, in pixels.
pub const VIEW_SIZES: std::ops::RangeInclusive<u32> = 8..=4096;

/// Everything that shapes an episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NavConfig {
    /// V-IRL-VL (a street-view grid image with each prompt) instead of V-IRL-L.
    pub vision: bool,
    /// Absolute turns (ID) or relative turns (rule OOD).
    pub absolute_action: bool,
    /// Graded attempts per position before the episode ends (`verify_iter`).
    pub verify_iter: u32,
    /// Snap every rail point to its panorama (needs `gps_pano_mapping.pkl`).
    pub relocation: bool,
    /// Probability of dropping each interpolated point.
    pub drop_rate: f64,
    /// Interpolated points per leg (the "maximum straight road length").
    pub straight_line_length: u32,
    /// Side of each view in the grid, after resizing (`resolution`).
    pub resolution: u32,
    /// Side of each perspective crop cut from the panorama (`STREET_VIEW.SIZE`).
    pub crop_size: u32,
    /// Horizontal field of view of each crop in degrees (`STREET_VIEW.FOV`).
    pub fov_deg: f64,
    /// Append "Please only output the json." (the reference's `Q_VIRL_*_EG` prompts for API models).
    pub json_only: bool,
    pub virl_obs_penalty: ObsPenalty,
    pub virl_view_headings: ViewHeadings,
    /// Fold relative headings into [−180, 180) before the ±45° thresholds (§8 D7).
    pub relative_heading_wrap: bool,
    pub prompt_text: PromptText,
    pub virl_success: SuccessRule,
    /// `reference` prompts and `ResponseVIRL` answers, or `compact` ones for tiny CPU models:
    /// the instruction, the turn words and the history, answered `{"action": "…"}`.
    pub prompt_layout: PromptLayout,
    /// Draw episodes from the routes with index in `[start, end)` of the route file only (e.g.
    /// training routes apart from held-out evaluation routes). All routes when absent.
    pub route_range: Option<[usize; 2]>,
    /// Not in the reference: the words `x` of `turn_direction(x)`, in place of the rule's own and
    /// in their order (8 for the absolute rule's north … northwest, 4 for the relative rule's
    /// left, right, slightly left, slightly right). The prompt lists them and the verifier
    /// expects them: a rule stated in the prompt, for teaching a small model to read it.
    pub turn_words: Option<Vec<String>>,
}

impl Default for NavConfig {
    fn default() -> Self {
        NavConfig {
            vision: false,
            absolute_action: true,
            verify_iter: 2,
            relocation: true,
            drop_rate: 0.5,
            straight_line_length: 5,
            resolution: 1200,
            crop_size: 640,
            fov_deg: 90.0,
            json_only: false,
            virl_obs_penalty: ObsPenalty::default(),
            virl_view_headings: ViewHeadings::default(),
            relative_heading_wrap: false,
            prompt_text: PromptText::default(),
            virl_success: SuccessRule::default(),
            prompt_layout: PromptLayout::default(),
            route_range: None,
            turn_words: None,
        }
    }
}

impl NavConfig {
    /// The rail-laying part of the settings.
    pub fn rail_params(&self) -> RailParams {
        RailParams {
            drop_rate: self.drop_rate,
            straight_line_length: self.straight_line_length,
            absolute_action: self.absolute_action,
        }
    }

    /// The words `x` of `turn_direction(x)` under this config's rule.
    pub fn turn_words(&self) -> Vec<&str> {
        match &self.turn_words {
            Some(words) => words.iter().map(String::as_str).collect(),
            None => super::prompt::turn_words(self.absolute_action).to_vec(),
        }
    }

    /// Checks ranges a TOML file could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(format!(
                "drop_rate must be in [0, 1], got {}",
                self.drop_rate
            ));
        }
        if !(1..=1000).contains(&self.straight_line_length) {
            return Err(format!(
                "straight_line_length must be in [1, 1000], got {}",
                self.straight_line_length
            ));
        }
        if !(1.0..=170.0).contains(&self.fov_deg) {
            return Err(format!("fov_deg must be in [1, 170], got {}", self.fov_deg));
        }
        for (field, px) in [
            ("resolution", self.resolution),
            ("crop_size", self.crop_size),
        ] {
            if !VIEW_SIZES.contains(&px) {
                return Err(format!("{field} must be in [8, 4096], got {px}"));
            }
        }
        if let Some(words) = &self.turn_words {
            let wanted = if self.absolute_action { 8 } else { 4 };
            let bad = |w: &String| {
                w.trim().is_empty() || w.trim() != w || w.contains(['(', ')', '"', '\'', ','])
            };
            if words.len() != wanted {
                return Err(format!(
                    "turn_words: the {} rule has {wanted} turns, got {} words",
                    if self.absolute_action {
                        "absolute"
                    } else {
                        "relative"
                    },
                    words.len()
                ));
            }
            if let Some(w) = words.iter().find(|w| bad(w)) {
                return Err(format!(
                    "turn_words: {w:?} must be a non-empty word without brackets, quotes or commas"
                ));
            }
            if (1..words.len()).any(|i| words[..i].contains(&words[i])) {
                return Err("turn_words: the words must differ".into());
            }
        }
        if let Some([start, end]) = self.route_range
            && start >= end
        {
            return Err(format!(
                "route_range [{start}, {end}) holds no route: start must be below end"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_by_their_names_and_unknown_keys_fail() {
        let c: NavConfig = serde_json::from_str(
            r#"{"virl_obs_penalty": "landmark_mismatch", "virl_view_headings": "as_labelled", "prompt_text": "cleaned", "virl_success": "first_attempt", "relative_heading_wrap": true}"#,
        )
        .unwrap();
        assert_eq!(c.virl_obs_penalty, ObsPenalty::LandmarkMismatch);
        assert_eq!(c.virl_view_headings, ViewHeadings::AsLabelled);
        assert_eq!(c.prompt_text, PromptText::Cleaned);
        assert_eq!(c.virl_success, SuccessRule::FirstAttempt);
        assert_eq!(
            (c.verify_iter, c.drop_rate, c.straight_line_length),
            (2, 0.5, 5)
        );
        assert_eq!(c.prompt_layout, PromptLayout::Reference);
        assert!(serde_json::from_str::<NavConfig>(r#"{"verify_iters": 3}"#).is_err());
        let compact: NavConfig =
            serde_json::from_str(r#"{"prompt_layout": "compact", "vision": true}"#).unwrap();
        assert_eq!(compact.prompt_layout, PromptLayout::Compact);
        assert!(
            compact.validate().is_ok(),
            "vision works with the compact layout"
        );
        for bad in ["\"short\"", "\"Compact\"", "1"] {
            let e = serde_json::from_str::<NavConfig>(&format!(r#"{{"prompt_layout": {bad}}}"#));
            assert!(e.is_err(), "{bad}");
        }
        assert!(
            NavConfig {
                drop_rate: 1.5,
                ..NavConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(NavConfig::default().validate().is_ok());
        let tiny = NavConfig {
            resolution: 4,
            ..NavConfig::default()
        };
        assert_eq!(
            tiny.validate().unwrap_err(),
            "resolution must be in [8, 4096], got 4"
        );
    }
}
