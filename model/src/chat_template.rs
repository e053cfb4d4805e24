//! Chat templates, in Rust rather than Jinja: Llama 3 (the 3.0 layout, and the dated layout of
//! Llama 3.1 and later as the reference renders it), ChatML (SmolLM2, Qwen2.5) and plain text
//! for tiny from-scratch models. A checkpoint's Jinja template is only inspected to tell which
//! of these it is (and to find ChatML's default system prompt and Llama's system-turn date).

use regex::Regex;
use sftvsrl_envs::{Role, Turn};

/// The knowledge cutoff the system turn of Llama 3.1 and later templates states.
pub const LLAMA_KNOWLEDGE_CUTOFF: &str = "December 2023";

/// The `Today Date` of [`ChatFormat::Llama32Vision`]'s system turn unless a run or checkpoint
/// sets another: the date Llama 3.1+ templates fall back to without `strftime_now`.
/// transformers always provides `strftime_now`, so the reference's prompts carried the date of
/// the day each of its runs rendered them.
pub const DEFAULT_CHAT_DATE: &str = "26 Jul 2024";

/// The layout of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// Llama 3.0: `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>`,
    /// turn texts trimmed, a system turn only when one is given.
    Llama3,
    /// Llama-3.2-Vision-Instruct's template as it renders a conversation without images, the
    /// layout the reference trains and evaluates with: every conversation opens with a system
    /// turn `Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n{system}`, and turn
    /// texts are kept as they are. (The 3.1 and 3.2 text checkpoints' own templates are the
    /// same except that they trim turn texts; checkpoints of either are rendered this way.)
    Llama32Vision,
    /// `<|im_start|>user\n…<|im_end|>\n`.
    ChatMl,
    /// Each turn's text on its own line(s), with no markers.
    Plain,
}

/// One part of a rendered conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatPiece {
    /// A special token of the format, by its text (one control id).
    Special(&'static str),
    /// Template text: role names, separators, the system prompt.
    Text(String),
    /// The content of turn `i`.
    Turn(usize),
}

/// How to turn chat turns into the text a model was trained on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    pub format: ChatFormat,
    /// The system prompt used when the caller gives none (SmolLM2 and Qwen2.5 have one).
    pub default_system: Option<String>,
    /// The `Today Date` of [`ChatFormat::Llama32Vision`]'s system turn (none for other
    /// formats).
    pub date: Option<String>,
}

impl ChatTemplate {
    /// A template of `format` without a default system prompt, dated [`DEFAULT_CHAT_DATE`]
    /// if its format carries a date.
    pub fn new(format: ChatFormat) -> Self {
        ChatTemplate {
            format,
            default_system: None,
            date: (format == ChatFormat::Llama32Vision).then(|| DEFAULT_CHAT_DATE.to_string()),
        }
    }

