//! Looking up one key of a JSON object exactly as Python's `json.loads(text)[key]` would.
//!
//! The reference parser tries `json.loads` first and falls back to regular expressions on any
//! exception, so what matters is (a) whether Python would accept the whole text, (b) whether the
//! top level is an object holding the key (the last duplicate wins), and (c) whether its value is a
//! string. This module validates the text with Python's grammar (NaN/Infinity accepted, no
//! trailing commas, control characters rejected in strings, ASCII-only numbers, integer literals
//! of more than 4300 digits rejected, nesting deeper than Python's recursion limit rejected) and
//! returns that one value, without building the rest of the document: a list or object comes
//! back as its source text, which [`NonStr::py_contains`] scans for Python's `in` operator.

use std::borrow::Cow;

/// Python's default recursion limit, which bounds how deeply `json.loads` can nest.
const MAX_DEPTH: usize = 1000;
/// Python refuses to convert integer strings longer than this (`sys.int_info.default_max_str_digits`).
const MAX_INT_DIGITS: usize = 4300;

/// The value found under the key.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue<'a> {
    /// A JSON string, decoded.
    Str(Cow<'a, str>),
    /// Any other JSON value.
    NonStr(NonStr<'a>),
}

/// A JSON value that is not a string. Lists and objects keep their source text (already
/// validated), so nothing is built unless [`NonStr::py_contains`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonStr<'a> {
    /// A list, from its `[` to its `]`.
    List(&'a str),
    /// An object, from its `{` to its `}`.
    Object(&'a str),
    /// A number (NaN and ±Infinity included), boolean or null.
    Scalar,
}

impl NonStr<'_> {
    /// Python's `needle in value` for the value `json.loads` made: a list contains `needle` iff
    /// some element is exactly that string (no substring search, no recursion into nested
    /// values), a dict iff it has exactly that key. `None` where Python raises `TypeError`
    /// (`in` on a number, boolean or `None`).
    pub fn py_contains(&self, needle: &str) -> Option<bool> {
        let (text, is_list) = match *self {
            NonStr::List(t) => (t, true),
            NonStr::Object(t) => (t, false),
            NonStr::Scalar => return None,
        };
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        // `lookup` validated this text, so the scan cannot fail.
        let found = if is_list {
            p.array(0, Some(needle))
        } else {
            p.object(0, Some(needle)).map(|v| v.is_some())
        };
        Some(found.unwrap_or(false))
    }
}

/// `Some(value)` when Python's `json.loads(text)[key]` would succeed, `None` when it would raise.
pub fn lookup<'a>(text: &'a str, key: &str) -> Option<JsonValue<'a>> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        // Any other top-level value either fails to parse or is not subscriptable by a str key.
        return None;
    }
    let found = p.object(0, Some(key)).ok()?;
    p.ws();
    if p.i != p.s.len() {
        return None; // "Extra data"
    }
    found
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

