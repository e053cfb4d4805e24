//! Writing GGUF files (version 3): metadata and F32 tensors, laid out as llama.cpp lays them out
//! (32-byte aligned data). Builds fixtures for tests; [`GgufBytes::sections`] names the offset
//! where each part of the file starts, so a test can cut or patch the file at every boundary.

use std::path::Path;

use crate::error::ModelError;
use crate::gguf::GgufValue;

/// The data alignment written (GGUF's default, so no `general.alignment` key is needed).
const ALIGNMENT: usize = 32;

/// A GGUF file being assembled: metadata entries and F32 tensors, in insertion order.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// An encoded GGUF file and where its parts start.
#[derive(Clone, Debug)]
pub struct GgufBytes {
    pub bytes: Vec<u8>,
    /// `(part, offset)` in file order: `counts` (tensor and metadata counts), `metadata <key>`
    /// per entry, `tensor info <name>` per directory entry, `data`, `tensor data <name>` per
    /// tensor, and `end of data` (where the last tensor's values end).
    pub sections: Vec<(String, usize)>,
}

impl GgufBytes {
    /// The offset of section `name`, if the file has it.
    pub fn offset(&self, name: &str) -> Option<usize> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, at)| at)
    }
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds metadata entry `key` (keys are written in the order they are added).
    pub fn metadata(mut self, key: &str, value: GgufValue) -> Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds an F32 tensor with row-major `shape` (written innermost dimension first).
    pub fn tensor(mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Self {
        self.tensors
            .push((name.to_string(), shape.to_vec(), values));
        self
    }

    /// The file's bytes and section offsets.
    pub fn encode(&self) -> GgufBytes {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        let mut sections = vec![("counts".to_string(), out.len())];
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            sections.push((format!("metadata {key}"), out.len()));
            put_string(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            put_payload(&mut out, value);
        }
        let mut offset = 0usize;
        for (name, shape, values) in &self.tensors {
            sections.push((format!("tensor info {name}"), out.len()));
            put_string(&mut out, name);
            out.extend((shape.len() as u32).to_le_bytes());
            for d in shape.iter().rev() {
                out.extend((*d as u64).to_le_bytes());
            }
            out.extend(0u32.to_le_bytes()); // GGML type F32
            out.extend((offset as u64).to_le_bytes());
            offset += (values.len() * 4).next_multiple_of(ALIGNMENT);
        }
        out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
        sections.push(("data".to_string(), out.len()));
        let mut end = out.len();
        for (name, _, values) in &self.tensors {
            sections.push((format!("tensor data {name}"), out.len()));
            out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            end = out.len();
            out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
        }
        sections.push(("end of data".to_string(), end));
        GgufBytes {
            bytes: out,
            sections,
        }
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        std::fs::write(path, self.encode().bytes).map_err(|e| ModelError::io(path, e))
    }
}

/// A GGUF string: its length as u64, then its UTF-8 bytes.
fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A value's payload (without its type id). An array's items take the type of its first item
/// (an empty array is written as an array of strings).
fn put_payload(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend(v.to_le_bytes()),
        GgufValue::U16(v) => out.extend(v.to_le_bytes()),
        GgufValue::I16(v) => out.extend(v.to_le_bytes()),
        GgufValue::U32(v) => out.extend(v.to_le_bytes()),
        GgufValue::I32(v) => out.extend(v.to_le_bytes()),
        GgufValue::U64(v) => out.extend(v.to_le_bytes()),
        GgufValue::I64(v) => out.extend(v.to_le_bytes()),
        GgufValue::F32(v) => out.extend(v.to_le_bytes()),
        GgufValue::F64(v) => out.extend(v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(items) => {
            let item_type = items.first().map_or(8, GgufValue::type_id);
            out.extend(item_type.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_payload(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn sections_point_at_the_parts_they_name() {
        let file = GgufWriter::new()
            .metadata("general.architecture", GgufValue::String("llama".into()))
            .metadata("n", GgufValue::U32(7))
            .tensor("w", &[2, 3], vec![1.0; 6])
            .tensor("b", &[3], vec![2.0; 3])
            .encode();
        let at = |name: &str| file.offset(name).unwrap();
        assert_eq!(at("counts"), 8);
        assert_eq!(at("metadata general.architecture"), 24);
        // Key length, key, type id, string length, "llama".
        assert_eq!(at("metadata n"), 24 + 8 + 20 + 4 + 8 + 5);
        assert_eq!(at("data") % ALIGNMENT, 0);
        assert_eq!(at("tensor data b"), at("data") + 32);
        assert_eq!(at("end of data"), at("tensor data b") + 12);
        let dir = std::env::temp_dir().join(format!("sftvsrl-gguf-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.gguf");
        std::fs::write(&path, &file.bytes).unwrap();
        let g = GgufFile::open(&path).unwrap();
        assert_eq!(g.tensor_f32("b").unwrap(), (vec![2.0; 3], vec![3]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
