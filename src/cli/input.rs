//! Reading input files with errors that name the file.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// A TOML file deserialised into `T`; unknown fields and wrong types are errors naming the file
/// and the field.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| format!("line {}: ", text[..span.start].matches('\n').count() + 1))
            .unwrap_or_default();
        anyhow::anyhow!("{}: {line}{}", path.display(), e.message().trim_end())
    })
}

/// A file, or standard input for `-`, read line by line.
pub fn open_input(path: &str) -> Result<Box<dyn BufRead>> {
    if path == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    Ok(Box::new(std::io::BufReader::new(f)))
}
