//! Exact match of the answer field by greedy decoding: the model answers held-out prompts on its
//! own (no teacher forcing), and its answer field — read as the environments read it — is
//! compared with the expert's. The field is the first of `formula` (GeneralPoints) and `action`
//! (navigation) present in the expert answer, or the whole answer when neither is.

use burn::tensor::backend::Backend;
use sftvsrl_envs::extract::{Field, Key, re_match};
use sftvsrl_model::{
    Backbone, GenerateConfig, ImageProcessor, Sampling, Tokenizer, generate, generate_vlm,
};

use crate::batch::sequence_pixels;
use crate::data::Sequence;
use crate::error::TrainError;

/// The fields compared, in order of preference.
const ANSWER_KEYS: [Key; 2] = [Key::Formula, Key::Action];

/// What an answer is compared on: its first answer field that `expert` has, or all of it.
fn answer_of<'a>(text: &'a str, expert: &str) -> Field<'a> {
    for key in ANSWER_KEYS {
        if matches!(re_match(expert, key), Field::Str(s) if s != "None") {
            return re_match(text, key);
        }
    }
    Field::Str(text.trim().into())
}

/// Whether `answer` gives the same answer field as `expert`.
pub fn same_answer(answer: &str, expert: &str) -> bool {
    answer_of(answer, expert) == answer_of(expert, expert)
}

/// Fraction of `sequences` (prompt + expert answer) whose answer the model, decoding greedily
/// `batch` prompts at a time (padded as [`GenerateConfig::pad_to_multiple_of`] says),
/// reproduces in its answer field. A vision-language model reads the sequences' images through
/// `processor`.
#[allow(clippy::too_many_arguments)]
pub fn greedy_answer_match<B: Backend>(
    model: &Backbone<B>,
    processor: Option<&ImageProcessor>,
    tokenizer: &Tokenizer,
    sequences: &[Sequence],
    max_new_tokens: usize,
    batch: usize,
    pad_to_multiple_of: Option<usize>,
    device: &B::Device,
) -> Result<f64, TrainError> {
    let config = GenerateConfig {
        max_new_tokens,
        sampling: Sampling::GREEDY,
        stop_tokens: tokenizer.stop_tokens(),
        seed: 0,
        pad_to_multiple_of,
    };
    let mut matched = 0;
    for chunk in sequences.chunks(batch.max(1)) {
        let prompts: Vec<Vec<u32>> = chunk
            .iter()
            .map(|s| s.ids[..s.prompt_len].to_vec())
            .collect();
        let generation = match (model, processor) {
            (Backbone::Vision(vlm), Some(processor)) => {
                let refs: Vec<&Sequence> = chunk.iter().collect();
                let (pixels, n) = sequence_pixels(&refs, processor, device)?;
                let pixels = (n > 0).then_some(pixels);
                generate_vlm(vlm, &prompts, pixels, &config, device)?
            }
            (Backbone::Vision(_), None) => {
                return Err(TrainError::Invalid(
                    "a vision-language model needs its image processor".into(),
                ));
            }
            (Backbone::Text(llama), _) => generate(llama, &prompts, &config, device)?,
        };
        for (s, out) in chunk.iter().zip(&generation.sequences) {
            let expert = tokenizer.decode(&s.ids[s.prompt_len..], true)?;
            let answer = tokenizer.decode(&out.tokens, true)?;
            matched += usize::from(same_answer(&answer, &expert));
        }
    }
    Ok(matched as f64 / sequences.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_the_answer_field_only() {
        let expert = "{\n  \"cards\": ['3', 'Q'],\n  \"formula\": \"(10-3)*2+10=24\",\n}";
        let same = "{\"cards\": ['9', '9'], \"formula\": \"(10-3)*2+10=24\"}";
        let other = "{\"cards\": ['3', 'Q'], \"formula\": \"(10-3)*2+10\"}";
        assert!(same_answer(same, expert));
        assert!(!same_answer(other, expert));
        assert!(!same_answer("no answer", expert));
    }

    #[test]
    fn navigation_answers_compare_the_action() {
        let expert = "{\"current observation\": \"x\", \"action\": \"turn_direction(east)\"}";
        assert!(same_answer(
            "{\"current observation\": \"y\", \"action\": \"turn_direction(east)\"}",
            expert
        ));
        assert!(!same_answer("{\"action\": \"forward()\"}", expert));
    }

    #[test]
    fn free_text_answers_compare_whole() {
        assert!(same_answer(" Paris.\n", "Paris."));
        assert!(!same_answer("Lyon.", "Paris."));
    }
}
