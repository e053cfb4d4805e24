//! Text <-> token ids through the Hugging Face `tokenizers` crate, together with the special
//! tokens and chat template a model was trained with.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sftvsrl_envs::Turn;

use sftvsrl_envs::Role;

use crate::chat_template::{ChatPiece, ChatTemplate};
use crate::error::{ModelError, read_json};

/// A tokenizer with its beginning/end-of-sequence tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer with special-token strings read as plain text: how turn contents are
    /// encoded, so that text spelling `<|im_end|>` never becomes a control id.
    text_only: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    chat_template: ChatTemplate,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("chat_template", &self.chat_template)
            .finish()
    }
}

/// What a chat turn holds when it is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnContent<'a> {
    /// Text, encoded with special-token strings read as text.
    Text(&'a str),
    /// Token ids, used as they are.
    Ids(&'a [u32]),
}

/// A special token of `tokenizer_config.json` (at `path`): a string or `{"content": ...}`, or
/// none when the key is absent or null.
fn special_token(
    config: Option<&Value>,
    key: &str,
    path: &Path,
) -> Result<Option<String>, ModelError> {
    let Some(v) = config.and_then(|c| c.get(key)).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    v.as_str()
        .or_else(|| v.get("content").and_then(Value::as_str))
        .map(|t| Some(t.to_string()))
        .ok_or_else(|| ModelError::config(path, key, "expected a string or {\"content\": string}"))
}

/// The `tokenizers` tokenizer of a `tokenizer.json` value (from `origin`), checked first.
fn inner_from_json(json: &Value, origin: &Path) -> Result<tokenizers::Tokenizer, ModelError> {
    check_model_json(json, origin)?;
    tokenizers::Tokenizer::from_bytes(json.to_string()).map_err(|e| ModelError::Tokenizer {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })
}

/// Checks what the `tokenizers` crate takes on trust in a `tokenizer.json` (at `path`): the
/// model's unknown-token is in its vocabulary (else the first unknown word fails), an added
/// token already in the vocabulary has the vocabulary's id (else the file's id is ignored), and
/// each BPE merge's second part starts with the `continuing_subword_prefix` (else the crate
/// slices past its end and panics).
fn check_model_json(json: &Value, path: &Path) -> Result<(), ModelError> {
    let bad = |field: String, m: String| Err(ModelError::config(path, &field, m));
    let model = &json["model"];
    let vocab = model["vocab"].as_object();
    if let (Some(unk), Some(vocab)) = (model["unk_token"].as_str(), vocab)
        && !vocab.contains_key(unk)
    {
        return bad(
            "model.unk_token".into(),
            format!("`{unk}` is not in model.vocab"),
        );
    }
    for (i, token) in json["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (Some(content), Some(id)) = (token["content"].as_str(), token["id"].as_u64()) else {
            continue; // the crate itself refuses entries of the wrong shape
        };
        if let Some(known) = vocab.and_then(|v| v.get(content)).and_then(Value::as_u64)
            && known != id
        {
            return bad(
                format!("added_tokens[{i}].id"),
                format!("{id}, but model.vocab gives `{content}` the id {known}"),
            );
        }
    }
    if let Some(prefix) = model["continuing_subword_prefix"].as_str() {
        for (i, merge) in model["merges"].as_array().into_iter().flatten().enumerate() {
            let second = match merge {
                Value::String(m) => m.split_once(' ').map(|(_, b)| b),
                Value::Array(pair) => pair.get(1).and_then(Value::as_str),
                _ => None,
            };
            if let Some(b) = second
                && !b.starts_with(prefix)
            {
                return bad(
                    format!("model.merges[{i}]"),
                    format!("`{b}` does not start with the continuing_subword_prefix `{prefix}`"),
                );
            }
        }
    }
    Ok(())
}

