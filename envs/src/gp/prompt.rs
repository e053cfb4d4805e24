//! GeneralPoints prompts and the expert response template, verbatim from the reference
//! (LeslieTrue/SFTvsRL: prompt_lib/prompts.py; paper-spec §1.7, §8 D10).

use super::cards::FaceRule;
pub use crate::prompt_text::{PromptLayout, PromptText};

/// What a prompt is built from.
#[derive(Clone, Copy, Debug)]
pub struct PromptSpec<'a> {
    pub target: i64,
    pub rule: FaceRule,
    /// Plain card names; only the text task shows them.
    pub cards: &'a [&'a str; 4],
    pub vision: bool,
    /// Append the `[Output Example]` block (the `_EG` prompts used for API models).
    pub example: bool,
    pub text: PromptText,
    pub layout: PromptLayout,
}

const EXAMPLE_BLOCK: &str = "[Output Example]\n{\n  \"cards\": [4, 3, 2, K],\n  \"number\": [4, 3, 2, 10],\n  \"formula\": \"4*3+2+10=24\",\n}\n\nPlease only output the json.\n";

/// The user prompt of a GeneralPoints episode (`Q_GeneralPoint_EQN_{L,VL}[_EG]`).
pub fn prompt(spec: &PromptSpec<'_>) -> String {
    let message = spec.rule.message();
    let face = match spec.text {
        PromptText::Reference => message.as_str(),
        PromptText::Cleaned => message.trim_end_matches('.'),
    };
    let t = spec.target;
    if spec.layout == PromptLayout::Compact {
        if spec.vision {
            return format!("The cards are in the image.\nNote that {face}\nFormula for {t}:\n");
        }
        let cards = super::cards::python_str_list(spec.cards);
        return format!("Cards: {cards}\nNote that {face}\nFormula for {t}:\n");
    }
    let intro = if spec.vision {
        "You are observing these four cards in the image."
    } else {
        "You will receive a set of 4 cards."
    };
    let mut s = format!(
        "\n[Task Description]\nYou are an expert {t} points card game player. {intro}\n\
         Note that {face}, and each card must be used once.\n\
         Your goal is to output a formula that evaluates to {t} using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.\n\n"
    );
    if spec.vision {
        s.push_str(
            "[Output]\nYour response should be a valid json file in the following format:\n",
        );
    } else {
        s.push_str(&format!(
            "[Input]\nCards: {}\n\n[Output]\n",
            super::cards::python_str_list(spec.cards)
        ));
    }
    s.push_str(&format!(
        "{{\n  \"cards\": [x, y, z, w], where {face},\n  \"number\": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n  \"formula\": 'an equation that equals {t}',\n}}\n\n"
    ));
    if spec.example {
        s.push_str(EXAMPLE_BLOCK);
    }
    s
}

/// The expert response of a GeneralPoints task: [`expert_response`], except that GP-VL's
/// compact answers name the cards first (`{"cards": [...], "number": [...], "formula": ...}`),
/// since the verifier checks what was recognised.
pub fn task_response(
    vision: bool,
    cards: &[&str; 4],
    values: &[u8; 4],
    formula: &str,
    target: i64,
    layout: PromptLayout,
) -> String {
    if vision && layout == PromptLayout::Compact {
        let (names, numbers) = (
            super::cards::python_str_list(cards),
            super::cards::python_int_list(values),
        );
        return format!(
            "{{\"cards\": {names}, \"number\": {numbers}, \"formula\": \"{formula}={target}\"}}"
        );
    }
    expert_response(cards, values, formula, target, layout)
}

