//! The GeneralPoints verifier: reading a response and grading it, exactly as the reference's
//! `GeneralPointEnv_oneline.step` + `step_rewards` do by default (paper-spec §1.8, §1.9), or with
//! the paper's reward scheme (§8 D2).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::formula::{EvalError, IntLiteral, Token, exact_eval, python_eval, tokenize};
use super::solver::Solutions;
use crate::extract::{Field, Key, re_match};

/// Rewards of the reference (`REWARD_FN`).
pub mod reward {
    pub const CORRECT_SOLUTION: f64 = 5.0;
    pub const PARTIAL_SOLUTION: f64 = 1.0;
    pub const NO_SOLUTION: f64 = -1.0;
    pub const INCORRECT_VISION: f64 = -1.5;
    pub const INCORRECT_NUMBER: f64 = -2.0;
    pub const ILLEGAL_FORMULA: f64 = -3.0;
    /// The penalty of the ungraded call after the last verification step.
    pub const STEP_LIMIT: f64 = -1.0;
}

/// Which reward scheme grades a formula (§8 D2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardScheme {
    /// The reference code: accumulating penalties, +1 partial solutions, f64 evaluation.
    #[default]
    Reference,
    /// The paper's description: the first failing check decides, no partial reward, exact
    /// rational equality. An unevaluable formula is "other illegal" (−3, `invalid formula`).
    Paper,
}

/// A grade: the reward and the verifier's message (`info["Verify Info"]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Grade {
    pub reward: f64,
    pub message: String,
}

/// What the verifier knows about the hand.
#[derive(Clone, Copy, Debug)]
pub struct HandFacts<'a> {
    /// Card values under the rule in play, in dealing order.
    pub values: [u8; 4],
    /// Plain card names (A, 2..10, J, Q, K), in dealing order.
    pub names: [&'static str; 4],
    pub solutions: &'a Solutions,
    pub target: i64,
    /// GP-VL: the recognised cards are checked first.
    pub vision: bool,
    pub scheme: RewardScheme,
}

/// The formula field after `split('=')[0]`.
#[derive(Clone, Debug, PartialEq)]
pub enum FormulaField<'a> {
    Text(&'a str),
    /// A JSON value that is not a string (the reference raises a `TypeError` on it; it is
    /// graded here as illegal characters).
    NotText,
}

/// The reference's `robust_str_to_list`: strip `[`, `]`, `'` and spaces, split on `,`, and keep
/// the result only if it has exactly four items.
pub fn robust_str_to_list(field: &Field<'_>) -> Vec<String> {
    let Some(s) = field.as_str() else {
        return Vec::new();
    };
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, '[' | ']' | '\'' | ' '))
        .collect();
    let items: Vec<String> = cleaned.split(',').map(str::to_string).collect();
    if items.len() == 4 { items } else { Vec::new() }
}

/// Reads a response and grades it.
pub fn grade_response(response: &str, hand: &HandFacts<'_>) -> Grade {
    let formula = re_match(response, Key::Formula);
    let formula = match &formula {
        Field::Str(s) => FormulaField::Text(s.split('=').next().unwrap_or("")),
        _ => FormulaField::NotText,
    };
    let recognized = if hand.vision {
        robust_str_to_list(&re_match(response, Key::Cards))
    } else {
        Vec::new()
    };
    grade(&formula, &recognized, hand)
}

/// Accumulates penalties the way the reference's `StepResult` does.
#[derive(Default)]
struct Stepper {
    entries: Vec<(f64, String)>,
}

impl Stepper {
    fn add(&mut self, reward: f64, message: impl Into<String>) {
        self.entries.push((reward, message.into()));
    }

    fn reward(&self) -> f64 {
        self.entries.iter().fold(0.0, |acc, (r, _)| acc + r)
    }

