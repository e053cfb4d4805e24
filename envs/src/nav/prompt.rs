//! Prompt text, verbatim from the reference (LeslieTrue/SFTvsRL: prompt_lib/prompts.py;
//! utils_rl.py `set_str_action_space`; the environment's `get_observation_action_sequence`),
//! paper-spec §2.5–2.7; and the compact layout for tiny models ([`compact_prompt`],
//! [`compact_expert_response`]), which is not in the reference.

use super::config::{PromptLayout, PromptText};
use super::geo::COMPASS;
use super::rail::AT_INTERSECTION;

const ACTION_SPACE_ABSOLUTE: &str = "\"forward()\": indicates moving forward one step
\"turn_direction(x)\": indicates adjust the ego agent direction towards x direction. x could be any following 8 directions ['north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west', 'northwest']
\"stop()\": indicates the navigation is finished.";

const ACTION_SPACE_RELATIVE: &str = "\"forward()\": indicates moving forward one step
\"turn_direction(x)\": indicates adjust the ego agent direction towards x direction. x could be any following ['left', 'right', 'slightly left', 'slightly right']
\"stop()\": indicates the navigation is finished.";

/// The `{action_space}` text for the absolute (ID) or relative (rule-OOD) rule.
pub fn action_space(absolute: bool) -> &'static str {
    if absolute {
        ACTION_SPACE_ABSOLUTE
    } else {
        ACTION_SPACE_RELATIVE
    }
}

/// The `{action_space}` text of a rule whose turn words are `words` (the reference's text when
/// they are the rule's own).
pub fn action_space_with(absolute: bool, words: &[&str]) -> String {
    if words == turn_words(absolute) {
        return action_space(absolute).to_string();
    }
    let list = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let count = if absolute { "8 directions " } else { "" };
    format!(
        "\"forward()\": indicates moving forward one step\n\"turn_direction(x)\": indicates adjust the ego agent direction towards x direction. x could be any following {count}[{list}]\n\"stop()\": indicates the navigation is finished."
    )
}

/// The words `x` of `turn_direction(x)` under the absolute (ID) or relative (rule-OOD) rule.
pub fn turn_words(absolute: bool) -> &'static [&'static str] {
    const RELATIVE: [&str; 4] = ["left", "right", "slightly left", "slightly right"];
    if absolute { &COMPASS } else { &RELATIVE }
}

/// The compact prompt (not in the reference): the instruction, the turn words of the action
/// rule (`words`) and the history, with no task description or output template.
///
/// ```text
/// Instruction:
/// 1. First, turn right to face northwest.
/// …
/// Turns: north, northeast, east, southeast, south, southwest, west, northwest
/// O_1: No landmarks nearby;
/// A_1:
/// ```
///
/// `instruction` ends with a newline, as the reference's does; `json_only` appends "Please only
/// output the json." as in the reference layout.
pub fn compact_prompt(
    instruction: &str,
    words: &[&str],
    json_only: bool,
    obs_act_seq: &str,
) -> String {
    let mut p = String::with_capacity(100 + instruction.len() + obs_act_seq.len());
    p.push_str("Instruction:\n");
    p.push_str(instruction);
    p.push_str("Turns: ");
    p.push_str(&words.join(", "));
    p.push('\n');
    p.push_str(obs_act_seq);
    if json_only {
        p.push_str("Please only output the json.\n");
    }
    p
}