    /// Sets the date of the system turn; an error for formats without one, or for a date that
    /// is not plain text (letters, digits, spaces and `-,./`).
    pub fn set_date(&mut self, date: &str) -> Result<(), String> {
        if self.date.is_none() {
            return Err(format!(
                "the {} chat template has no dated system turn",
                self.format.name()
            ));
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || " -,./".contains(c);
        if date.trim().is_empty() || !date.chars().all(plain) {
            return Err(format!(
                "`{date}` is not a date such as `{DEFAULT_CHAT_DATE}` (letters, digits, spaces \
                 and -,./ only)"
            ));
        }
        self.date = Some(date.to_string());
        Ok(())
    }

    /// Recognises a checkpoint's Jinja template; without one (or an unknown one), decides by
    /// which marker tokens the vocabulary has.
    pub fn detect(jinja: Option<&str>, has_token: impl Fn(&str) -> bool) -> Self {
        let by_text = |marker: &str| jinja.is_some_and(|j| j.contains(marker));
        if by_text("<|start_header_id|>") && by_text("Cutting Knowledge Date") {
            let mut template = ChatTemplate::new(ChatFormat::Llama32Vision);
            // The literal date the template sets (Meta's fall back to one; ours fix one).
            let re = Regex::new(r#"date_string\s*=\s*["']([^"'{}]+)["']"#).expect("valid regex");
            if let Some(c) = jinja.and_then(|j| re.captures(j)) {
                template.date = Some(c[1].to_string());
            }
            return template;
        }
        if by_text("<|start_header_id|>") {
            return ChatTemplate::new(ChatFormat::Llama3);
        }
        if by_text("<|im_start|>") {
            let default_system = jinja.and_then(|j| {
                let re = Regex::new(r"<\|im_start\|>system\\?n?\s*(.+?)<\|im_end\|>")
                    .expect("valid regex");
                // The first system text that is a literal, not Jinja code.
                re.captures_iter(j)
                    .map(|c| c[1].trim().to_string())
                    .find(|s| !s.contains(['{', '\'', '+']))
            });
            return ChatTemplate {
                default_system,
                ..ChatTemplate::new(ChatFormat::ChatMl)
            };
        }
        if jinja.is_none() && has_token("<|start_header_id|>") && has_token("<|eot_id|>") {
            return ChatTemplate::new(ChatFormat::Llama32Vision);
        }
        if jinja.is_none() && has_token("<|im_start|>") && has_token("<|im_end|>") {
            return ChatTemplate::new(ChatFormat::ChatMl);
        }
        ChatTemplate::new(ChatFormat::Plain)
    }

    /// The layout of a conversation with turns of `roles`: special tokens, template text, and
    /// the places of the system prompt and each turn's content. With `add_generation_prompt`,
    /// it ends with the opening of an assistant turn.
    pub fn pieces(
        &self,
        system: Option<&str>,
        roles: &[Role],
        add_generation_prompt: bool,
    ) -> Vec<ChatPiece> {
        let system = system.or(self.default_system.as_deref());
        let mut out = Vec::new();
        match self.format {
            ChatFormat::Llama3 | ChatFormat::Llama32Vision => {
                out.push(ChatPiece::Special("<|begin_of_text|>"));
                let push = |out: &mut Vec<ChatPiece>, role: &str, content: ChatPiece| {
                    out.push(ChatPiece::Special("<|start_header_id|>"));
                    out.push(ChatPiece::Text(role.to_string()));
                    out.push(ChatPiece::Special("<|end_header_id|>"));
                    out.push(ChatPiece::Text("\n\n".into()));
                    out.push(content);
                    out.push(ChatPiece::Special("<|eot_id|>"));
                };
                let system = system.map(str::trim);
                if let Some(date) = &self.date {
                    let text = format!(
                        "Cutting Knowledge Date: {LLAMA_KNOWLEDGE_CUTOFF}\nToday Date: {date}\n\n{}",
                        system.unwrap_or("")
                    );
                    push(&mut out, "system", ChatPiece::Text(text));
                } else if let Some(s) = system {
                    push(&mut out, "system", ChatPiece::Text(s.to_string()));
                }
                for (i, &role) in roles.iter().enumerate() {
                    push(&mut out, role_name(role), ChatPiece::Turn(i));
                }
                if add_generation_prompt {
                    out.push(ChatPiece::Special("<|start_header_id|>"));
                    out.push(ChatPiece::Text("assistant".into()));
                    out.push(ChatPiece::Special("<|end_header_id|>"));
                    out.push(ChatPiece::Text("\n\n".into()));
                }
            }
            ChatFormat::ChatMl => {
                let push = |out: &mut Vec<ChatPiece>, role: &str, content: ChatPiece| {
                    out.push(ChatPiece::Special("<|im_start|>"));
                    out.push(ChatPiece::Text(format!("{role}\n")));
                    out.push(content);
                    out.push(ChatPiece::Special("<|im_end|>"));
                    out.push(ChatPiece::Text("\n".into()));
                };
                if let Some(s) = system {
                    push(&mut out, "system", ChatPiece::Text(s.to_string()));
                }
                for (i, &role) in roles.iter().enumerate() {
                    push(&mut out, role_name(role), ChatPiece::Turn(i));
                }
                if add_generation_prompt {
                    out.push(ChatPiece::Special("<|im_start|>"));
                    out.push(ChatPiece::Text("assistant\n".into()));
                }
            }
            ChatFormat::Plain => {
                if let Some(s) = system {
                    out.push(ChatPiece::Text(format!("{s}\n")));
                }
                for i in 0..roles.len() {
                    out.push(ChatPiece::Turn(i));
                    out.push(ChatPiece::Text("\n".into()));
                }
            }
        }
        out
    }

    /// Whether a turn's text is trimmed before it is rendered (Llama 3.0's template does).
    pub fn trims_turns(&self) -> bool {
        self.format == ChatFormat::Llama3
    }

    /// Text that follows the end-of-turn token of an SFT target: the reference's targets are
    /// `{answer}<|eot_id|>\n` (its `EOT_TOKEN + "\n"`) for the Llama-3.2-Vision layout.
    pub fn after_answer(&self) -> &'static str {
        match self.format {
            ChatFormat::Llama32Vision => "\n",
            _ => "",
        }
    }

    /// The conversation as text; with `add_generation_prompt`, followed by the opening of an
    /// assistant turn. Use [`crate::Tokenizer::encode_chat`] to get its ids: encoding this text
    /// would turn special-token strings inside the turns into control tokens.
    pub fn render(
        &self,
        system: Option<&str>,
        turns: &[Turn],
        add_generation_prompt: bool,
    ) -> String {
        let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
        let mut out = String::new();
        for piece in self.pieces(system, &roles, add_generation_prompt) {
            match piece {
                ChatPiece::Special(s) => out.push_str(s),
                ChatPiece::Text(s) => out.push_str(&s),
                ChatPiece::Turn(i) if self.trims_turns() => out.push_str(turns[i].text.trim()),
                ChatPiece::Turn(i) => out.push_str(&turns[i].text),
            }
        }
        out
    }

    /// The tokens that close an assistant turn in this format (stop tokens for generation).
    pub fn end_of_turn_tokens(&self) -> &'static [&'static str] {
        match self.format {
            ChatFormat::Llama3 | ChatFormat::Llama32Vision => {
                &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"]
            }
            ChatFormat::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            ChatFormat::Plain => &[],
        }
    }

