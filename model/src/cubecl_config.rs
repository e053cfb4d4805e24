//! The user's CubeCL settings file (`cubecl.toml`, or a `[cubecl]` table in `burn.toml`),
//! found and parsed as CubeCL itself would, before CubeCL reads it: CubeCL panics on a file it
//! cannot parse, at the start-up of every GPU build; here it is an error naming the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::ModelError;

/// The settings file CubeCL would read from `start`: in each folder from `start` up to the
/// root, the first of `files` that can be read (the whole file is the settings), then the first
/// of `section_files` holding its table (e.g. `("burn.toml", "cubecl")`). `None` when there is
/// none. Errors, naming the file and the line, if that file is not valid TOML or its settings
/// do not parse as `T` (CubeCL's config type on GPU builds).
pub fn find_settings_file<T: DeserializeOwned>(
    start: &Path,
    files: &[&str],
    section_files: &[(&str, &str)],
) -> Result<Option<PathBuf>, ModelError> {
    let mut dir = start.to_path_buf();
    loop {
        for name in files {
            let path = dir.join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                toml::from_str::<T>(&text).map_err(|e| invalid(&path, &text, &e))?;
                return Ok(Some(path));
            }
        }
        for (name, section) in section_files {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut table: toml::Table =
                toml::from_str(&text).map_err(|e| invalid(&path, &text, &e))?;
            if let Some(value) = table.remove(*section) {
                value.try_into::<T>().map_err(|e| ModelError::Settings {
                    path: path.clone(),
                    message: format!("table `[{section}]`: {}", e.message()),
                })?;
                return Ok(Some(path));
            }
        }
        if !dir.pop() {
            return Ok(None);
        }
    }
}

/// The parse error `e` of `text` (read from `path`), with its line.
fn invalid(path: &Path, text: &str, e: &toml::de::Error) -> ModelError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let at = line.map_or(String::new(), |l| format!("line {l}: "));
    ModelError::Settings {
        path: path.to_path_buf(),
        message: format!("{at}{}", e.message().trim_end().replace('\n', "; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for CubeCL's config type (only in GPU builds).
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // parsed, never read
    struct Settings {
        #[serde(default)]
        level: u32,
    }

    const FILES: &[&str] = &["cubecl.toml"];
    const SECTIONS: &[(&str, &str)] = &[("burn.toml", "cubecl")];

    fn find(dir: &Path) -> Result<Option<PathBuf>, String> {
        find_settings_file::<Settings>(dir, FILES, SECTIONS).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_files_are_errors_naming_the_file_and_line() {
        let root = std::env::temp_dir().join(format!("sftvsrl-cubecl-{}", std::process::id()));
        let inner = root.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        // Nothing inside `root` yet (a file above the temp dir would be found: not ours).
        let outside = find(&inner).unwrap();
        assert!(
            outside.as_ref().is_none_or(|p| !p.starts_with(&root)),
            "{outside:?}"
        );

        let burn = root.join("burn.toml");
        std::fs::write(&burn, "[other]\nx = 1\n").unwrap();
        // A burn.toml without the table is not CubeCL's.
        let none = find(&inner).unwrap();
        assert!(
            none.as_ref().is_none_or(|p| !p.starts_with(&root)),
            "{none:?}"
        );
        std::fs::write(&burn, "[cubecl]\nlevel = \"high\"\n").unwrap();
        let e = find(&inner).unwrap_err();
        assert!(e.starts_with(&format!("{}: ", burn.display())), "{e}");
        assert!(e.contains("[cubecl]") && e.lines().count() == 1, "{e}");

        // A file nearer the start is found first; a syntax error names its line.
        let cubecl = root.join("a/cubecl.toml");
        std::fs::write(&cubecl, "level = 1\n[broken\n").unwrap();
        let e = find(&inner).unwrap_err();
        assert!(
            e.starts_with(&format!("{}: line 2", cubecl.display())),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        std::fs::write(&cubecl, "levle = 1\n").unwrap();
        let e = find(&inner).unwrap_err();
        assert!(e.contains("levle"), "{e}");
        std::fs::write(&cubecl, "level = 1\n").unwrap();
        assert_eq!(find(&inner).unwrap(), Some(cubecl));
        let _ = std::fs::remove_dir_all(&root);
    }
}
