//! Chain-of-thought answers: the expert shows the formula's arithmetic, one operation at a time,
//! before the answer ("Debunk the Myth of SFT Generalization", arXiv 2510.00237, trains SFT on
//! such answers). The steps go in a `"thought"` field that opens the answer's JSON; the
//! verifier reads only `"formula"` (and `"cards"` for vision), so the grade is unchanged.

use super::formula::{exact_steps, tokenize};
use crate::expert::with_first_field;

/// `response` with a `"thought"` field first: the arithmetic of its formula (the text of its
/// `"formula"` field, less `={target}`), e.g. `"thought": "10*3=30, 30-6=24, 24*1=24"`. A
/// response without a formula that evaluates is returned unchanged.
pub fn with_thought(response: &str, target: i64) -> String {
    let Some(steps) = formula_of(response, target)
        .and_then(|f| exact_steps(&tokenize(f)?).ok())
        .map(|(_, steps)| steps.join(", "))
    else {
        return response.to_string();
    };
    with_first_field(response, "thought", &steps)
}

/// The formula of a response's `"formula": "…={target}"` field.
fn formula_of(response: &str, target: i64) -> Option<&str> {
    let start = response.find("\"formula\": \"")? + "\"formula\": \"".len();
    let end = start + response[start..].find('"')?;
    response[start..end].strip_suffix(&format!("={target}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gp::expert::{ExpertSolution, expert_example};
    use crate::gp::prompt::PromptLayout;
    use crate::gp::verify::{HandFacts, grade_response};
    use crate::gp::{GpConfig, Variant};

    #[test]
    fn thoughts_open_both_layouts() {
        let compact = "{\"number\": [1, 3, 10, 6], \"formula\": \"(10*3-6)*1=24\"}";
        assert_eq!(
            with_thought(compact, 24),
            "{\"thought\": \"10*3=30, 30-6=24, 24*1=24\", \"number\": [1, 3, 10, 6], \
             \"formula\": \"(10*3-6)*1=24\"}"
        );
        let reference = "\n{\n  \"cards\": ['A', '3', 'K', '6'],\n  \"number\": [1, 3, 10, 6],\n  \"formula\": \"(10*3-6)*1=24\",\n}";
        assert_eq!(
            with_thought(reference, 24),
            "\n{\n  \"thought\": \"10*3=30, 30-6=24, 24*1=24\",\n  \"cards\": ['A', '3', 'K', '6'],\n  \"number\": [1, 3, 10, 6],\n  \"formula\": \"(10*3-6)*1=24\",\n}"
        );
        // Nothing to show: unchanged.
        assert_eq!(
            with_thought("{\"formula\": \"x\"}", 24),
            "{\"formula\": \"x\"}"
        );
        assert_eq!(with_thought("no json", 24), "no json");
    }

    /// The verifier grades an answer with a thought as it grades the answer alone.
    #[test]
    fn thoughts_leave_the_grade_unchanged() {
        for (vision, layout) in [
            (false, PromptLayout::Reference),
            (false, PromptLayout::Compact),
            (true, PromptLayout::Compact),
        ] {
            let cfg = GpConfig {
                prompt_layout: layout,
                image_size: 96,
                ..GpConfig::variant(Variant::Id, vision)
            };
            for i in 0..50 {
                let (hand, _) = crate::gp::expert::expert_hand(&cfg, 5, i, ExpertSolution::Random);
                let ex = expert_example(&cfg, 5, i, ExpertSolution::Random);
                let facts = HandFacts {
                    values: hand.values,
                    names: hand.names(),
                    solutions: &hand.solutions,
                    target: 24,
                    vision,
                    scheme: cfg.gp_reward,
                };
                let thought = with_thought(&ex.response, 24);
                assert!(thought.contains("\"thought\": \""), "{thought}");
                assert_eq!(
                    grade_response(&thought, &facts),
                    grade_response(&ex.response, &facts)
                );
            }
        }
    }
}