    /// An equivalent Jinja template, written to `tokenizer_config.json` on export so that
    /// transformers renders conversations the same way.
    pub fn to_jinja(&self) -> String {
        let system = match &self.default_system {
            Some(s) => format!(
                "{{%- if messages[0]['role'] != 'system' %}}{{{{ '<|im_start|>system\\n{}<|im_end|>\\n' }}}}{{%- endif %}}",
                s.replace('\'', "\\'")
            ),
            None => String::new(),
        };
        let header =
            |role: &str| format!("'<|start_header_id|>' + {role} + '<|end_header_id|>\\n\\n'");
        let generation = format!(
            "{{%- if add_generation_prompt %}}{{{{- {} }}}}{{%- endif %}}",
            header("'assistant'")
        );
        match self.format {
            ChatFormat::Llama3 => format!(
                "{{{{- '<|begin_of_text|>' }}}}{{%- for message in messages %}}{{{{- {} + message['content'] | trim + '<|eot_id|>' }}}}{{%- endfor %}}{generation}",
                header("message['role']")
            ),
            ChatFormat::Llama32Vision => format!(
                "{{{{- '<|begin_of_text|>' }}}}{{%- if date_string is not defined %}}{{%- set date_string = '{date}' %}}{{%- endif %}}\
                 {{%- if messages[0]['role'] == 'system' %}}{{%- set system_message = messages[0]['content'] | trim %}}{{%- set messages = messages[1:] %}}{{%- else %}}{{%- set system_message = '' %}}{{%- endif %}}\
                 {{{{- {} + 'Cutting Knowledge Date: {LLAMA_KNOWLEDGE_CUTOFF}\\nToday Date: ' + date_string + '\\n\\n' + system_message + '<|eot_id|>' }}}}\
                 {{%- for message in messages %}}{{{{- {} + message['content'] + '<|eot_id|>' }}}}{{%- endfor %}}{generation}",
                header("'system'"),
                header("message['role']"),
                date = self.date.as_deref().unwrap_or(DEFAULT_CHAT_DATE),
            ),
            ChatFormat::ChatMl => format!(
                "{system}{{%- for message in messages %}}{{{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}}}{{%- endfor %}}{{%- if add_generation_prompt %}}{{{{ '<|im_start|>assistant\\n' }}}}{{%- endif %}}"
            ),
            ChatFormat::Plain => {
                "{%- for message in messages %}{{ message['content'] + '\\n' }}{%- endfor %}"
                    .to_string()
            }
        }
    }
}

