//! Chat JSONL → token sequences with a loss mask.
//!
//! Each line holds `{"messages": [{"role": "system"|"user"|"assistant", "content": …}, …]}`,
//! optionally `"image": "images/000000.png"` (a path relative to the JSONL file's folder: the
//! image the first user turn shows) and `"meta"` (free-form notes for the reader, not trained
//! on); any other key is an error. The last message must be the assistant's: that message is
//! the target, everything before it the prompt. The prompt is rendered through the
//! model's chat template with the generation prompt; the target is the response text followed by
//! the template's end-of-turn token (EOS for the plain template) and, for the Llama-3.2-Vision
//! layout, a `\n`, as the reference's targets end. Only target tokens are trained. A
//! vision-language model's prompt starts with the image's placeholder tokens
//! ([`crate::vision_prompt`]); a language model refuses data with images.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sftvsrl_envs::{Rng, Role, Turn};
use sftvsrl_model::{Tokenizer, VlmConfig};

use crate::policy::vision_prompt;

use crate::error::TrainError;

/// One conversation: an optional system prompt, the turns before the answer, and the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatExample {
    pub system: Option<String>,
    pub prompt: Vec<Turn>,
    pub response: String,
    /// The image the first user turn shows (resolved against the data file's folder).
    pub image: Option<PathBuf>,
}

/// A tokenized example: `ids[..prompt_len]` is the prompt, the rest is trained on.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// The image whose placeholders open the prompt (read when a batch needs it).
    pub image: Option<PathBuf>,
}

impl Sequence {
    /// A sequence without an image.
    pub fn text(ids: Vec<u32>, prompt_len: usize) -> Self {
        Sequence {
            ids,
            prompt_len,
            image: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    messages: Vec<Message>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default, rename = "meta")]
    _meta: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    content: String,
}

/// Reads every example of a chat JSONL file; blank lines are skipped.
pub fn read_chat_jsonl(path: &Path) -> Result<Vec<ChatExample>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let examples = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l, dir).map_err(|message| TrainError::Data {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if examples.is_empty() {
        return Err(TrainError::Data {
            path: path.to_path_buf(),
            line: 0,
            message: "no examples".into(),
        });
    }
    Ok(examples)
}

fn parse_line(line: &str, dir: &Path) -> Result<ChatExample, String> {
    let Line {
        mut messages,
        image,
        ..
    } = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let image = image.map(|rel| dir.join(rel));
    if let Some(path) = &image {
        image::image_dimensions(path).map_err(|e| format!("`image` {}: {e}", path.display()))?;
    }
    let last = messages.pop().ok_or("`messages` is empty")?;
    if last.role != "assistant" {
        return Err(format!(
            "the last message must be the assistant's, not `{}`",
            last.role
        ));
    }
    let mut system = None;
    let mut prompt = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" if i == 0 => {
                system = Some(m.content);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => return Err(format!("message {i} has an unexpected role `{other}`")),
        };
        prompt.push(Turn {
            role,
            text: m.content,
        });
    }
    if prompt.is_empty() {
        return Err("no user message before the answer".into());
    }
    Ok(ChatExample {
        system,
        prompt,
        response: last.content,
        image,
    })
}

/// The token ids that close an answer: the template's first end-of-turn token in the vocabulary
/// (else EOS), then the template's text after an answer (`\n` for the Llama-3.2-Vision layout).
pub fn end_of_turn_ids(tokenizer: &Tokenizer) -> Result<Vec<u32>, TrainError> {
    let template = tokenizer.chat_template();
    let end = template
        .end_of_turn_tokens()
        .iter()
        .find_map(|t| tokenizer.token_id(t))
        .or(tokenizer.eos_id())
        .ok_or_else(|| {
            TrainError::Invalid("the tokenizer has no end-of-turn or EOS token".into())
        })?;
    let mut ids = vec![end];
    ids.extend(tokenizer.encode_text(template.after_answer())?);
    Ok(ids)
}

/// Tokenizes `example`, its prompt opened by the image's placeholders when it shows one (and
/// `vision` is the model's config: a language model refuses images); longer than `max_len`
/// tokens is an error.
pub fn tokenize(
    tokenizer: &Tokenizer,
    example: &ChatExample,
    end_of_turn: &[u32],
    max_len: usize,
    vision: Option<&VlmConfig>,
) -> Result<Sequence, String> {
    let mut ids = tokenizer
        .encode_chat(example.system.as_deref(), &example.prompt)
        .map_err(|e| e.to_string())?;
    match (&example.image, vision) {
        (Some(_), Some(config)) => ids = vision_prompt(config, ids),
        (Some(path), None) => {
            return Err(format!(
                "`image` ({}): the example shows an image, but the model is a language model \
                 (train a vision-language model: `[model.vision]` or a VLM checkpoint)",
                path.display()
            ));
        }
        (None, _) => {}
    }
    let prompt_len = ids.len();
    ids.extend(
        tokenizer
            .encode_text(&example.response)
            .map_err(|e| e.to_string())?,
    );
    ids.extend_from_slice(end_of_turn);
    if ids.len() > max_len {
        return Err(format!(
            "{} tokens, more than data.max_len = {max_len}",
            ids.len()
        ));
    }
    if prompt_len == 0 {
        return Err("the prompt renders to no tokens".into());
    }
    Ok(Sequence {
        ids,
        prompt_len,
        image: example.image.clone(),
    })
}

