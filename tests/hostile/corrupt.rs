//! Corruption generators: cuts, flipped bytes, patched fields and wrong JSON types.

use std::path::Path;

use serde_json::Value;

/// Where to cut a file of `len` bytes: at every boundary in `boundaries` and one byte either
/// side of it, and at `spread` offsets spaced evenly over the file; each offset below `len`,
/// once, in order.
pub fn cut_points(len: usize, boundaries: &[usize], spread: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = boundaries
        .iter()
        .flat_map(|&b| [b.saturating_sub(1), b, b + 1])
        .chain((0..spread).map(|k| k * len / spread.max(1)))
        .filter(|&c| c < len)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// `n` distinct offsets in `range`, spread by a fixed pseudo-random sequence (a flip at each).
pub fn flip_points(range: std::ops::Range<usize>, n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let width = range.len();
    let mut out = Vec::new();
    while out.len() < n.min(width) {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = range.start + (state >> 33) as usize % width;
        if !out.contains(&at) {
            out.push(at);
        }
    }
    out
}

/// `bytes` with the byte at `at` inverted.
pub fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= 0xff;
    out
}

/// `bytes` with `new` written over it from `at`.
pub fn patched(bytes: &[u8], at: usize, new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + new.len()].copy_from_slice(new);
    out
}

/// One step into a JSON value.
#[derive(Clone, Debug)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A path into a JSON value, written as `a.b[0]`.
pub fn path_name(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => out.push_str(&format!(".{k}")),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Every path in `v` down to `depth` steps (objects by key, arrays by their first two items).
pub fn paths(v: &Value, depth: usize) -> Vec<Vec<Step>> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    let children: Vec<(Step, &Value)> = match v {
        Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
        Value::Array(items) => items
            .iter()
            .take(2)
            .enumerate()
            .map(|(i, v)| (Step::Index(i), v))
            .collect(),
        _ => Vec::new(),
    };
    for (step, child) in children {
        out.push(vec![step.clone()]);
        for mut rest in paths(child, depth - 1) {
            rest.insert(0, step.clone());
            out.push(rest);
        }
    }
    out
}

/// The value at `path` (which must exist), mutably.
pub fn at_path<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// The value at `path` (which must exist).
pub fn value_at<'a>(v: &'a Value, path: &[Step]) -> &'a Value {
    path.iter().fold(v, |v, step| match step {
        Step::Key(k) => &v[k.as_str()],
        Step::Index(i) => &v[*i],
    })
}

/// The path of object keys and array indices (numbers) in `parts`.
pub fn steps(parts: &[&str]) -> Vec<Step> {
    parts
        .iter()
        .map(|p| match p.parse::<usize>() {
            Ok(i) => Step::Index(i),
            Err(_) => Step::Key(p.to_string()),
        })
        .collect()
}

/// A value of another JSON kind than `v`, that no field typed like `v` accepts.
pub fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::from(7),
        Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Null => Value::from("seven"),
        Value::Object(_) => Value::from(vec![7]),
    }
}

/// `v` with the value at `path` replaced by `new`.
pub fn replaced(v: &Value, path: &[Step], new: Value) -> Value {
    let mut out = v.clone();
    *at_path(&mut out, path) = new;
    out
}

/// `v` with the entry at `path` (an object key) removed.
pub fn removed(v: &Value, path: &[Step]) -> Value {
    let mut out = v.clone();
    let (last, parent) = path.split_last().expect("a non-empty path");
    if let (Step::Key(k), Value::Object(map)) = (last, at_path(&mut out, parent)) {
        map.remove(k);
    }
    out
}

/// Copies the files of `src` (recursively) into `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}