    /// The reference's grade: rewards summed, messages joined by `", "` and ended with `"."`.
    fn grade(self) -> Grade {
        let reward = self.reward();
        let messages: Vec<String> = self.entries.into_iter().map(|(_, m)| m).collect();
        Grade {
            reward,
            message: format!("{}.", messages.join(", ")),
        }
    }

    /// The paper scheme's grade: only the first failure counts.
    fn first(mut self) -> Grade {
        self.entries.truncate(1);
        self.grade()
    }
}

/// Grades a formula (and, for vision, the recognised cards): `step_rewards`.
pub fn grade(formula: &FormulaField<'_>, recognized: &[String], hand: &HandFacts<'_>) -> Grade {
    if hand.vision {
        let mut gt: Vec<&str> = hand.names.to_vec();
        let mut got: Vec<&str> = recognized.iter().map(String::as_str).collect();
        gt.sort_unstable();
        got.sort_unstable();
        if gt != got {
            return Grade {
                reward: reward::INCORRECT_VISION,
                message: "you recognized wrong cards".into(),
            };
        }
    }
    let mut st = Stepper::default();
    let paper = hand.scheme == RewardScheme::Paper;
    let tokens = match formula {
        FormulaField::Text(f) => tokenize(f),
        FormulaField::NotText => None,
    };
    let (Some(tokens), FormulaField::Text(f)) = (tokens, formula) else {
        st.add(reward::ILLEGAL_FORMULA, "illegal characters");
        return st.grade();
    };
    check_sequence(&tokens, &mut st);
    if paper && !st.entries.is_empty() {
        return st.first();
    }
    check_numbers(&tokens, &hand.values, &mut st);
    if paper && !st.entries.is_empty() {
        return st.first();
    }
    if st.reward() != 0.0 {
        return st.grade();
    }
    if paper {
        match exact_eval(&tokens) {
            Ok(v) if v.equals_int(hand.target) => {
                st.add(reward::CORRECT_SOLUTION, "Correct solution");
                return st.grade();
            }
            Ok(_) => {}
            Err(_) => {
                st.add(reward::ILLEGAL_FORMULA, "invalid formula");
                return st.grade();
            }
        }
    } else {
        match python_eval(&tokens) {
            Ok(v) if v.equals_int(hand.target) => {
                st.add(reward::CORRECT_SOLUTION, "Correct solution");
                return st.grade();
            }
            Ok(_) => {}
            Err(EvalError::Syntax | EvalError::ZeroDivision) => {
                if hand.solutions.any_starts_with(f) {
                    st.add(reward::PARTIAL_SOLUTION, "partial solution");
                    return st.grade();
                }
            }
        }
    }
    prefix_walk(&tokens, hand.solutions, &mut st);
    if paper && st.entries.is_empty() {
        // Exact evaluation differs from the target, yet the formula is a solution prefix.
        st.add(
            reward::NO_SOLUTION,
            "your formula does not match any solution",
        );
    }
    st.grade()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Operator,
    Open,
    Close,
}

fn kind(t: &Token<'_>) -> Kind {
    match t {
        Token::Number(_) => Kind::Number,
        Token::Op(b'(') => Kind::Open,
        Token::Op(b')') => Kind::Close,
        Token::Op(_) => Kind::Operator,
    }
}