/// Tokenizes every example of the file at `path` (errors name the example's line) for a model
/// that reads images when `vision` is its config.
pub fn tokenize_all(
    tokenizer: &Tokenizer,
    examples: &[ChatExample],
    max_len: usize,
    path: &Path,
    vision: Option<&VlmConfig>,
) -> Result<Vec<Sequence>, TrainError> {
    let eot = end_of_turn_ids(tokenizer)?;
    examples
        .iter()
        .enumerate()
        .map(|(i, ex)| {
            tokenize(tokenizer, ex, &eot, max_len, vision).map_err(|message| TrainError::Data {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            })
        })
        .collect()
}

/// Splits `items` into (train, valid) with `valid_fraction` of them (at least one when the
/// fraction is positive, and at least one left to train on) chosen by `seed`.
///
/// Too few items for that — none, or a single one with a positive fraction — is an error
/// naming `data.valid_fraction` rather than a run without validation: a validation split that
/// the config asks for is never silently dropped.
pub fn split<T>(items: Vec<T>, valid_fraction: f64, seed: u64) -> Result<(Vec<T>, Vec<T>), String> {
    let n = items.len();
    let wanted = usize::from(valid_fraction > 0.0) + 1;
    if n < wanted {
        let advice = match wanted {
            2 => "; set `data.valid_fraction = 0` to train on it without validation",
            _ => "",
        };
        return Err(format!(
            "{n} example(s): too few to hold out a validation split (`data.valid_fraction` = \
             {valid_fraction}) and train on the rest, which needs at least {wanted}{advice}"
        ));
    }
    let n_valid = if valid_fraction > 0.0 {
        ((n as f64 * valid_fraction).round() as usize).clamp(1, n - 1)
    } else {
        0
    };
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(seed, 0x5f1d).shuffle(&mut order);
    let mut is_valid = vec![false; n];
    for &i in &order[..n_valid] {
        is_valid[i] = true;
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (item, v) in items.into_iter().zip(is_valid) {
        if v {
            valid.push(item)
        } else {
            train.push(item)
        }
    }
    Ok((train, valid))
}

/// The order in which epoch `epoch` visits `n` training examples: a permutation drawn from
/// `(seed, epoch)` alone, so a resumed run sees the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(seed, 1 + epoch as u64).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        sftvsrl_model::word_level_tokenizer(["what is one plus two", " three"], 1).unwrap()
    }

    fn write(text: &str) -> (tempdir::Dir, std::path::PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// A temporary folder removed on drop (no extra dependency).
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir()
                    .join(format!("sftvsrl-data-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_chat_lines_and_names_bad_ones() {
        let good = r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"meta":{}}"#;
        let (_d, path) = write(&format!("{good}\n\n{good}\n"));
        let ex = read_chat_jsonl(&path).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].system.as_deref(), Some("s"));
        assert_eq!(ex[0].response, "a");

        let cases = [
            ("{not json", "key must be a string"),
            (r#"{"messages":[]}"#, "`messages` is empty"),
            (
                r#"{"messages":[{"role":"user","content":"q"}]}"#,
                "must be the assistant's",
            ),
            (
                r#"{"messages":[{"role":"robot","content":"q"},{"role":"assistant","content":"a"}]}"#,
                "unexpected role `robot`",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":"a"}]}"#,
                "no user message",
            ),
            ("", "no examples"),
        ];
        for (line, want) in cases {
            let text = if line.is_empty() {
                String::new()
            } else {
                format!("{good}\n{line}\n")
            };
            let (_d, path) = write(&text);
            let e = read_chat_jsonl(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
            if !line.is_empty() {
                assert!(e.contains("data.jsonl:2:"), "{e} names no line");
            }
        }
        let missing = read_chat_jsonl(Path::new("/nonexistent/data.jsonl")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/data.jsonl"));
    }

    #[test]
    fn images_resolve_beside_the_file_and_a_language_model_refuses_them() {
        let line = |image: &str| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"what is one plus two"}},{{"role":"assistant","content":" three"}}],"image":"{image}"}}"#
            )
        };
        let (dir, path) = write(&format!("{}\n", line("images/0.png")));
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        // Missing: the error names the field, the file and the line.
        let e = read_chat_jsonl(&path).unwrap_err().to_string();
        assert!(e.contains("data.jsonl:1:") && e.contains("`image`"), "{e}");
        assert!(e.contains("images/0.png"), "{e}");
        image::RgbImage::new(4, 3)
            .save(dir.path().join("images/0.png"))
            .unwrap();
        let examples = read_chat_jsonl(&path).unwrap();
        assert_eq!(
            examples[0].image.as_deref(),
            Some(dir.path().join("images/0.png").as_path())
        );
        let tok = tokenizer();
        let e = tokenize_all(&tok, &examples, 100, &path, None).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("data.jsonl:1:") && e.contains("`image`"), "{e}");
        assert!(e.contains("language model"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let line = r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"images":["x.png"]}"#;
        let (_d, path) = write(&format!("{line}\n"));
        let e = read_chat_jsonl(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field `images`"), "{e}");
    }

    #[test]
    fn answer_follows_prompt_and_ends_with_end_of_turn() {
        let tok = tokenizer();
        let eot = end_of_turn_ids(&tok).unwrap();
        assert_eq!(eot, vec![tok.eos_id().unwrap()]);
        let ex = ChatExample {
            system: None,
            prompt: vec![Turn {
                role: Role::User,
                text: "what is one plus two".into(),
            }],
            response: " three".into(),
            image: None,
        };
        let seq = tokenize(&tok, &ex, &eot, 100, None).unwrap();
        let prompt = tok.encode_chat(None, &ex.prompt).unwrap();
        assert_eq!(&seq.ids[..seq.prompt_len], &prompt[..]);
        assert_eq!(
            &seq.ids[seq.prompt_len..],
            &[tok.token_id(" three").unwrap(), eot[0]]
        );
        let too_long = tokenize(&tok, &ex, &eot, 3, None).unwrap_err();
        assert!(too_long.contains("max_len"));
    }

    /// The reference's SFT example: the prompt through the Llama-3.2-Vision template, the
    /// target `{answer}<|eot_id|>\n`; the ids transformers gives (model/tests/fixtures).
    #[test]
    fn llama32_targets_end_with_end_of_turn_and_newline() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/llama32_chat");
        let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
        let sft = &serde_json::from_str::<serde_json::Value>(&text).unwrap()["sft"];
        let ids = |key: &str| -> Vec<u32> {
            let v = sft[key].as_array().unwrap();
            v.iter().map(|i| i.as_u64().unwrap() as u32).collect()
        };
        let example = ChatExample {
            system: None,
            prompt: vec![Turn {
                role: Role::User,
                text: sft["turns"][0]["text"].as_str().unwrap().into(),
            }],
            response: sft["answer"].as_str().unwrap().into(),
            image: None,
        };
        let eot = end_of_turn_ids(&tok).unwrap();
        assert_eq!(eot.len(), 2);
        let seq = tokenize(&tok, &example, &eot, 4096, None).unwrap();
        let (prompt, target) = (ids("prompt_ids"), ids("target_ids"));
        assert_eq!(&seq.ids[..seq.prompt_len], &prompt[..]);
        assert_eq!(&seq.ids[seq.prompt_len..], &target[..]);
    }

    #[test]
    fn split_and_order_are_seeded() {
        let (train, valid) = split((0..100).collect::<Vec<_>>(), 0.1, 7).unwrap();
        assert_eq!((train.len(), valid.len()), (90, 10));
        assert_eq!(
            split((0..100).collect::<Vec<_>>(), 0.1, 7).unwrap().1,
            valid
        );
        assert_ne!(
            split((0..100).collect::<Vec<_>>(), 0.1, 8).unwrap().1,
            valid
        );
        let mut order = epoch_order(50, 3, 1);
        assert_eq!(order, epoch_order(50, 3, 1));
        assert_ne!(order, epoch_order(50, 3, 2));
        order.sort();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    /// One example cannot be both trained on and validated on: an error naming the field
    /// (the clamp of the split panicked before); without a validation split it trains.
    #[test]
    fn too_few_examples_for_the_split_are_an_error() {
        let e = split(vec![0], 0.05, 0).unwrap_err();
        assert!(
            e.contains("`data.valid_fraction`") && e.contains("1 example"),
            "{e}"
        );
        assert_eq!(split(vec![0], 0.0, 0).unwrap(), (vec![0], vec![]));
        assert!(split(Vec::<u8>::new(), 0.0, 0).is_err());
        assert_eq!(split(vec![0, 1], 0.05, 0).unwrap().0.len(), 1);
    }
}
