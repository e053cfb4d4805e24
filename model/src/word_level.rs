//! Small word-level tokenizers for models trained from scratch: every word, digit, punctuation
//! mark, bracket, quote and whitespace character is one token (a word or symbol keeps the single
//! space before it), so the vocabulary stays small and decoding rebuilds the text exactly. The
//! result is an ordinary HF tokenizer, saved as `tokenizer.json`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use regex::Regex;
use serde_json::{Value, json};

use crate::chat_template::{ChatFormat, ChatTemplate};
use crate::error::ModelError;
use crate::tokenizer::Tokenizer;

/// Padding (id 0).
pub const PAD: &str = "<pad>";
/// Unknown word (id 1).
pub const UNK: &str = "<unk>";
/// Beginning of sequence (id 2).
pub const BOS: &str = "<bos>";
/// End of sequence (id 3): the stop token of answers.
pub const EOS: &str = "<eos>";

/// How text is cut into tokens (the same pattern drives the HF pre-tokenizer).
const PIECES: &str = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]|\s";

/// The image placeholder of a vision-language model's word-level tokenizer.
pub const IMAGE: &str = "<image>";

/// A word-level tokenizer whose vocabulary holds the special tokens, every printable ASCII
/// character (with and without a leading space), and every piece of `corpus` seen at least
/// `min_count` times. Ids are deterministic: specials, then characters, then corpus pieces by
/// decreasing count and then alphabetically.
pub fn word_level_tokenizer<'a>(
    corpus: impl IntoIterator<Item = &'a str>,
    min_count: usize,
) -> Result<Tokenizer, ModelError> {
    word_level_tokenizer_with(corpus, min_count, &[])
}

/// [`word_level_tokenizer`] with `extra` special tokens (such as [`IMAGE`]) after the rest of
/// the vocabulary, so that every other id is the same as without them.
pub fn word_level_tokenizer_with<'a>(
    corpus: impl IntoIterator<Item = &'a str>,
    min_count: usize,
    extra: &[&str],
) -> Result<Tokenizer, ModelError> {
    word_level_tokenizer_extended(corpus, [], min_count, extra)
}

/// [`word_level_tokenizer_with`] whose vocabulary also holds the pieces of `later` (seen at least
/// `min_count` times there) that `corpus` lacks, after `corpus`'s own and before `extra`: a
/// model trained on `corpus` keeps every id it would have without `later`, and text that only
/// `later` uses (say, data of a later training stage) reads without `<unk>`.
pub fn word_level_tokenizer_extended<'a>(
    corpus: impl IntoIterator<Item = &'a str>,
    later: impl IntoIterator<Item = &'a str>,
    min_count: usize,
    extra: &[&str],
) -> Result<Tokenizer, ModelError> {
    let re = Regex::new(PIECES).expect("valid regex");
    let mut vocab: Vec<String> = [PAD, UNK, BOS, EOS].map(String::from).to_vec();
    for c in (b' '..=b'~').map(char::from).chain(['\n', '\t']) {
        vocab.push(c.to_string());
        if !c.is_whitespace() {
            vocab.push(format!(" {c}"));
        }
    }
    let mut known: HashSet<String> = vocab.iter().cloned().collect();
    for pieces in [
        ranked_pieces(&re, corpus, min_count),
        ranked_pieces(&re, later, min_count),
    ] {
        for piece in pieces {
            if known.insert(piece.to_string()) {
                vocab.push(piece.to_string());
            }
        }
    }
    let first_extra = vocab.len();
    vocab.extend(extra.iter().map(|t| t.to_string()));

    let ids: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let specials = [PAD, UNK, BOS, EOS].into_iter().enumerate();
    let added: Vec<Value> = specials
        .chain(extra.iter().enumerate().map(|(k, &t)| (first_extra + k, t)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": PIECES}, "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": UNK},
    });
    Tokenizer::from_json(
        &json,
        Some(BOS.into()),
        Some(EOS.into()),
        Some(ChatTemplate::new(ChatFormat::Plain)),
        Path::new("<word-level tokenizer>"),
    )
}