/// The task prompt (`Q_VIRL_L` or `Q_VIRL_VL`, or their `_EG` variants with `json_only`).
/// `instruction` already ends with a newline, as the reference's does.
pub fn task_prompt(
    vision: bool,
    text: PromptText,
    json_only: bool,
    instruction: &str,
    action_space: &str,
    obs_act_seq: &str,
) -> String {
    let mut p = String::with_capacity(1500 + instruction.len() + obs_act_seq.len());
    p.push_str("\n[Task Description]\nYou are an expert in navigation. You will receive a sequence of instructions to follow");
    if vision {
        p.push_str(match text {
            PromptText::Reference => " while observing your surrounding stree tviews",
            PromptText::Cleaned => " while observing your surrounding street views",
        });
    }
    p.push_str(". You\nare also provided with your observation and action history in text. Your goal is to first analyze the instruction and identify the next sentence to be executed. \nThen, you need to provide the action to be taken based on the current observation and instruction.\n\n[Instruction]\n");
    p.push_str(instruction);
    p.push('\n');
    if vision {
        p.push_str("\n[Observation format]\nYou observe a 2x2 grid of streetview images with the following headings:\n[front, right\n back, left]\nYou need to identify if any of the landmarks in the instruction are visible in the street view grid.\n");
    }
    p.push_str("\n[Action space]\n");
    p.push_str(action_space);
    p.push_str("\n\n[Observations and actions sequence]\n");
    p.push_str(obs_act_seq);
    p.push_str("\n\n[Output]\n{\n  \"current observation\": latest observation from the ");
    p.push_str(if vision {
        "street view grid"
    } else {
        "observation sequence"
    });
    p.push_str(",\n  \"current instruction\": analyze the full instruction and identify the sentence to be executed,\n  \"action\": the action to be taken chosen from the action space,\n}\n");
    if json_only {
        p.push_str("\nPlease only output the json.\n");
    }
    p
}

/// The observation/action history: `O_i: …\nA_i: …\n` for each executed action, then the current
/// observation with an empty action. With vision the current line describes the image instead.
pub fn obs_act_sequence(actions: &[String], observations: &[String], vision: bool) -> String {
    let mut s = String::new();
    for (i, (a, o)) in actions.iter().zip(observations).enumerate() {
        s.push_str(&format!("O_{}: {o}\nA_{}: {a}\n", i + 1, i + 1));
    }
    if observations.len() > actions.len() {
        let n = observations.len();
        let last = &observations[n - 1];
        if vision {
            let inter = if last.contains(AT_INTERSECTION) {
                AT_INTERSECTION
            } else {
                ""
            };
            s.push_str(&format!(
                "O_{n}: You observe an image of 4 views; {inter}\nA_{n}: \n"
            ));
        } else {
            s.push_str(&format!("O_{n}: {last}\nA_{n}: \n"));
        }
    }
    s
}

/// The expert answer in the `ResponseVIRL` layout (one field per line, trailing comma).
pub fn expert_response(observation: &str, instruction: &str, action: &str) -> String {
    format!(
        "\n{{\n  \"current observation\": \"{observation}\",\n  \"current instruction\": \"{instruction}\",\n  \"action\": \"{action}\",\n}}\n"
    )
}

/// The compact expert answer (not in the reference): `{"action": "…"}`, one line of valid JSON.
pub fn compact_expert_response(action: &str) -> String {
    format!("{{\"action\": \"{action}\"}}")
}

/// The expert answer in `layout`: [`expert_response`] or [`compact_expert_response`].
pub fn expert_response_in(
    layout: PromptLayout,
    observation: &str,
    instruction: &str,
    action: &str,
) -> String {
    match layout {
        PromptLayout::Reference => expert_response(observation, instruction, action),
        PromptLayout::Compact => compact_expert_response(action),
    }
}

/// The answer format the verifier's messages end with. The reference's string is not formatted,
/// so its doubled braces reach the model.
pub fn feedback_format(text: PromptText) -> &'static str {
    match text {
        PromptText::Reference => {
            "\n[Output]\n{{\n  \"current observation\": latest observation from the streetview grid,\n  \"current instruction\": analyze the full instruction and identify the sentence to be executed,\n  \"action\": the action to be taken chosen from the action space,\n}}"
        }
        PromptText::Cleaned => {
            "\n[Output]\n{\n  \"current observation\": latest observation from the streetview grid,\n  \"current instruction\": analyze the full instruction and identify the sentence to be executed,\n  \"action\": the action to be taken chosen from the action space,\n}"
        }
    }
}

/// The user turn that follows a failed attempt.
pub fn feedback_turn(message: &str) -> String {
    format!("You failed this trial because {message}")
}
