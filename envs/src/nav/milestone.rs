//! The `milestone_info` pseudo-JSON of a route: parsing it exactly like the reference's
//! `parse_navigation_string` (LeslieTrue/SFTvsRL: utils_general.py), and writing it in V-IRL's
//! `SINGLE_INTERSECTION_GIVEN_DIRECTION_TEMPLATE` layout.

use std::collections::HashMap;

use crate::extract::{is_python_space, parse_python_int};

/// The landmark text the reference uses when a block has no `landmarks` key.
pub const NO_LANDMARK: &str = "No landmark nearby";

/// One block of `milestone_info`: the leg to the next intersection (or to the destination).
#[derive(Clone, Debug, PartialEq)]
pub struct Milestone {
    /// What is seen at the end of the leg (`landmarks`, or [`NO_LANDMARK`] when absent).
    pub landmarks: String,
    /// The leg's compass heading, the integer before `(` in `to_next_intersection_heading`.
    pub heading: i64,
    /// The word inside the parentheses, e.g. `northwest`.
    pub direction: String,
}

/// Python's `str.strip()` without arguments.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// `parse_navigation_string`: split on `}`, drop leading `{`, then one `"key": "value",` per line.
/// Lines without a colon are skipped; a later duplicate key wins.
pub fn parse_blocks(input: &str) -> Vec<HashMap<String, String>> {
    let mut result = Vec::new();
    for block in input.split('}').map(py_strip).filter(|b| !b.is_empty()) {
        let block = py_strip(block.trim_start_matches('{'));
        let mut dict = HashMap::new();
        for line in block.split('\n').map(py_strip).filter(|l| !l.is_empty()) {
            let line = line.trim_end_matches(',');
            if let Some((key, value)) = line.split_once(':') {
                let key = py_strip(key).trim_matches(['"', '\'']);
                let value = py_strip(value).trim_matches(['"', '\'']);
                dict.insert(key.to_string(), value.to_string());
            }
        }
        if !dict.is_empty() {
            result.push(dict);
        }
    }
    result
}

impl Milestone {
    /// Reads one parsed block. Fails where the reference would raise: a missing
    /// `to_next_intersection_heading`, no `(` in it, or no Python integer before it.
    pub fn from_block(block: &HashMap<String, String>) -> Result<Self, String> {
        let heading_text = block
            .get("to_next_intersection_heading")
            .ok_or("a block has no \"to_next_intersection_heading\"")?;
        let mut pieces = heading_text.split('(');
        let degrees = pieces.next().unwrap_or_default();
        let direction = pieces.next().ok_or_else(|| {
            format!("\"to_next_intersection_heading\": {heading_text:?} has no \"(direction)\"")
        })?;
        let direction = direction.split(')').next().unwrap_or_default().to_string();
        let heading = parse_python_int(py_strip(degrees))
            .and_then(|(negative, digits)| digits.parse::<i64>().ok().map(|v| if negative { -v } else { v }))
            .ok_or_else(|| format!("\"to_next_intersection_heading\": {heading_text:?} does not start with an integer"))?;
        let landmarks = block
            .get("landmarks")
            .cloned()
            .unwrap_or_else(|| NO_LANDMARK.to_string());
        Ok(Milestone {
            landmarks,
            heading,
            direction,
        })
    }
}

/// Parses a whole `milestone_info` string into milestones.
pub fn parse_milestones(input: &str) -> Result<Vec<Milestone>, String> {
    parse_blocks(input)
        .iter()
        .enumerate()
        .map(|(i, b)| Milestone::from_block(b).map_err(|e| format!("block {}: {e}", i + 1)))
        .collect()
}

/// One block in V-IRL's milestone template (the string a route file stores is the concatenation).
pub fn format_block(
    index: usize,
    landmarks: &str,
    distance_m: i64,
    human_heading: i64,
    heading: i64,
    direction: &str,
) -> String {
    format!(
        "\n{{\n\"intersection_idx\": \"{index}\",\n\"landmarks\": \"{landmarks}\",\n\"distance\": \"{distance_m} meters\",\n\"human_heading\": \"{human_heading}\",\n\"to_next_intersection_heading\": \"{heading} ({direction})\",\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_layout() {
        let s = format_block(1, "Prince St is on your front", 16, 0, 298, "northwest")
            + &format_block(2, NO_LANDMARK, 159, 298, 212, "southwest");
        let m = parse_milestones(&s).unwrap();
        assert_eq!(
            m,
            vec![
                Milestone {
                    landmarks: "Prince St is on your front".into(),
                    heading: 298,
                    direction: "northwest".into()
                },
                Milestone {
                    landmarks: NO_LANDMARK.into(),
                    heading: 212,
                    direction: "southwest".into()
                },
            ]
        );
    }

    #[test]
    fn python_quirks() {
        // Quotes are stripped from both ends only; a colon inside the value survives; lines
        // without a colon are skipped; a later duplicate wins; `int()` accepts spaces and `+`.
        let s = "{'landmarks': \"A: B\",\njunk line\n\"to_next_intersection_heading\": \"1 (x)\",\n\"to_next_intersection_heading\": \" +07 (north(west))\",,}";
        let m = parse_milestones(s).unwrap();
        assert_eq!(
            m,
            vec![Milestone {
                landmarks: "A: B".into(),
                heading: 7,
                direction: "north".into()
            }]
        );
        // No landmarks key: the reference's default text.
        assert_eq!(
            parse_milestones("{\"to_next_intersection_heading\": \"-5 (n)\"}").unwrap()[0]
                .landmarks,
            NO_LANDMARK
        );
        assert!(parse_milestones("").unwrap().is_empty());
        assert!(
            parse_milestones("{\"landmarks\": \"x\"}")
                .unwrap_err()
                .contains("no \"to_next_intersection_heading\"")
        );
        assert!(
            parse_milestones("{\"to_next_intersection_heading\": \"298 north\"}")
                .unwrap_err()
                .contains("(direction)")
        );
        assert!(
            parse_milestones("{\"to_next_intersection_heading\": \"2.5 (n)\"}")
                .unwrap_err()
                .contains("integer")
        );
    }
}
