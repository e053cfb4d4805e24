//! How navigation expert examples are presented beyond the environment's prompt and answer, for
//! the data arms of "Debunk the Myth of SFT Generalization" (arXiv 2510.00237): route reasoning
//! before the answer (chain of thought) and the task stated in several wordings (diverse
//! prompts). Both are off by default; evaluation always shows the environment's own prompt.

use serde::{Deserialize, Serialize};

use super::config::PromptLayout;
use super::rail::{RailPoint, STOP};
use crate::expert::with_first_field;

/// The number of prompt wordings, the environment's own included.
pub const NAV_PROMPT_VARIANTS: u32 = 4;

/// The presentation of navigation expert examples (`data.generate_nav.style`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavStyle {
    /// Answers open with a `"thought"` field: what the walker sees and which sentence of the
    /// instruction it executes ([`with_route_thought`]).
    #[serde(default)]
    pub chain_of_thought: bool,
    /// Each prompt is one of this many wordings of the task, drawn per example (0 or 1: the
    /// environment's own; at most [`NAV_PROMPT_VARIANTS`]; see [`paraphrase`]).
    #[serde(default)]
    pub prompt_variants: u32,
}

impl NavStyle {
    /// Checks the ranges, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.prompt_variants > NAV_PROMPT_VARIANTS {
            return Err(format!(
                "prompt_variants must be at most {NAV_PROMPT_VARIANTS}, got {}",
                self.prompt_variants
            ));
        }
        Ok(())
    }
}

/// `response` with a `"thought"` field first that reasons along the route at `point`: the
/// landmarks in view, whether this is an intersection, and the instruction sentence executed
/// here, e.g. `"thought": "No landmarks nearby, at an intersection; sentence 3: Turn left to
/// face east"`. The verifier reads only `"action"` (and `"current observation"`), so the grade
/// is unchanged.
pub fn with_route_thought(response: &str, point: &RailPoint) -> String {
    let place = match (point.intersection, point.gt_action == STOP) {
        (_, true) => ", at the destination",
        (true, false) => ", at an intersection",
        (false, false) => "",
    };
    let thought = format!(
        "{}{place}; sentence {}: {}",
        point.observation,
        point.instruction_idx,
        point.instruction.trim_end_matches('.')
    );
    with_first_field(response, "thought", &thought)
}

/// Wording `variant` (0..[`NAV_PROMPT_VARIANTS`]) of `prompt`, a prompt the environment wrote in
/// `layout`: variant 0 is `prompt` itself; the others say the same things (instruction, turn
/// words or action space, the observation and action history, the output format) in other
/// words or another order.
pub fn paraphrase(prompt: &str, layout: PromptLayout, variant: u32) -> String {
    let variant = variant % NAV_PROMPT_VARIANTS;
    if variant == 0 {
        return prompt.to_string();
    }
    match layout {
        PromptLayout::Compact => match variant {
            1 => prompt
                .replacen("Instruction:\n", "Route:\n", 1)
                .replacen("\nTurns: ", "\nTurn words: ", 1),
            2 => prompt
                .replacen("Instruction:\n", "Follow these directions:\n", 1)
                .replacen("\nTurns: ", "\nYou may turn to: ", 1),
            _ => turns_first(prompt),
        },
        PromptLayout::Reference => match variant {
            1 => prompt.replacen(
                "You are an expert in navigation.",
                "You are a skilled navigator.",
                1,
            ),
            2 => prompt.replacen(
                "Your goal is to first analyze the instruction and identify the next sentence to be executed.",
                "First find the sentence of the instruction that comes next.",
                1,
            ),
            _ => prompt.replacen(
                "[Task Description]\n",
                "[Task Description]\nWalk the route that the instruction describes.\n",
                1,
            ),
        },
    }
}