impl ChatFormat {
    /// The format's name in logs.
    pub fn name(self) -> &'static str {
        match self {
            ChatFormat::Llama3 => "Llama 3.0",
            ChatFormat::Llama32Vision => "Llama-3.2-Vision",
            ChatFormat::ChatMl => "ChatML",
            ChatFormat::Plain => "plain",
        }
    }
}

impl std::fmt::Display for ChatTemplate {
    /// `Llama-3.2-Vision (system turn dated 26 Jul 2024)`, `ChatML`, …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.format.name())?;
        if let Some(date) = &self.date {
            write!(f, " (system turn dated {date})")?;
        }
        Ok(())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns() -> Vec<Turn> {
        vec![
            Turn {
                role: Role::User,
                text: "Hi".into(),
            },
            Turn {
                role: Role::Assistant,
                text: "Hello!".into(),
            },
            Turn {
                role: Role::User,
                text: "2+2?".into(),
            },
        ]
    }

    /// SmolLM2-135M-Instruct's own template, as stored in its GGUF file.
    const SMOLLM2_JINJA: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_with_default_system() {
        let t = ChatTemplate::detect(Some(SMOLLM2_JINJA), |_| false);
        assert_eq!(t.format, ChatFormat::ChatMl);
        assert_eq!(
            t.default_system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        let text = t.render(None, &turns()[..1], true);
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let own = t.render(Some("Be brief."), &turns()[..1], false);
        assert!(own.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
        // The exported Jinja is recognised as the same template.
        assert_eq!(ChatTemplate::detect(Some(&t.to_jinja()), |_| false), t);
    }

    #[test]
    fn llama3_layout() {
        let t = ChatTemplate::new(ChatFormat::Llama3);
        assert_eq!(t.date, None);
        assert_eq!(
            t.render(Some(" sys "), &turns(), true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let padded = [Turn {
            role: Role::User,
            text: "\nHi\n".into(),
        }];
        assert!(t.render(None, &padded, false).ends_with("\n\nHi<|eot_id|>"));
        assert_eq!(t.after_answer(), "");
        assert_eq!(ChatTemplate::detect(Some(&t.to_jinja()), |_| false), t);
    }

    /// The reference's layout (its fixture test against transformers is in
    /// tests/chat_template.rs): a dated system turn, turn texts untrimmed.
    #[test]
    fn llama32_vision_layout() {
        let mut t = ChatTemplate::detect(None, |tok| {
            tok == "<|start_header_id|>" || tok == "<|eot_id|>"
        });
        assert_eq!(t.format, ChatFormat::Llama32Vision);
        assert_eq!(t.date.as_deref(), Some(DEFAULT_CHAT_DATE));
        let padded = [Turn {
            role: Role::User,
            text: "\nHi\n".into(),
        }];
        let system = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                      Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
        assert_eq!(
            t.render(None, &padded, true),
            format!(
                "{system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\nHi\n<|eot_id|>\
                 <|start_header_id|>assistant<|end_header_id|>\n\n"
            )
        );
        assert!(
            t.render(Some(" Be brief. "), &padded, false)
                .starts_with(&format!("{system}Be brief.<|eot_id|>"))
        );
        assert_eq!(t.after_answer(), "\n");
        t.set_date("28 Jan 2025").unwrap();
        assert!(
            t.render(None, &padded, true)
                .contains("Today Date: 28 Jan 2025\n\n<|eot_id|>")
        );
        // The exported Jinja carries the date back.
        let back = ChatTemplate::detect(Some(&t.to_jinja()), |_| false);
        assert_eq!(back, t);
        assert_eq!(
            back.to_string(),
            "Llama-3.2-Vision (system turn dated 28 Jan 2025)"
        );
        for bad in ["", "26 Jul' 2024", "{{ x }}", "a\nb"] {
            assert!(t.set_date(bad).is_err(), "{bad:?}");
        }
        let e = ChatTemplate::new(ChatFormat::ChatMl)
            .set_date("1 Jan 2025")
            .unwrap_err();
        assert!(e.contains("ChatML"), "{e}");
    }

    #[test]
    fn plain_joins_lines() {
        let t = ChatTemplate::detect(None, |_| false);
        assert_eq!(t.format, ChatFormat::Plain);
        assert_eq!(t.render(None, &turns(), true), "Hi\nHello!\n2+2?\n");
        assert!(t.end_of_turn_tokens().is_empty());
    }
}