/// The pieces of `corpus` seen at least `min_count` times, by decreasing count and then
/// alphabetically.
fn ranked_pieces<'a>(
    re: &Regex,
    corpus: impl IntoIterator<Item = &'a str>,
    min_count: usize,
) -> Vec<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for text in corpus {
        for m in re.find_iter(text) {
            *counts.entry(m.as_str()).or_default() += 1;
        }
    }
    let mut pieces: Vec<(&str, usize)> = counts
        .into_iter()
        .filter(|&(_, n)| n >= min_count)
        .collect();
    pieces.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    pieces.into_iter().map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sftvsrl_envs::Env;
    use sftvsrl_envs::gp::prompt::PromptLayout;
    use sftvsrl_envs::gp::prompt::expert_response;
    use sftvsrl_envs::gp::{FaceRule, GeneralPoints, GpConfig};

    /// Prompts, expert answers, wrong answers and verifier feedback of `n` GeneralPoints
    /// episodes under both face-card rules.
    fn gp_texts(seed: u64, n: u64) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..n {
            let face_cards = if i % 2 == 0 {
                FaceRule::Id
            } else {
                FaceRule::Ood
            };
            let cfg = GpConfig {
                face_cards,
                ..GpConfig::default()
            };
            let mut env = GeneralPoints::new(cfg).unwrap();
            env.reset(seed * 1000 + i);
            let hand = env.hand().clone();
            let answer = &hand.solutions.all()[0];
            let expert = expert_response(
                &hand.names(),
                &hand.values,
                answer,
                24,
                PromptLayout::Reference,
            );
            let wrong = expert.replace("=24", "=25");
            env.step(&wrong);
            out.extend(env.transcript().turns.iter().map(|t| t.text.clone()));
            out.push(expert);
        }
        out
    }

    #[test]
    fn extra_specials_come_last_and_leave_every_other_id_alone() {
        let corpus = ["the cards are 3 and K", "the sum is 24"];
        let plain = word_level_tokenizer(corpus, 1).unwrap();
        let with = word_level_tokenizer_with(corpus, 1, &[IMAGE]).unwrap();
        assert_eq!(with.vocab_size(), plain.vocab_size() + 1);
        let image = with.token_id(IMAGE).unwrap();
        assert_eq!(image as usize, plain.vocab_size());
        let text = "the cards are 3 and K, the sum is 24";
        assert_eq!(
            with.encode_text(text).unwrap(),
            plain.encode_text(text).unwrap()
        );
        // Text never becomes the placeholder: only a model's prompt builder puts it in.
        let ids = with.encode_text(&format!("{IMAGE} the")).unwrap();
        assert!(!ids.contains(&image), "{ids:?}");
    }

    #[test]
    fn later_pieces_come_after_the_corpus_and_leave_its_ids_alone() {
        let corpus = ["the cards are 3 and K", "the sum is 24"];
        let later = ["thought: the cards sum to 24", "note each card"];
        let plain = word_level_tokenizer_with(corpus, 1, &[IMAGE]).unwrap();
        let wide = word_level_tokenizer_extended(corpus, later, 1, &[IMAGE]).unwrap();
        // New pieces: "thought", " the", " to", "note", " each", " card" (":" is a character).
        assert_eq!(wide.vocab_size(), plain.vocab_size() + 6);
        let text = "the sum is 24 and K";
        assert_eq!(
            wide.encode_text(text).unwrap(),
            plain.encode_text(text).unwrap()
        );
        let unk = wide.token_id(UNK).unwrap();
        for t in later {
            let ids = wide.encode_text(t).unwrap();
            assert!(!ids.contains(&unk), "{t}: {ids:?}");
            assert!(plain.encode_text(t).unwrap().contains(&unk), "{t}");
        }
        // The later pieces sit between the corpus's and the extra specials.
        let first_new = plain.token_id(IMAGE).unwrap();
        assert!(wide.token_id("thought").unwrap() >= first_new);
        assert_eq!(
            wide.token_id(IMAGE).unwrap() as usize,
            wide.vocab_size() - 1
        );
    }

    #[test]
    fn covers_general_points_prompts_and_answers_exactly() {
        let train = gp_texts(1, 200);
        let tok = word_level_tokenizer(train.iter().map(String::as_str), 1).unwrap();
        assert!(tok.vocab_size() < 1000, "vocab {}", tok.vocab_size());
        let unk = tok.token_id(UNK).unwrap();
        // Unseen episodes of the same task tokenize without unknown words and decode exactly.
        for text in gp_texts(2, 50) {
            let ids = tok.encode(&text, false).unwrap();
            assert!(!ids.contains(&unk), "unknown piece in {text:?}");
            assert_eq!(tok.decode(&ids, true).unwrap(), text);
        }
        let with_eos = tok.encode("[1, 2]\n<eos>", false).unwrap();
        assert_eq!(with_eos.last().copied(), tok.eos_id());
        assert_eq!(tok.stop_tokens(), vec![3]);
        assert_eq!(tok.decode(&with_eos, true).unwrap(), "[1, 2]\n");
    }

    #[test]
    fn saved_tokenizer_loads_back_identically() {
        let text = "He said: \"take 'K' (13)\".\n";
        let tok = word_level_tokenizer([text], 1).unwrap();
        let dir = std::env::temp_dir().join(format!("sftvsrl-wl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        tok.save(&dir).unwrap();
        let back = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        assert_eq!(
            back.encode(text, false).unwrap(),
            tok.encode(text, false).unwrap()
        );
        assert_eq!((back.bos_id(), back.eos_id()), (Some(2), Some(3)));
        assert_eq!(back.chat_template().format, ChatFormat::Plain);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
