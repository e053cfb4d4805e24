//! Reading answer fields out of model output, exactly as the reference's `re_match` does
//! (LeslieTrue/SFTvsRL: utils_general.py; paper-spec §1.8).
//!
//! 1. `json.loads(text)[key]` (see [`crate::pyjson`]);
//! 2. on any failure, the first match of the key's pattern, group 1 — `"formula": "(.*?)"` style
//!    for text fields, `"cards": \[([^\]]+)\]` style for lists — matched here by hand, with the
//!    same leftmost-match semantics, so no regular-expression engine sits on the hot path;
//! 3. for keys containing `cards`, a group that Python's `int()` accepts item by item after
//!    splitting on `", "` becomes a list of integers, and anything else becomes `[group]`;
//! 4. no match gives the string `"None"`.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use crate::pyjson::{self, JsonValue, NonStr};

/// The answer fields the environments read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Formula,
    Cards,
    Number,
    Action,
    CurrentObservation,
    CurrentInstruction,
}

impl Key {
    /// The JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Key::Formula => "formula",
            Key::Cards => "cards",
            Key::Number => "number",
            Key::Action => "action",
            Key::CurrentObservation => "current observation",
            Key::CurrentInstruction => "current instruction",
        }
    }

    fn is_list(self) -> bool {
        matches!(self, Key::Cards | Key::Number)
    }

    /// What precedes the value in the key's pattern: `"formula": "` or `"cards": [`.
    fn opening(self) -> &'static str {
        match self {
            Key::Formula => "\"formula\": \"",
            Key::Cards => "\"cards\": [",
            Key::Number => "\"number\": [",
            Key::Action => "\"action\": \"",
            Key::CurrentObservation => "\"current observation\": \"",
            Key::CurrentInstruction => "\"current instruction\": \"",
        }
    }
}

/// What `re_match(text, key)` returned in the reference.
#[derive(Clone, Debug, PartialEq)]
pub enum Field<'a> {
    /// A string: a JSON string value, a regex group, `[group]` for a non-integer card list, or
    /// `"None"` when nothing matched.
    Str(Cow<'a, str>),
    /// A card list whose items all parsed as integers (only for the `cards` key).
    IntList,
    /// A JSON value that is not a string (number, list, object, boolean, null).
    NonString(NonStr<'a>),
}

impl Field<'_> {
    /// The string value, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's `needle in value` on what the reference's `re_match` returned: a substring test
    /// for a string, element or key equality for a list or dict (see [`NonStr::py_contains`]),
    /// and `None` where Python raises `TypeError` (a number, boolean or `None`).
    pub fn py_contains(&self, needle: &str) -> Option<bool> {
        match self {
            Field::Str(s) => Some(s.contains(needle)),
            // A list of Python ints holds no string.
            Field::IntList => Some(false),
            Field::NonString(v) => v.py_contains(needle),
        }
    }
}

/// The reference's `re_match(text, key)`.
pub fn re_match(text: &str, key: Key) -> Field<'_> {
    match pyjson::lookup(text, key.name()) {
        Some(JsonValue::Str(s)) => return Field::Str(s),
        Some(JsonValue::NonStr(v)) => return Field::NonString(v),
        None => {}
    }
    let group = if key.is_list() {
        list_group(text, key)
    } else {
        quoted_group(text, key)
    };
    match group {
        None => Field::Str(Cow::Borrowed("None")),
        Some(g) if key == Key::Cards => {
            if g.split(", ").all(|item| parse_python_int(item).is_some()) {
                Field::IntList
            } else {
                Field::Str(Cow::Owned(format!("[{g}]")))
            }
        }
        Some(g) => Field::Str(Cow::Borrowed(g)),
    }
}

/// Each occurrence of the key's opening in `text`, as the index just after it.
fn openings(text: &str, key: Key) -> impl Iterator<Item = usize> + '_ {
    let needle = key.opening();
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + text.get(from..)?.find(needle)?;
        from = at + 1;
        Some(at + needle.len())
    })
}

/// Group 1 of the leftmost match of `"<key>": "(.*?)"` (`.` does not match a newline).
fn quoted_group(text: &str, key: Key) -> Option<&str> {
    openings(text, key).find_map(|start| {
        let rest = &text[start..];
        let end = rest.find(['"', '\n'])?;
        (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
    })
}

/// Group 1 of the leftmost match of `"<key>": \[([^\]]+)\]`. The first `]` after an opening is
/// shared by every later opening before it, so it is searched for once (linear time).
fn list_group(text: &str, key: Key) -> Option<&str> {
    let mut close: Option<usize> = None;
    for start in openings(text, key) {
        let c = match close {
            Some(c) if c >= start => c,
            _ => start + text[start..].find(']')?,
        };
        close = Some(c);
        if c > start {
            return Some(&text[start..c]);
        }
    }
    None
}

/// Python's `str.isspace()` (Unicode White_Space plus the ASCII information separators).
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Whether `c` is a Unicode decimal digit (general category Nd), as Python's `\d` and `int()` see it.
fn is_decimal_digit(c: char) -> bool {
    static ND: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{Nd}$").expect("valid pattern"));
    c.is_ascii_digit()
        || (!c.is_ascii() && c.is_numeric() && ND.is_match(c.encode_utf8(&mut [0; 4])))
}

/// The value of a Unicode decimal digit. Decimal digits come in contiguous runs made of whole
/// zero-to-nine blocks, so the value is the distance from the start of the run, modulo ten.
pub fn decimal_digit_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    if !is_decimal_digit(c) {
        return None;
    }
    let mut start = c as u32;
    while let Some(prev) = start.checked_sub(1).and_then(char::from_u32) {
        if !is_decimal_digit(prev) {
            break;
        }
        start -= 1;
    }
    Some((c as u32 - start) % 10)
}