/// The expert response. Reference layout (`ResponseEqn`): single-quoted card names, the values,
/// and the formula with `=target`; a trailing comma makes it invalid JSON, so the parser's
/// fallback reads it. Compact layout: `{"number": [...], "formula": "...=target"}`.
pub fn expert_response(
    cards: &[&str; 4],
    values: &[u8; 4],
    formula: &str,
    target: i64,
    layout: PromptLayout,
) -> String {
    if layout == PromptLayout::Compact {
        let numbers = super::cards::python_int_list(values);
        return format!("{{\"number\": {numbers}, \"formula\": \"{formula}={target}\"}}");
    }
    format!(
        "\n{{\n  \"cards\": {},\n  \"number\": {},\n  \"formula\": \"{formula}={target}\",\n}}",
        super::cards::python_str_list(cards),
        super::cards::python_int_list(values),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE_L: &str = "\n[Task Description]\nYou are an expert 24 points card game player. You will receive a set of 4 cards.\nNote that 'J', 'Q', and 'K' count as '10'., and each card must be used once.\nYour goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.\n\n[Input]\nCards: ['A', '3', '10', 'K']\n\n[Output]\n{\n  \"cards\": [x, y, z, w], where 'J', 'Q', and 'K' count as '10'.,\n  \"number\": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n  \"formula\": 'an equation that equals 24',\n}\n\n";
    const REFERENCE_VL_EG_OOD: &str = "\n[Task Description]\nYou are an expert 24 points card game player. You are observing these four cards in the image.\nNote that 'J', 'Q', and 'K' count as '11', '12', and '13' respectively., and each card must be used once.\nYour goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.\n\n[Output]\nYour response should be a valid json file in the following format:\n{\n  \"cards\": [x, y, z, w], where 'J', 'Q', and 'K' count as '11', '12', and '13' respectively.,\n  \"number\": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n  \"formula\": 'an equation that equals 24',\n}\n\n[Output Example]\n{\n  \"cards\": [4, 3, 2, K],\n  \"number\": [4, 3, 2, 10],\n  \"formula\": \"4*3+2+10=24\",\n}\n\nPlease only output the json.\n";

    fn spec(vision: bool, example: bool, rule: FaceRule, text: PromptText) -> String {
        prompt(&PromptSpec {
            target: 24,
            rule,
            cards: &["A", "3", "10", "K"],
            vision,
            example,
            text,
            layout: PromptLayout::Reference,
        })
    }

    #[test]
    fn prompts_are_byte_exact() {
        assert_eq!(
            spec(false, false, FaceRule::Id, PromptText::Reference),
            REFERENCE_L
        );
        assert_eq!(
            spec(true, true, FaceRule::Ood, PromptText::Reference),
            REFERENCE_VL_EG_OOD
        );
        let cleaned = spec(false, false, FaceRule::Id, PromptText::Cleaned);
        assert!(cleaned.contains("count as '10', and each card"));
        assert_eq!(
            cleaned
                .replace("'10', and", "'10'., and")
                .replace("'10',\n", "'10'.,\n"),
            REFERENCE_L
        );
    }

    #[test]
    fn expert_response_layout() {
        let r = expert_response(
            &["A", "3", "K", "6"],
            &[1, 3, 10, 6],
            "(10*3-6)*1",
            24,
            PromptLayout::Reference,
        );
        assert_eq!(
            r,
            "\n{\n  \"cards\": ['A', '3', 'K', '6'],\n  \"number\": [1, 3, 10, 6],\n  \"formula\": \"(10*3-6)*1=24\",\n}"
        );
    }

    #[test]
    fn compact_layout_keeps_cards_rule_and_target() {
        let p = prompt(&PromptSpec {
            target: 24,
            rule: FaceRule::Ood,
            cards: &["A", "3", "10", "K"],
            vision: false,
            example: false,
            text: PromptText::Reference,
            layout: PromptLayout::Compact,
        });
        assert_eq!(
            p,
            "Cards: ['A', '3', '10', 'K']\nNote that 'J', 'Q', and 'K' count as '11', '12', and \
             '13' respectively.\nFormula for 24:\n"
        );
        let r = expert_response(
            &["A", "3", "K", "6"],
            &[1, 3, 10, 6],
            "(10*3-6)*1",
            24,
            PromptLayout::Compact,
        );
        assert_eq!(
            r,
            "{\"number\": [1, 3, 10, 6], \"formula\": \"(10*3-6)*1=24\"}"
        );
    }
}
