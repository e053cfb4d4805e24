//! The V-IRL verifier, `step_rewards_virl` (LeslieTrue/SFTvsRL: utils_rl.py; paper-spec §2.8):
//! +1 for the exact ground-truth action, else −1.5 for an observation penalty, else −1.

use serde::Serialize;

use super::config::{ObsPenalty, PromptText};
use super::prompt::feedback_format;
use crate::extract::{Field, Key, re_match};

/// Reward of a correct action.
pub const CORRECT_ACTION: f64 = 1.0;
/// Reward of a wrong action.
pub const INCORRECT_ACTION: f64 = -1.0;
/// Reward of a wrong action with a wrong observation.
pub const INCORRECT_OBS: f64 = -1.5;

/// The grade of one response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Grade {
    pub reward: f64,
    /// The reference's aggregated message (ends with a period).
    pub message: String,
}

/// Grades `response` against the ground-truth action and landmark-only observation.
///
/// Fields are read with the reference's `re_match`. A `current observation` that is valid JSON
/// but not a string counts as mentioning nothing (the reference would raise on most such values).
pub fn step_rewards_virl(
    response: &str,
    gt_action: &str,
    gt_obs: &str,
    penalty: ObsPenalty,
    text: PromptText,
) -> Grade {
    let action = re_match(response, Key::Action);
    if action.as_str() == Some(gt_action) {
        return Grade {
            reward: CORRECT_ACTION,
            message: "Correct action.".into(),
        };
    }
    let obs_field = re_match(response, Key::CurrentObservation);
    let obs = match &obs_field {
        Field::Str(s) => s.as_ref(),
        _ => "",
    };
    let wrong_obs = match penalty {
        ObsPenalty::IntersectionMention => {
            (obs.contains("intersection") && !gt_obs.contains("intersection"))
                .then_some("you are not at any intersection")
                // The reference's opposite branch; dead while gt_obs is landmark-only.
                .or(
                    (!obs.contains("intersection") && gt_obs.contains("intersection"))
                        .then_some("you are at an intersection"),
                )
        }
        ObsPenalty::LandmarkMismatch => {
            (!obs.contains(gt_obs)).then_some("you observe incorrect landmarks")
        }
    };
    let format = feedback_format(text);
    match wrong_obs {
        Some(what) => Grade {
            reward: INCORRECT_OBS,
            message: format!(
                "{what}. Please avoid this observation and try again in the same format:{format}."
            ),
        },
        None => Grade {
            reward: INCORRECT_ACTION,
            message: format!(
                "you make incorrect action. Please avoid this action and try again in the same format:{format}."
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grade(response: &str, penalty: ObsPenalty) -> Grade {
        step_rewards_virl(
            response,
            "forward()",
            "Aritzia is on your left front",
            penalty,
            PromptText::Reference,
        )
    }

    #[test]
    fn landmark_mismatch_checks_the_landmark_instead_of_intersections() {
        let seen = r#"{"current observation": "Aritzia is on your left front; You observe an intersection", "action": "stop()"}"#;
        let missed = r#"{"current observation": "No landmarks nearby", "action": "stop()"}"#;
        assert_eq!(
            grade(seen, ObsPenalty::IntersectionMention).reward,
            INCORRECT_OBS
        );
        assert_eq!(
            grade(seen, ObsPenalty::LandmarkMismatch).reward,
            INCORRECT_ACTION
        );
        assert_eq!(
            grade(missed, ObsPenalty::IntersectionMention).reward,
            INCORRECT_ACTION
        );
        let g = grade(missed, ObsPenalty::LandmarkMismatch);
        assert_eq!(g.reward, INCORRECT_OBS);
        assert!(
            g.message
                .starts_with("you observe incorrect landmarks. Please avoid this observation")
        );
        let right = r#"{"current observation": "nothing", "action": "forward()"}"#;
        assert_eq!(
            grade(right, ObsPenalty::LandmarkMismatch),
            Grade {
                reward: CORRECT_ACTION,
                message: "Correct action.".into()
            }
        );
    }

    #[test]
    fn cleaned_feedback_has_single_braces() {
        let g = step_rewards_virl(
            "x",
            "stop()",
            "",
            ObsPenalty::IntersectionMention,
            PromptText::Cleaned,
        );
        assert!(g.message.ends_with("\n[Output]\n{\n  \"current observation\": latest observation from the streetview grid,\n  \"current instruction\": analyze the full instruction and identify the sentence to be executed,\n  \"action\": the action to be taken chosen from the action space,\n}."));
    }
}