/// Python's `int(s)` for base 10, as a normalised digit string (ASCII, no leading zeros), or
/// `None` where Python raises `ValueError`: surrounding whitespace and one sign allowed,
/// underscores only between digits, Unicode decimal digits accepted, at most 4300 digits.
pub fn parse_python_int(s: &str) -> Option<(bool, String)> {
    let s = s.trim_matches(is_python_space);
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut digits = String::new();
    let mut prev_underscore = true; // no leading underscore
    for c in body.chars() {
        if c == '_' {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        let d = decimal_digit_value(c)?;
        digits.push(char::from(b'0' + d as u8));
        prev_underscore = false;
    }
    if digits.is_empty() || prev_underscore || digits.len() > 4300 {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some((
        negative,
        if trimmed.is_empty() {
            "0".to_string()
        } else {
            trimmed.to_string()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_field(s: &str) -> Field<'_> {
        Field::Str(Cow::Borrowed(s))
    }

    #[test]
    fn reference_response_format_falls_back_to_patterns() {
        let r = "{\n  \"cards\": ['A', '3', 'K', '6'],\n  \"number\": [1, 3, 13, 6],\n  \"formula\": \"(1+6)*3+13=24\",\n}";
        assert_eq!(re_match(r, Key::Formula), str_field("(1+6)*3+13=24"));
        assert_eq!(
            re_match(r, Key::Cards),
            Field::Str(Cow::Owned("['A', '3', 'K', '6']".into()))
        );
        assert_eq!(re_match(r, Key::Number), str_field("1, 3, 13, 6"));
        assert_eq!(re_match("no json at all", Key::Formula), str_field("None"));
    }

    #[test]
    fn valid_json_and_integer_lists() {
        let r = r#"{"cards": ["A", "3"], "formula": "1+2=3"}"#;
        assert_eq!(
            re_match(r, Key::Cards),
            Field::NonString(NonStr::List(r#"["A", "3"]"#))
        );
        assert_eq!(re_match(r, Key::Formula), str_field("1+2=3"));
        assert_eq!(
            re_match(r#""cards": [2, 3, 4, 5]"#, Key::Cards),
            Field::IntList
        );
        assert_eq!(
            re_match(r#""cards": [2,3,4,5]"#, Key::Cards),
            Field::Str(Cow::Owned("[2,3,4,5]".into()))
        );
        assert_eq!(
            re_match(r#""cards": [ 2, +3, 4_0, ٣]"#, Key::Cards),
            Field::IntList
        );
    }

    #[test]
    fn membership_of_fields() {
        let obs = |r: &str| re_match(r, Key::CurrentObservation).py_contains("intersection");
        assert_eq!(
            obs(r#"{"current observation": "an intersection"}"#),
            Some(true)
        );
        assert_eq!(
            obs(r#""current observation": "an intersection""#),
            Some(true)
        );
        assert_eq!(
            obs(r#"{"current observation": ["intersection"]}"#),
            Some(true)
        );
        assert_eq!(
            obs(r#"{"current observation": ["an intersection"]}"#),
            Some(false)
        );
        assert_eq!(
            obs(r#"{"current observation": {"intersection": 0}}"#),
            Some(true)
        );
        assert_eq!(obs(r#"{"current observation": 7}"#), None);
        assert_eq!(
            obs("nothing"),
            Some(false),
            "re_match gives the string 'None'"
        );
        assert_eq!(
            re_match(r#""cards": [2, 3, 4, 5]"#, Key::Cards).py_contains("2"),
            Some(false)
        );
    }

    #[test]
    fn leftmost_match_semantics() {
        // The first opening has a newline before its closing quote, so the second one matches.
        assert_eq!(
            re_match("\"formula\": \"a\nb\" \"formula\": \"c\"", Key::Formula),
            str_field("c")
        );
        assert_eq!(re_match("\"formula\": \"\"", Key::Formula), str_field(""));
        // `[^\]]+` needs one character and may span lines.
        assert_eq!(
            re_match("\"cards\": [] \"cards\": [x,\ny]", Key::Cards),
            Field::Str(Cow::Owned("[x,\ny]".into()))
        );
        assert_eq!(re_match("\"cards\": [x", Key::Cards), str_field("None"));
    }

    #[test]
    fn python_int_rules() {
        assert_eq!(parse_python_int(" 007 "), Some((false, "7".into())));
        assert_eq!(parse_python_int("-1_0"), Some((true, "10".into())));
        assert_eq!(parse_python_int("١٢"), Some((false, "12".into())));
        assert_eq!(parse_python_int("\u{1c}5"), Some((false, "5".into())));
        for bad in ["", "+", "1__0", "_1", "1_", "1.0", "A", "²", "Ⅷ", "1 2"] {
            assert_eq!(parse_python_int(bad), None, "{bad}");
        }
        assert!(parse_python_int(&"9".repeat(4300)).is_some());
        assert!(parse_python_int(&"9".repeat(4301)).is_none());
    }
}