/// The Jinja chat template of `tokenizer_config.json` (at `path`): a string, or the template
/// named `default` of a list of named templates; none when absent or null.
fn config_chat_template(config: &Value, path: &Path) -> Result<Option<String>, ModelError> {
    let bad = |m: &str| ModelError::config(path, "chat_template", m);
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match (t.get("name"), t.get("template")) {
                (Some(Value::String(name)), Some(Value::String(template))) => {
                    Ok((name.as_str(), template))
                }
                _ => Err(bad(
                    "a listed template is not {\"name\": string, \"template\": string}",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|named| {
                named
                    .into_iter()
                    .find(|(name, _)| *name == "default")
                    .map(|(_, template)| template.clone())
            }),
        Some(_) => Err(bad("expected a string or a list of named templates")),
    }
}

impl Tokenizer {
    /// Wraps a `tokenizers` tokenizer (`origin` names it in errors).
    pub fn new(
        inner: tokenizers::Tokenizer,
        bos_token: Option<String>,
        eos_token: Option<String>,
        chat_template: ChatTemplate,
        origin: &Path,
    ) -> Result<Self, ModelError> {
        for token in bos_token.iter().chain(&eos_token) {
            if inner.token_to_id(token).is_none() {
                return Err(ModelError::Tokenizer {
                    path: origin.to_path_buf(),
                    message: format!("special token `{token}` is not in the vocabulary"),
                });
            }
        }
        let mut text_only = inner.clone();
        text_only.set_encode_special_tokens(true);
        Ok(Tokenizer {
            inner,
            text_only,
            bos_token,
            eos_token,
            chat_template,
        })
    }

    /// Builds a tokenizer from the JSON of a `tokenizer.json`.
    pub fn from_json(
        json: &Value,
        bos_token: Option<String>,
        eos_token: Option<String>,
        chat_template: Option<ChatTemplate>,
        origin: &Path,
    ) -> Result<Self, ModelError> {
        let inner = inner_from_json(json, origin)?;
        let chat_template = chat_template
            .unwrap_or_else(|| ChatTemplate::detect(None, |t| inner.token_to_id(t).is_some()));
        Self::new(inner, bos_token, eos_token, chat_template, origin)
    }

    /// Loads `tokenizer.json`, with the special tokens and chat template of the
    /// `tokenizer_config.json` (and `chat_template.jinja`) beside it when present.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "a Hugging Face tokenizer.json",
            });
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.exists() {
            Some(read_json(&config_path)?)
        } else {
            None
        };
        let jinja_path = dir.join("chat_template.jinja");
        let jinja = if jinja_path.exists() {
            Some(std::fs::read_to_string(&jinja_path).map_err(|e| ModelError::io(&jinja_path, e))?)
        } else {
            match &config {
                Some(c) => config_chat_template(c, &config_path)?,
                None => None,
            }
        };
        // Parsed here first: the `tokenizers` crate panics on some malformed JSON.
        let inner = inner_from_json(&read_json(path)?, path)?;
        let chat_template =
            ChatTemplate::detect(jinja.as_deref(), |t| inner.token_to_id(t).is_some());
        let bos = special_token(config.as_ref(), "bos_token", &config_path)?;
        let eos = special_token(config.as_ref(), "eos_token", &config_path)?;
        Self::new(inner, bos, eos, chat_template, path)
    }

    /// Writes `tokenizer.json` and a `tokenizer_config.json` (special tokens, chat template as
    /// Jinja) into `dir`; returns the paths written.
    pub fn save(&self, dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
        let json_path = dir.join("tokenizer.json");
        let text = self
            .inner
            .to_string(true)
            .map_err(|e| ModelError::Tokenizer {
                path: json_path.clone(),
                message: e.to_string(),
            })?;
        crate::export::write_atomic(&json_path, text.as_bytes())?;
        let config = json!({
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "chat_template": self.chat_template.to_jinja(),
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": false,
        });
        let config_path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&config).expect("JSON value serialises");
        crate::export::write_atomic(&config_path, text.as_bytes())?;
        Ok(vec![json_path, config_path])
    }

    /// The token ids of `text`; `add_special_tokens` applies the tokenizer's post-processor
    /// (e.g. a leading BOS). Chat-rendered text already holds its special tokens: pass false.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, ModelError> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenize(e.to_string()))
    }

    /// The ids of `text` with every special-token string in it read as plain text (turn
    /// contents: prompts, feedback, expert answers).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.text_only
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenize(e.to_string()))
    }

    /// The prompt ids of a conversation, ending with the opening of the assistant's turn. Turn
    /// texts are encoded as text: special-token strings inside them stay text.
    pub fn encode_chat(
        &self,
        system: Option<&str>,
        turns: &[Turn],
    ) -> Result<Vec<u32>, ModelError> {
        let turns: Vec<(Role, TurnContent)> = turns
            .iter()
            .map(|t| (t.role, TurnContent::Text(&t.text)))
            .collect();
        self.encode_conversation(system, &turns)
    }

    /// [`Tokenizer::encode_chat`] for turns that may hold token ids (a model's sampled replies,
    /// kept exactly as sampled, without their stop token: the template closes the turn).
    pub fn encode_conversation(
        &self,
        system: Option<&str>,
        turns: &[(Role, TurnContent<'_>)],
    ) -> Result<Vec<u32>, ModelError> {
        let roles: Vec<Role> = turns.iter().map(|t| t.0).collect();
        let template = &self.chat_template;
        let mut ids = Vec::new();
        let mut text = String::new();
        for piece in template.pieces(system, &roles, true) {
            match piece {
                ChatPiece::Text(s) => text.push_str(&s),
                ChatPiece::Turn(i) => match turns[i].1 {
                    TurnContent::Text(t) if template.trims_turns() => text.push_str(t.trim()),
                    TurnContent::Text(t) => text.push_str(t),
                    TurnContent::Ids(turn_ids) => {
                        ids.extend(self.encode_text(&std::mem::take(&mut text))?);
                        ids.extend_from_slice(turn_ids);
                    }
                },
                ChatPiece::Special(token) => {
                    ids.extend(self.encode_text(&std::mem::take(&mut text))?);
                    ids.push(self.token_id(token).ok_or_else(|| {
                        ModelError::Tokenize(format!(
                            "the chat template needs `{token}`, which is not in the vocabulary"
                        ))
                    })?);
                }
            }
        }
        ids.extend(self.encode_text(&text)?);
        Ok(ids)
    }

    /// The text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, ModelError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| ModelError::Tokenize(e.to_string()))
    }

    /// The number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One more than the largest token id (added tokens included): the embedding rows a model
    /// needs for this tokenizer. Ids may leave holes, so this can exceed [`Self::vocab_size`].
    pub fn id_bound(&self) -> u64 {
        self.inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| u64::from(id) + 1)
    }

    /// Adds `token` as a special token (kept whole by the encoder, dropped when decoding with
    /// `skip_special_tokens`) and returns its id; an existing token keeps its id.
    pub fn add_special_token(&mut self, token: &str) -> u32 {
        let added = [tokenizers::AddedToken::from(token.to_string(), true)];
        self.inner.add_special_tokens(&added);
        self.text_only.add_special_tokens(&added);
        self.inner
            .token_to_id(token)
            .expect("a token just added has an id")
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The beginning-of-sequence token id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_id(t))
    }

    /// The end-of-sequence token id.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_id(t))
    }

    /// The tokens that end a generated answer: EOS and the chat format's end-of-turn tokens.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_id().into_iter().collect();
        for t in self.chat_template.end_of_turn_tokens() {
            if let Some(id) = self.token_id(t)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// How conversations are rendered for this model.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat_template
    }

    /// Sets the `Today Date` of the chat template's system turn (Llama 3.1 and later); an
    /// error for templates without one or a date that is not plain text.
    pub fn set_chat_date(&mut self, date: &str) -> Result<(), ModelError> {
        self.chat_template
            .set_date(date)
            .map_err(ModelError::Tokenize)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::ChatFormat;
    use crate::word_level::word_level_tokenizer;

    /// A word-level tokenizer with ChatML's markers as special tokens.
    fn chatml() -> Tokenizer {
        let words = [
            "user",
            "assistant",
            "hello",
            " hello",
            "world",
            " world",
            "im",
            "end",
        ];
        let mut tok = word_level_tokenizer(words, 1).expect("tokenizer");
        tok.add_special_token("<|im_start|>");
        tok.add_special_token("<|im_end|>");
        tok.chat_template = ChatTemplate::new(ChatFormat::ChatMl);
        tok
    }

    fn user(text: &str) -> Turn {
        Turn {
            role: Role::User,
            text: text.into(),
        }
    }

    #[test]
    fn special_token_strings_inside_turns_stay_text() {
        let tok = chatml();
        let end = tok.token_id("<|im_end|>").unwrap();
        let turns = [user("hello <|im_end|> world")];
        let ids = tok.encode_chat(None, &turns).unwrap();
        // Only the template's own marker closes the turn; the spelled one is text.
        assert_eq!(ids.iter().filter(|&&i| i == end).count(), 1);
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            tok.chat_template().render(None, &turns, true)
        );
        // The plain encoder would have made a control id of it.
        let plain = tok.encode(&tok.chat_template().render(None, &turns, true), false);
        assert_eq!(plain.unwrap().iter().filter(|&&i| i == end).count(), 2);
    }

    #[test]
    fn sampled_ids_are_kept_as_sampled() {
        let tok = chatml();
        let end = tok.token_id("<|im_end|>").unwrap();
        // A reply whose ids spell the marker as text: no turn boundary may appear inside it.
        let reply = tok.encode_text("world <|im_end|>").unwrap();
        assert!(!reply.contains(&end));
        let turns = [
            (Role::User, TurnContent::Text("hello")),
            (Role::Assistant, TurnContent::Ids(&reply)),
            (Role::User, TurnContent::Text("world")),
        ];
        let ids = tok.encode_conversation(None, &turns).unwrap();
        let at = ids
            .windows(reply.len())
            .position(|w| w == reply.as_slice())
            .expect("the reply's ids appear unchanged");
        assert_eq!(ids[at + reply.len()], end, "the template closes the turn");
        assert_eq!(ids.iter().filter(|&&i| i == end).count(), 3);
        // Text turns give the same ids as encode_chat.
        let text_turns = [user("hello")];
        assert_eq!(
            tok.encode_conversation(None, &[(Role::User, TurnContent::Text("hello"))])
                .unwrap(),
            tok.encode_chat(None, &text_turns).unwrap()
        );
    }
}
