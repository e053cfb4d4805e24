//! The action log-probability of a response: RL4VLM's thought/action split (paper-spec §4.3).
//!
//! Output token 0 is never scored and token id 0 is masked out. The response is split at the
//! last occurrence of the answer key's tokens (` "formula":`) at index `m`:
//! `logp = coef · Σ lp(tokens 2..m−1) + Σ lp(tokens m..end)`. Without the key the split falls
//! one token before the 4th-from-last scored token; with fewer than 4 scored tokens the
//! log-prob is the constant −2 (no gradient). A split at token 0 leaves no action tokens, as
//! the reference's slice of its zero-padded row does.

use sftvsrl_model::{ModelError, Tokenizer};

/// The log-prob the reference assigns to responses with fewer than 4 scored tokens.
pub const SHORT_RESPONSE_LOGPROB: f32 = -2.0;

/// How a response's per-token log-probs add up to its action log-prob.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionWeights {
    /// One weight per response token: 0 (unscored), the thought coefficient, or 1 (action).
    pub weights: Vec<f32>,
    /// A constant log-prob that replaces the weighted sum (too short to score).
    pub constant: Option<f32>,
}

impl ActionWeights {
    /// The action log-prob given the response's per-token log-probs.
    pub fn logprob(&self, token_logprobs: &[f32]) -> f32 {
        match self.constant {
            Some(c) => c,
            None => self
                .weights
                .iter()
                .zip(token_logprobs)
                .map(|(w, lp)| w * lp)
                .sum(),
        }
    }
}

/// The token ids of the answer key as it appears in a JSON answer: ` "key":`.
pub fn answer_marker(tokenizer: &Tokenizer, key: &str) -> Result<Vec<u32>, ModelError> {
    tokenizer.encode(&format!(" \"{key}\":"), false)
}

/// The weights of the reference's thought/action split for `tokens` (one response).
pub fn action_weights(tokens: &[u32], marker: &[u32], thought_coef: f32) -> ActionWeights {
    let n = tokens.len();
    let scored = |t: usize| t >= 1 && tokens[t] != 0;
    let matched = if marker.is_empty() || marker.len() > n {
        None
    } else {
        (0..=n - marker.len())
            .rev()
            .find(|&i| tokens[i..i + marker.len()] == *marker)
    };
    let split = match matched {
        Some(m) => m,
        None => {
            let scored_positions: Vec<usize> = (0..n).filter(|&t| scored(t)).collect();
            if scored_positions.len() < 4 {
                return ActionWeights {
                    weights: vec![0.0; n],
                    constant: Some(SHORT_RESPONSE_LOGPROB),
                };
            }
            scored_positions[scored_positions.len() - 4] - 1
        }
    };
    // The reference slices `[split − 1:]` over a zero-padded row: at split 0 that is the last
    // padding slot, so nothing is action and every scored token from 2 on is thought.
    let split = if split == 0 { n } else { split };
    let weights = (0..n)
        .map(|t| match t {
            _ if !scored(t) => 0.0,
            t if t >= split => 1.0,
            t if t >= 2 => thought_coef,
            _ => 0.0,
        })
        .collect();
    ActionWeights {
        weights,
        constant: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: [u32; 3] = [330, 60599, 794];

    #[test]
    fn splits_at_the_last_answer_key() {
        // t: 0   1   2   3    4      5    6   7    8      9    10
        let tokens = [9, 8, 7, 330, 60599, 794, 6, 330, 60599, 794, 5];
        let w = action_weights(&tokens, &MARKER, 0.5);
        // Token 0 never scored, token 1 not in the thought sum, 2..6 thought, 7.. action.
        let expected = [0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(w.weights, expected);
        let lps: Vec<f32> = (0..11).map(|i| -(i as f32) * 0.1).collect();
        let by_hand = 0.5 * (-0.2 - 0.3 - 0.4 - 0.5 - 0.6) + (-0.7 - 0.8 - 0.9 - 1.0);
        assert!((w.logprob(&lps) - by_hand).abs() < 1e-6);
    }

    #[test]
    fn falls_back_to_the_last_tokens_and_masks_id_zero() {
        // No key; scored tokens are 1, 2, 4, 5, 6, 7 (token 3 is id 0). The 4th from last is
        // token 4, so the action starts at token 3 (masked) and covers 4..7.
        let tokens = [9, 8, 7, 0, 6, 5, 4, 3];
        let w = action_weights(&tokens, &MARKER, 0.5);
        assert_eq!(w.weights, [0.0, 0.0, 0.5, 0.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(w.constant, None);
    }

    #[test]
    fn short_responses_get_a_constant() {
        let w = action_weights(&[5, 6, 7, 8], &MARKER, 0.5);
        assert_eq!(w.constant, Some(SHORT_RESPONSE_LOGPROB));
        assert_eq!(w.logprob(&[-1.0; 4]), -2.0);
        // Four scored tokens are enough; the split lands on token 0, where the reference's
        // slice leaves no action tokens.
        let w = action_weights(&[5, 6, 7, 8, 9], &MARKER, 0.5);
        assert_eq!(w.weights, [0.0, 0.0, 0.5, 0.5, 0.5]);
    }
}
