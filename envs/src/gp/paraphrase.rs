//! Diverse prompts: the task stated in other words ("Debunk the Myth of SFT Generalization",
//! arXiv 2510.00237, finds that SFT on several prompt templates generalizes far better than SFT
//! on one). Variant 0 is the environment's own prompt; variants 1..[`PROMPT_VARIANTS`] say the
//! same things (cards, face-card rule, target) in other words and orders. Evaluation always uses
//! variant 0, so a model trained on the others meets a template it has seen among several.
//!
//! A from-scratch model's word-level vocabulary is built from its Init data: words that only the
//! paraphrases use read as `<unk>` to it. The compact variants therefore reuse the compact
//! prompt's own words where they can.

use super::cards::python_str_list;
use super::prompt::{PromptLayout, PromptSpec, PromptText, prompt};

/// The number of prompt variants, the environment's own included.
pub const PROMPT_VARIANTS: u32 = 4;

/// Variant `variant` (0..[`PROMPT_VARIANTS`]) of the prompt `spec` describes.
pub fn paraphrase(spec: &PromptSpec<'_>, variant: u32) -> String {
    let canonical = prompt(spec);
    if variant == 0 {
        return canonical;
    }
    let message = spec.rule.message();
    let face = match spec.text {
        PromptText::Reference => message.as_str(),
        PromptText::Cleaned => message.trim_end_matches('.'),
    };
    let t = spec.target;
    let cards = match spec.vision {
        true => "The cards are in the image.".to_string(),
        false => format!("Cards: {}", python_str_list(spec.cards)),
    };
    if spec.layout == PromptLayout::Compact {
        return match variant % PROMPT_VARIANTS {
            1 => format!("Note that {face}\n{cards}\nFormula for {t}:\n"),
            2 => format!("Formula for {t} with each card used once.\n{cards}\nNote that {face}\n"),
            _ => format!("{cards}\nUse each card once; note that {face}\nA formula for {t}:\n"),
        };
    }
    let (from, to): (&str, String) = match variant % PROMPT_VARIANTS {
        1 => (
            "You are an expert",
            "You are a skilled player of the".into(),
        ),
        2 => (
            "Your goal is to output a formula that evaluates to",
            "Write one formula whose value is".into(),
        ),
        _ => (
            "[Task Description]\n",
            format!("[Task Description]\nReach {t} with the four cards.\n"),
        ),
    };
    canonical.replacen(from, &to, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gp::FaceRule;

    fn spec(vision: bool, layout: PromptLayout) -> PromptSpec<'static> {
        PromptSpec {
            target: 24,
            rule: FaceRule::Custom([11, 13, 12]),
            cards: &["A", "3", "10", "K"],
            vision,
            example: false,
            text: PromptText::Reference,
            layout,
        }
    }

    /// Every variant differs from the others and still states the cards, the rule and the target.
    #[test]
    fn variants_differ_and_keep_the_task() {
        for vision in [false, true] {
            for layout in [PromptLayout::Reference, PromptLayout::Compact] {
                let s = spec(vision, layout);
                let all: Vec<String> = (0..PROMPT_VARIANTS).map(|v| paraphrase(&s, v)).collect();
                assert_eq!(all[0], prompt(&s));
                for (i, p) in all.iter().enumerate() {
                    assert!(p.contains("'11', '13', and '12'"), "{p}");
                    assert!(p.contains("24"), "{p}");
                    if !vision {
                        assert!(p.contains("['A', '3', '10', 'K']"), "{p}");
                    }
                    for q in &all[..i] {
                        assert_ne!(p, q);
                    }
                }
            }
        }
    }
}
