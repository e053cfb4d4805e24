//! The V-IRL verifier, `step_rewards_virl` (LeslieTrue/SFTvsRL: utils_rl.py; paper-spec §2.8):
//! +1 for the exact ground-truth action, else −1.5 for an observation penalty, else −1.

use serde::Serialize;

use super::config::{ObsPenalty, PromptText};
use super::prompt::feedback_format;
use crate::extract::{Key, re_match};

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
/// Fields are read with the reference's `re_match`, and the observation checks are Python's `in`
/// on the value it returns ([`crate::extract::Field::py_contains`]): a substring test for a
/// string, but for a valid-JSON list an element equal to the whole needle (`["intersection"]`
/// mentions it, `["an intersection"]` does not), and for an object a key equal to it. On a
/// number, boolean or null Python raises `TypeError` and the reference crashes; here such a value
/// reads as the empty string, which mentions nothing.
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
    let obs = re_match(response, Key::CurrentObservation);
    // `needle in output_obs`; where Python would raise, the empty string's answer.
    let mentions = |needle: &str| obs.py_contains(needle).unwrap_or(needle.is_empty());
    let wrong_obs = match penalty {
        ObsPenalty::IntersectionMention => {
            let said = mentions("intersection");
            let there = gt_obs.contains("intersection");
            (said && !there)
                .then_some("you are not at any intersection")
                // The reference's opposite branch; dead while gt_obs is landmark-only.
                .or((!said && there).then_some("you are at an intersection"))
        }
        ObsPenalty::LandmarkMismatch => {
            (!mentions(gt_obs)).then_some("you observe incorrect landmarks")
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
    fn non_string_observations_use_python_membership() {
        let g = |obs: &str, gt_obs: &str| {
            let r = format!(r#"{{"current observation": {obs}, "action": "stop()"}}"#);
            step_rewards_virl(
                &r,
                "forward()",
                gt_obs,
                ObsPenalty::IntersectionMention,
                PromptText::Reference,
            )
            .reward
        };
        let none = "No landmarks nearby";
        assert_eq!(g(r#"["intersection"]"#, none), INCORRECT_OBS);
        assert_eq!(g(r#"["x", "intersection"]"#, none), INCORRECT_OBS);
        assert_eq!(g(r#"["big intersection"]"#, none), INCORRECT_ACTION);
        assert_eq!(g(r#"[]"#, none), INCORRECT_ACTION);
        assert_eq!(g(r#"{"intersection": 1}"#, none), INCORRECT_OBS);
        assert_eq!(g(r#"{"x": "intersection"}"#, none), INCORRECT_ACTION);
        // Python raises here; read as mentioning nothing.
        for scalar in ["12", "true", "null"] {
            assert_eq!(g(scalar, none), INCORRECT_ACTION, "{scalar}");
        }
        // The opposite branch uses the same membership.
        let at = "You observe an intersection";
        assert_eq!(g(r#"["big intersection"]"#, at), INCORRECT_OBS);
        assert_eq!(g("3", at), INCORRECT_OBS);
        assert_eq!(g(r#"["intersection"]"#, at), INCORRECT_ACTION);
        assert_eq!(g(r#"{"intersection": []}"#, at), INCORRECT_ACTION);
        // The paper's landmark check is `gt_obs in output_obs` with the same semantics.
        let lm = |obs: &str| {
            let r = format!(r#"{{"current observation": {obs}, "action": "stop()"}}"#);
            step_rewards_virl(
                &r,
                "forward()",
                "Aritzia is on your left front",
                ObsPenalty::LandmarkMismatch,
                PromptText::Reference,
            )
            .reward
        };
        assert_eq!(lm(r#"["Aritzia is on your left front"]"#), INCORRECT_ACTION);
        assert_eq!(lm(r#"["Aritzia is on your left front; x"]"#), INCORRECT_OBS);
        assert_eq!(lm("0"), INCORRECT_OBS);
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