/// The compact prompt with its `Turns: …` line moved before the instruction.
fn turns_first(prompt: &str) -> String {
    let Some(start) = prompt.find("\nTurns: ") else {
        return prompt.to_string();
    };
    let line_end = prompt[start + 1..]
        .find('\n')
        .map_or(prompt.len(), |i| start + 1 + i + 1);
    let turns = &prompt[start + 1..line_end];
    format!("{turns}{}{}", &prompt[..start + 1], &prompt[line_end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nav::prompt::{
        action_space, compact_expert_response, compact_prompt, expert_response, task_prompt,
        turn_words,
    };
    use crate::nav::verify::{CORRECT_ACTION, step_rewards_virl};
    use crate::nav::{ObsPenalty, PromptText};

    const INSTRUCTION: &str = "1. First, turn right to face northwest.\n2. Move forward until you reach destination where Aritzia is on your left.\n";
    const HISTORY: &str = "O_1: No landmarks nearby; \nA_1: turn_direction(northwest)\nO_2: Aritzia is on your left front; \nA_2: \n";

    fn prompts() -> Vec<(PromptLayout, String)> {
        let words = turn_words(true);
        vec![
            (
                PromptLayout::Compact,
                compact_prompt(INSTRUCTION, words, true, HISTORY),
            ),
            (
                PromptLayout::Reference,
                task_prompt(
                    false,
                    PromptText::Reference,
                    true,
                    INSTRUCTION,
                    action_space(true),
                    HISTORY,
                ),
            ),
        ]
    }

    /// Every wording differs from the others and keeps the instruction, the turn words, the
    /// history and the closing request, in both layouts.
    #[test]
    fn wordings_differ_and_keep_the_task() {
        for (layout, prompt) in prompts() {
            let all: Vec<String> = (0..NAV_PROMPT_VARIANTS)
                .map(|v| paraphrase(&prompt, layout, v))
                .collect();
            assert_eq!(all[0], prompt);
            for (i, p) in all.iter().enumerate() {
                assert!(p.contains(INSTRUCTION), "{layout:?} {i}: {p}");
                assert!(p.contains(HISTORY), "{layout:?} {i}: {p}");
                assert!(p.contains("north, northeast") || p.contains("'north', 'northeast'"));
                assert!(p.contains("Please only output the json."), "{p}");
                for q in &all[..i] {
                    assert_ne!(p, q, "{layout:?} {i}");
                }
            }
        }
        let compact = &prompts()[0].1;
        assert!(paraphrase(compact, PromptLayout::Compact, 3).starts_with("Turns: north, "));
    }

    fn point(intersection: bool, gt_action: &str, idx: usize, instruction: &str) -> RailPoint {
        RailPoint {
            geocode: crate::nav::geo::LatLng::new(0.0, 0.0),
            pano_id: None,
            heading: 0.0,
            gt_action: gt_action.into(),
            observation: "Aritzia is on your left front".into(),
            intersection,
            instruction: instruction.into(),
            instruction_idx: idx,
        }
    }

    /// The thought opens both layouts' answers, says where the walker is and which sentence it
    /// executes, and leaves the verifier's grade as it was.
    #[test]
    fn route_thoughts_open_the_answer_and_keep_the_grade() {
        let turn = point(
            true,
            "turn_direction(northwest)",
            1,
            "First, turn right to face northwest.",
        );
        let compact = with_route_thought(&compact_expert_response(&turn.gt_action), &turn);
        assert_eq!(
            compact,
            "{\"thought\": \"Aritzia is on your left front, at an intersection; sentence 1: \
             First, turn right to face northwest\", \"action\": \"turn_direction(northwest)\"}"
        );
        let walk = point(
            false,
            "forward()",
            2,
            "Move forward until you reach destination.",
        );
        let stop = point(
            true,
            "stop()",
            2,
            "Move forward until you reach destination.",
        );
        assert!(with_route_thought("{}", &walk).contains("front; sentence 2: Move"));
        assert!(with_route_thought("{}", &stop).contains(", at the destination; sentence 2"));
        for p in [&turn, &walk, &stop] {
            let obs = p.oracle_observation();
            let reference = expert_response(&obs, &p.instruction, &p.gt_action);
            let thought = with_route_thought(&reference, p);
            assert!(thought.starts_with("\n{\n  \"thought\": \""), "{thought}");
            for answer in [
                thought,
                with_route_thought(&compact_expert_response(&p.gt_action), p),
            ] {
                for penalty in [
                    ObsPenalty::IntersectionMention,
                    ObsPenalty::LandmarkMismatch,
                ] {
                    let g = step_rewards_virl(
                        &answer,
                        &p.gt_action,
                        &p.observation,
                        penalty,
                        PromptText::Reference,
                    );
                    assert_eq!(g.reward, CORRECT_ACTION, "{answer}");
                }
            }
        }
    }
}
