//! Crash-safe writes. A file or folder is written under a temporary name beside its target,
//! flushed to disk, and renamed over the target, so a crash (a kill, a power cut) leaves
//! either the old version or the new one, never a half-written one.

use std::path::{Path, PathBuf};

use crate::error::TrainError;

/// Writes `contents` to `path` atomically.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), TrainError> {
    let tmp = temporary(path);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, contents.as_ref())?;
        file.sync_all()
    };
    write().map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))?;
    sync_parent(path)
}

/// Makes the folder `tmp` (complete, written by the caller) the folder `dir`: its files are
/// flushed to disk, and an existing `dir` is moved aside before the rename and removed after,
/// so `dir` holds one whole version at every moment but the instant between the two renames.
pub fn commit_dir(tmp: &Path, dir: &Path) -> Result<(), TrainError> {
    sync_tree(tmp).map_err(|e| TrainError::io(tmp, e))?;
    let old = dir.with_extension("old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    let replaced = dir.exists();
    if replaced {
        std::fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(tmp, dir).map_err(|e| TrainError::io(dir, e))?;
    sync_parent(dir)?;
    if replaced {
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    Ok(())
}

/// A fresh, empty folder at `dir.tmp` for [`commit_dir`] (a leftover of a crash is removed).
pub fn fresh_tmp_dir(dir: &Path) -> Result<PathBuf, TrainError> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    Ok(tmp)
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Flushes every file under `dir` (and, on Unix, the folders themselves) to disk.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    sync_folder(dir)
}

fn sync_parent(path: &Path) -> Result<(), TrainError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_folder(parent).map_err(|e| TrainError::io(parent, e)),
        None => Ok(()),
    }
}

#[cfg(unix)]
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty folder of this test process.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sftvsrl-durable-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_file_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = scratch("file");
        let path = dir.join("a.json");
        write_file(&path, "first, longer text").unwrap();
        write_file(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn commit_dir_replaces_an_existing_folder() {
        let root = scratch("dir");
        let dir = root.join("step-000001");
        for text in ["old", "new"] {
            let tmp = fresh_tmp_dir(&dir).unwrap();
            std::fs::create_dir(tmp.join("hf")).unwrap();
            std::fs::write(tmp.join("hf").join("x"), text).unwrap();
            commit_dir(&tmp, &dir).unwrap();
        }
        assert_eq!(std::fs::read_to_string(dir.join("hf/x")).unwrap(), "new");
        let mut names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["step-000001"]);
    }
}
