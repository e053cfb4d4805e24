//! Chat templates, in Rust rather than Jinja: Llama 3, ChatML (SmolLM2, Qwen2.5) and plain
//! text for tiny from-scratch models. A checkpoint's Jinja template is only inspected to tell
//! which of these it is (and to find ChatML's default system prompt).

use regex::Regex;
use sftvsrl_envs::{Role, Turn};

/// The layout of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>`.
    Llama3,
    /// `<|im_start|>user\n…<|im_end|>\n`.
    ChatMl,
    /// Each turn's text on its own line(s), with no markers.
    Plain,
}

/// How to turn chat turns into the text a model was trained on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    pub format: ChatFormat,
    /// The system prompt used when the caller gives none (SmolLM2 and Qwen2.5 have one).
    pub default_system: Option<String>,
}

impl ChatTemplate {
    /// A template of `format` without a default system prompt.
    pub fn new(format: ChatFormat) -> Self {
        ChatTemplate {
            format,
            default_system: None,
        }
    }

    /// Recognises a checkpoint's Jinja template; without one (or an unknown one), decides by
    /// which marker tokens the vocabulary has.
    pub fn detect(jinja: Option<&str>, has_token: impl Fn(&str) -> bool) -> Self {
        let by_text = |marker: &str| jinja.is_some_and(|j| j.contains(marker));
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
                format: ChatFormat::ChatMl,
                default_system,
            };
        }
        if jinja.is_none() && has_token("<|start_header_id|>") && has_token("<|eot_id|>") {
            return ChatTemplate::new(ChatFormat::Llama3);
        }
        if jinja.is_none() && has_token("<|im_start|>") && has_token("<|im_end|>") {
            return ChatTemplate::new(ChatFormat::ChatMl);
        }
        ChatTemplate::new(ChatFormat::Plain)
    }

    /// The conversation as text; with `add_generation_prompt`, followed by the opening of an
    /// assistant turn. Encode the result without adding special tokens: the text holds them.
    pub fn render(
        &self,
        system: Option<&str>,
        turns: &[Turn],
        add_generation_prompt: bool,
    ) -> String {
        let system = system.or(self.default_system.as_deref());
        let mut out = String::new();
        match self.format {
            ChatFormat::Llama3 => {
                out.push_str("<|begin_of_text|>");
                let mut push = |role: &str, text: &str| {
                    out.push_str(&format!(
                        "<|start_header_id|>{role}<|end_header_id|>\n\n{}<|eot_id|>",
                        text.trim()
                    ));
                };
                if let Some(s) = system {
                    push("system", s);
                }
                for t in turns {
                    push(role_name(t.role), &t.text);
                }
                if add_generation_prompt {
                    out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            ChatFormat::ChatMl => {
                let mut push = |role: &str, text: &str| {
                    out.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"));
                };
                if let Some(s) = system {
                    push("system", s);
                }
                for t in turns {
                    push(role_name(t.role), &t.text);
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
            }
            ChatFormat::Plain => {
                for text in system
                    .into_iter()
                    .chain(turns.iter().map(|t| t.text.as_str()))
                {
                    out.push_str(text);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The tokens that close an assistant turn in this format (stop tokens for generation).
    pub fn end_of_turn_tokens(&self) -> &'static [&'static str] {
        match self.format {
            ChatFormat::Llama3 => &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
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
        match self.format {
            ChatFormat::Llama3 => "{{- '<|begin_of_text|>' }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}".to_string(),
            ChatFormat::ChatMl => format!("{system}{{%- for message in messages %}}{{{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}}}{{%- endfor %}}{{%- if add_generation_prompt %}}{{{{ '<|im_start|>assistant\\n' }}}}{{%- endif %}}"),
            ChatFormat::Plain => "{%- for message in messages %}{{ message['content'] + '\\n' }}{%- endfor %}".to_string(),
        }
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
        let t = ChatTemplate::detect(None, |tok| {
            tok == "<|start_header_id|>" || tok == "<|eot_id|>"
        });
        assert_eq!(t.format, ChatFormat::Llama3);
        assert_eq!(
            t.render(Some("sys"), &turns(), true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(ChatTemplate::detect(Some(&t.to_jinja()), |_| false), t);
    }

    #[test]
    fn plain_joins_lines() {
        let t = ChatTemplate::detect(None, |_| false);
        assert_eq!(t.format, ChatFormat::Plain);
        assert_eq!(t.render(None, &turns(), true), "Hi\nHello!\n2+2?\n");
        assert!(t.end_of_turn_tokens().is_empty());
    }
}