/// Step 3: the token-order checks, each violation a −3.
fn check_sequence(tokens: &[Token<'_>], st: &mut Stepper) {
    let mut prev: Option<Kind> = None;
    let mut open = 0usize;
    for t in tokens {
        let k = kind(t);
        let after_operand = matches!(prev, Some(Kind::Number | Kind::Close));
        match k {
            Kind::Number | Kind::Open if after_operand => st.add(
                reward::ILLEGAL_FORMULA,
                if k == Kind::Number {
                    "invalid sequence after number"
                } else {
                    "invalid sequence before '('"
                },
            ),
            Kind::Open => open += 1,
            Kind::Number => {}
            Kind::Operator if !after_operand => {
                st.add(reward::ILLEGAL_FORMULA, "invalid sequence after operator")
            }
            Kind::Operator => {}
            Kind::Close if !after_operand => {
                st.add(reward::ILLEGAL_FORMULA, "invalid sequence after ')'")
            }
            Kind::Close if open == 0 => {
                st.add(reward::ILLEGAL_FORMULA, "unmatched closing parenthesis")
            }
            Kind::Close => open -= 1,
        }
        prev = Some(k);
    }
}

/// Python's `str(list)` of integers.
fn int_list(items: &[&str]) -> String {
    format!("[{}]", items.join(", "))
}

/// Step 4: the numbers used against the card values (`Counter` semantics, first-seen order).
fn check_numbers(tokens: &[Token<'_>], values: &[u8; 4], st: &mut Stepper) {
    // Counter semantics: counts per distinct number, in order of first appearance.
    let mut used: Vec<(IntLiteral, usize)> = Vec::new();
    let mut index: HashMap<IntLiteral, usize> = HashMap::new();
    for t in tokens {
        if let Token::Number(run) = t {
            let lit = IntLiteral::parse(run);
            match index.get(&lit) {
                Some(&i) => used[i].1 += 1,
                None => {
                    index.insert(lit.clone(), used.len());
                    used.push((lit, 1));
                }
            }
        }
    }
    let mut cards: Vec<(u8, usize)> = Vec::with_capacity(4);
    for &v in values {
        match cards.iter_mut().find(|(c, _)| *c == v) {
            Some((_, n)) => *n += 1,
            None => cards.push((v, 1)),
        }
    }
    let card_count = |lit: &IntLiteral| {
        lit.small()
            .and_then(|v| cards.iter().find(|(c, _)| u64::from(*c) == v))
            .map_or(0, |(_, n)| *n)
    };
    let invalid: Vec<&str> = used
        .iter()
        .filter(|(l, _)| card_count(l) == 0)
        .map(|(l, _)| l.as_str())
        .collect();
    let overused: Vec<&str> = used
        .iter()
        .filter(|(l, n)| *n > card_count(l))
        .map(|(l, _)| l.as_str())
        .collect();
    if !invalid.is_empty() {
        st.add(
            reward::INCORRECT_NUMBER,
            format!("you used invalid numbers: {}", int_list(&invalid)),
        );
    } else if !overused.is_empty() {
        st.add(
            reward::INCORRECT_NUMBER,
            format!("you used numbers: {} too many times", int_list(&overused)),
        );
    }
    let underused: Vec<String> = cards
        .iter()
        .filter(|(c, n)| {
            let in_formula = used
                .iter()
                .find(|(l, _)| l.small() == Some(u64::from(*c)))
                .map_or(0, |(_, k)| *k);
            *n > in_formula
        })
        .map(|(c, _)| c.to_string())
        .collect();
    if !underused.is_empty() {
        let names: Vec<&str> = underused.iter().map(String::as_str).collect();
        st.add(
            reward::INCORRECT_NUMBER,
            format!("you didn't use numbers: {}", int_list(&names)),
        );
    }
}

/// Step 7: the longest token prefix that some solution starts with.
fn prefix_walk(tokens: &[Token<'_>], solutions: &Solutions, st: &mut Stepper) {
    let mut register = String::new();
    for t in tokens {
        let prev_len = register.len();
        match t {
            Token::Number(run) => register.push_str(run),
            Token::Op(o) => register.push(char::from(*o)),
        }
        if !solutions.any_starts_with(&register) {
            if prev_len == 0 {
                st.add(
                    reward::NO_SOLUTION,
                    "your formula does not match any solution",
                );
            } else {
                st.add(
                    reward::NO_SOLUTION,
                    format!(
                        "{} is partially correct but the full formula does not match any solution",
                        &register[..prev_len]
                    ),
                );
            }
            return;
        }
    }
}
