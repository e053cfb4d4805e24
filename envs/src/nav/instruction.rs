//! The global instruction and the turn actions of a route, generated from its milestones exactly
//! as the reference's `_parse_instruction_and_rail` does (paper-spec §2.3).

use super::milestone::{Milestone, NO_LANDMARK};

/// The instruction text of a route and its turn actions.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    /// The sentences, two per milestone ("… turn … to face …", "Move forward until …").
    pub sentences: Vec<String>,
    /// `"1. …\n2. …\n"`: the `{instruction}` of the prompt (ends with a newline).
    pub text: String,
    /// `turn_direction(<compass word>)` per milestone, then `stop()`.
    pub actions_absolute: Vec<String>,
    /// `turn_direction(left|right|slightly left|slightly right)` per milestone, then `stop()`.
    pub actions_relative: Vec<String>,
}

/// The relative turn word for a heading change of `rel` degrees (±45° thresholds).
pub fn relative_turn(rel: f64) -> &'static str {
    if rel < -45.0 {
        "left"
    } else if rel > 45.0 {
        "right"
    } else if rel <= 0.0 {
        "slightly left"
    } else {
        "slightly right"
    }
}

/// The heading change from `prev` to `next`: the reference's plain difference, or with
/// `wrap` (`relative_heading_wrap = true`) folded into `[-180, 180)`.
pub fn heading_change(prev: f64, next: f64, wrap: bool) -> f64 {
    let rel = next - prev;
    if wrap {
        super::geo::py_mod(rel + 180.0, 360.0) - 180.0
    } else {
        rel
    }
}

/// Builds the instruction for `milestones` walked from `init_heading`.
pub fn build_instruction(milestones: &[Milestone], init_heading: f64, wrap: bool) -> Instruction {
    let mut sentences = Vec::with_capacity(2 * milestones.len());
    let mut actions_absolute = Vec::with_capacity(milestones.len() + 1);
    let mut actions_relative = Vec::with_capacity(milestones.len() + 1);
    let mut prev = init_heading;
    for (i, m) in milestones.iter().enumerate() {
        let turn = relative_turn(heading_change(prev, m.heading as f64, wrap));
        prev = m.heading as f64;
        actions_absolute.push(format!("turn_direction({})", m.direction));
        actions_relative.push(format!("turn_direction({turn})"));
        if i + 1 == milestones.len() {
            // The last milestone says "Turn" even when it is also the first.
            sentences.push(format!("Turn {turn} to face {}.", m.direction));
            sentences.push(format!(
                "Move forward until you reach destination where {}.",
                m.landmarks
            ));
        } else {
            let first = if i == 0 { "First, turn" } else { "Turn" };
            sentences.push(format!("{first} {turn} to face {}.", m.direction));
            sentences.push(if m.landmarks == NO_LANDMARK {
                "Move forward until you reach next intersection.".to_string()
            } else {
                format!(
                    "Move forward until you reach next intersection where {}.",
                    m.landmarks
                )
            });
        }
    }
    actions_absolute.push("stop()".into());
    actions_relative.push("stop()".into());
    let text = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}\n", i + 1))
        .collect();
    Instruction {
        sentences,
        text,
        actions_absolute,
        actions_relative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nav::milestone::parse_milestones;

    #[test]
    fn thresholds_and_wrap() {
        assert_eq!(relative_turn(-46.0), "left");
        assert_eq!(relative_turn(-45.0), "slightly left");
        assert_eq!(relative_turn(0.0), "slightly left");
        assert_eq!(relative_turn(0.5), "slightly right");
        assert_eq!(relative_turn(45.0), "slightly right");
        assert_eq!(relative_turn(46.0), "right");
        // 350 → 10 is a small right turn, but the reference says "left" (no wrap-around).
        assert_eq!(relative_turn(heading_change(350.0, 10.0, false)), "left");
        assert_eq!(
            relative_turn(heading_change(350.0, 10.0, true)),
            "slightly right"
        );
        assert_eq!(heading_change(10.0, 190.0, true), -180.0);
    }

    #[test]
    fn single_milestone_and_no_landmark() {
        let m = parse_milestones(
            "{\"landmarks\": \"No landmark nearby\",\n\"to_next_intersection_heading\": \"90 (east)\",\n}",
        )
        .unwrap();
        let ins = build_instruction(&m, 80.0, false);
        assert_eq!(
            ins.text,
            "1. Turn slightly right to face east.\n2. Move forward until you reach destination where No landmark nearby.\n"
        );
        assert_eq!(ins.actions_absolute, ["turn_direction(east)", "stop()"]);
        assert_eq!(
            ins.actions_relative,
            ["turn_direction(slightly right)", "stop()"]
        );
    }
}
