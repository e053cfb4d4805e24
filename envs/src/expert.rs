//! Expert SFT data: prompt → response pairs (and images for vision tasks) written as chat JSONL.
//!
//! One line per example: `{"messages": [{"role": "user", "content": …}, {"role": "assistant",
//! "content": …}], "image": "images/000000.png"?, "meta": {…}}`. Image paths are relative to the
//! JSONL file's folder. The same layout carries any chat data a user brings.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Serialize;
use serde_json::Value;

use crate::env::{Role, Turn};

/// One expert example.
#[derive(Clone, Debug)]
pub struct ExpertExample {
    pub prompt: String,
    /// Turns between the prompt and the response (failed attempts and their feedback, in the
    /// sequential-revision format); empty for a first-attempt example.
    pub history: Vec<Turn>,
    pub response: String,
    pub image: Option<RgbImage>,
    /// Anything worth keeping beside the example (cards, solution, route id …).
    pub meta: Value,
}

/// `response` (a JSON-like answer) with `"key": "value"` as its first field, in the answer's own
/// layout: on a line of its own when the answer puts each field on one (the reference layout),
/// else on the same line (the compact one). An answer without `{` is returned unchanged.
pub fn with_first_field(response: &str, key: &str, value: &str) -> String {
    let Some(open) = response.find('{') else {
        return response.to_string();
    };
    let (head, rest) = response.split_at(open + 1);
    match rest.strip_prefix('\n') {
        Some(_) => format!("{head}\n  \"{key}\": \"{value}\",{rest}"),
        None => format!("{head}\"{key}\": \"{value}\", {rest}"),
    }
}

#[derive(Serialize)]
struct Record<'a> {
    messages: Vec<Turn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    meta: &'a Value,
}

/// Writes `examples` to `out/data.jsonl` (and `out/images/NNNNNN.png`), returning the JSONL path
/// and the number of examples. The file is written under a temporary name and renamed, so a
/// crash never leaves a half-written data set behind.
pub fn write_jsonl(
    examples: impl IntoIterator<Item = ExpertExample>,
    out: &Path,
) -> std::io::Result<(PathBuf, usize)> {
    fs::create_dir_all(out)?;
    let path = out.join("data.jsonl");
    let tmp = out.join("data.jsonl.partial");
    let mut w = BufWriter::new(fs::File::create(&tmp)?);
    let mut n = 0;
    for ex in examples {
        let image_rel = match &ex.image {
            Some(img) => {
                fs::create_dir_all(out.join("images"))?;
                let rel = format!("images/{n:06}.png");
                img.save(out.join(&rel)).map_err(std::io::Error::other)?;
                Some(rel)
            }
            None => None,
        };
        let prompt = Turn {
            role: Role::User,
            text: ex.prompt,
        };
        let response = Turn {
            role: Role::Assistant,
            text: ex.response,
        };
        let messages = std::iter::once(prompt)
            .chain(ex.history)
            .chain([response])
            .collect();
        let record = Record {
            messages,
            image: image_rel.as_deref(),
            meta: &ex.meta,
        };
        serde_json::to_writer(&mut w, &record)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok((path, n))
}