type Res<T> = Result<T, ()>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Res<()> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    fn literal(&mut self, word: &str) -> Res<()> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    /// Parses an object; with `key`, returns the last value stored under it.
    fn object(&mut self, depth: usize, key: Option<&str>) -> Res<Option<JsonValue<'a>>> {
        if depth >= MAX_DEPTH {
            return Err(());
        }
        self.eat(b'{')?;
        self.ws();
        let mut found = None;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(found);
        }
        loop {
            self.ws();
            let k = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let wanted = key.is_some_and(|want| k == want);
            if wanted && self.peek() == Some(b'"') {
                found = Some(JsonValue::Str(self.string()?));
            } else {
                let start = self.i;
                self.value(depth + 1)?;
                if wanted {
                    let raw = &self.text[start..self.i];
                    found = Some(JsonValue::NonStr(match self.s[start] {
                        b'[' => NonStr::List(raw),
                        b'{' => NonStr::Object(raw),
                        _ => NonStr::Scalar,
                    }));
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(found);
                }
                _ => return Err(()),
            }
        }
    }

    /// Parses a list; with `needle`, tells whether some element is exactly that string.
    fn array(&mut self, depth: usize, needle: Option<&str>) -> Res<bool> {
        if depth >= MAX_DEPTH {
            return Err(());
        }
        self.eat(b'[')?;
        self.ws();
        let mut found = false;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(found);
        }
        loop {
            self.ws();
            match needle {
                Some(want) if self.peek() == Some(b'"') => found |= self.string()? == want,
                _ => self.value(depth + 1)?,
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(found);
                }
                _ => return Err(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Res<()> {
        match self.peek().ok_or(())? {
            b'{' => self.object(depth, None).map(drop),
            b'[' => self.array(depth, None).map(drop),
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'N' => self.literal("NaN"),
            b'I' => self.literal("Infinity"),
            b'-' if self.s[self.i..].starts_with(b"-Infinity") => self.literal("-Infinity"),
            _ => self.number(),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Res<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.i += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(()),
        };
        let mut is_int = true;
        // A fraction or exponent is only taken when complete, as Python's scanner does; a dangling
        // `.` or `e` is then left for the caller to reject.
        if self.peek() == Some(b'.') && self.s.get(self.i + 1).is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
            self.digits();
            is_int = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                self.i = save;
            } else {
                is_int = false;
            }
        }
        if is_int && int_digits > MAX_INT_DIGITS {
            return Err(());
        }
        Ok(())
    }

    /// Parses a string, borrowing it when it has no escapes.
    fn string(&mut self) -> Res<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        // Fast path: no escapes.
        loop {
            match self.peek().ok_or(())? {
                b'"' => {
                    let out = &self.text[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(out));
                }
                b'\\' => break,
                b if b < 0x20 => return Err(()),
                _ => self.i += 1,
            }
        }
        let mut out = String::from(&self.text[start..self.i]);
        loop {
            match self.peek().ok_or(())? {
                b'"' => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    self.i += 1;
                    let esc = self.peek().ok_or(())?;
                    self.i += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(()),
                    }
                }
                b if b < 0x20 => return Err(()),
                _ => {
                    // Copy one whole UTF-8 character.
                    let ch = self.text[self.i..].chars().next().ok_or(())?;
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Res<u32> {
        let h = self.s.get(self.i..self.i + 4).ok_or(())?;
        let h = std::str::from_utf8(h).map_err(drop)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(drop)
    }

    /// The character of a `\uXXXX` escape (after the `u`), joining surrogate pairs. Python keeps
    /// lone surrogates in its strings; Rust cannot, so they become U+FFFD (which, like a lone
    /// surrogate, is no digit, operator or card name).
    fn unicode_escape(&mut self) -> Res<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(c).ok_or(());
            }
            self.i = save;
        }
        Ok(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<JsonValue<'_>> {
        Some(JsonValue::Str(Cow::Borrowed(v)))
    }

    #[test]
    fn finds_string_values_and_last_duplicate() {
        assert_eq!(lookup(r#"{"formula": "1+2"}"#, "formula"), s("1+2"));
        assert_eq!(
            lookup(r#" {"formula": "a", "formula": "b"} "#, "formula"),
            s("b")
        );
        assert_eq!(
            lookup(r#"{"formula": 24}"#, "formula"),
            Some(JsonValue::NonStr(NonStr::Scalar))
        );
        assert_eq!(
            lookup(r#"{"cards": ["A", 3] }"#, "cards"),
            Some(JsonValue::NonStr(NonStr::List(r#"["A", 3]"#)))
        );
        assert_eq!(
            lookup(r#"{"o": {"a": [1]}, "p": 1}"#, "o"),
            Some(JsonValue::NonStr(NonStr::Object(r#"{"a": [1]}"#)))
        );
        assert_eq!(
            lookup(r#"{"x": "\u0031\n"}"#, "x"),
            Some(JsonValue::Str(Cow::Owned("1\n".into())))
        );
        assert_eq!(
            lookup(r#"{"x": "\ud83d\ude00"}"#, "x"),
            Some(JsonValue::Str(Cow::Owned("😀".into())))
        );
    }

    /// `needle in json.loads(text)["o"]`.
    fn contains(text: &str, needle: &str) -> Option<bool> {
        match lookup(text, "o") {
            Some(JsonValue::NonStr(v)) => v.py_contains(needle),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn membership_follows_python_in() {
        let i = "intersection";
        // Lists: an element equal to the string, after decoding escapes.
        assert_eq!(contains(r#"{"o": ["intersection"]}"#, i), Some(true));
        assert_eq!(
            contains(r#"{"o": [1, null, "x", "inters\u0065ction"]}"#, i),
            Some(true)
        );
        assert_eq!(contains(r#"{"o": []}"#, i), Some(false));
        assert_eq!(contains(r#"{"o": ["big intersection"]}"#, i), Some(false));
        assert_eq!(
            contains(r#"{"o": ["Intersection", "intersection "]}"#, i),
            Some(false)
        );
        // No recursion into nested lists or objects, and dict values are not searched.
        assert_eq!(
            contains(r#"{"o": [["intersection"], {"intersection": 1}]}"#, i),
            Some(false)
        );
        // Objects: a key equal to the string (the last duplicate of `o` wins).
        assert_eq!(contains(r#"{"o": {"intersection": null}}"#, i), Some(true));
        assert_eq!(contains(r#"{"o": {"a": "intersection"}}"#, i), Some(false));
        assert_eq!(contains(r#"{"o": {}}"#, i), Some(false));
        assert_eq!(
            contains(r#"{"o": ["intersection"], "o": ["no"]}"#, i),
            Some(false)
        );
        // Numbers, booleans and null raise TypeError.
        for scalar in ["3", "-1.5e3", "NaN", "true", "null"] {
            assert_eq!(
                contains(&format!(r#"{{"o": {scalar}}}"#), i),
                None,
                "{scalar}"
            );
        }
    }

    #[test]
    fn accepts_what_python_accepts() {
        assert!(
            lookup(
                r#"{"formula": "x", "n": NaN, "m": -Infinity, "k": [1e5, -0.5, true, null]}"#,
                "formula"
            )
            .is_some()
        );
        assert_eq!(
            lookup(r#"{"a": 1}"#, "formula"),
            None,
            "missing key raises KeyError"
        );
    }

    #[test]
    fn rejects_what_python_rejects() {
        for bad in [
            r#"{"formula": "x",}"#,           // trailing comma in an object
            r#"{"formula": "x", "c": [1,]}"#, // trailing comma in a list
            "{\"formula\": \"a\tb\"}",        // raw control character
            r#"{"formula": "x"} extra"#,      // extra data
            r#"{"formula": 'x'}"#,            // single quotes
            r#"{"formula": "x", "n": 01}"#,   // leading zero
            r#"{"formula": "x", "n": 1.}"#,   // dangling point
            r#"{"formula": "\x"}"#,           // bad escape
            r#"["formula"]"#,                 // not an object
            "\u{feff}{\"formula\": \"x\"}",   // byte-order mark
        ] {
            assert_eq!(lookup(bad, "formula"), None, "{bad}");
        }
        let deep = format!(
            "{{\"formula\": \"x\", \"d\": {}{}}}",
            "[".repeat(2000),
            "]".repeat(2000)
        );
        assert_eq!(lookup(&deep, "formula"), None);
        let long_int = format!("{{\"formula\": \"x\", \"n\": {}}}", "9".repeat(4301));
        assert_eq!(lookup(&long_int, "formula"), None);
        let long_float = format!("{{\"formula\": \"x\", \"n\": {}.5}}", "9".repeat(4301));
        assert!(lookup(&long_float, "formula").is_some());
    }
}
