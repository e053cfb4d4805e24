//! A reader for GGUF files (llama.cpp's single-file checkpoints): header, metadata key/values
//! (hyperparameters, the tokenizer's vocabulary and merges, the chat template), the tensor
//! directory, and tensor data decoded to f32. Every read is bounds-checked: a truncated or
//! corrupt file gives an error naming the file and what was being read.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::ModelError;
use crate::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The GGUF value type id (`GGUF_TYPE_*`): 0 `U8` … 12 `F64`.
    pub fn type_id(&self) -> u32 {
        match self {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::String(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if it is an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Where a tensor's data lies and how it is encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    /// Row-major shape (GGUF lists dimensions innermost first; this is reversed).
    pub shape: Vec<usize>,
    /// The GGML type id.
    pub type_id: u32,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

/// An open GGUF file: its metadata and tensor directory, with the data memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: BTreeMap<String, GgufTensorInfo>,
    data_start: usize,
}

/// A bounds-checked reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn error(&self, message: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.error(format!(
                "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                self.pos,
                self.bytes.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length or count, refused when it could not fit in the rest of the file at
    /// `min_item_bytes` each (so a corrupt count cannot trigger a huge allocation).
    fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize, ModelError> {
        let n = self.u64(what)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes as u64) > remaining {
            return Err(self.error(format!(
                "{what} is {n} at offset {}, more than the rest of the file holds (truncated or corrupt)",
                self.pos - 8
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.count(what, 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error(format!("{what} at offset {} is not UTF-8", self.pos - len)))
    }

    fn value(&mut self, type_id: u32, what: &str, depth: usize) -> Result<GgufValue, ModelError> {
        Ok(match type_id {
            0 => GgufValue::U8(self.array::<1>(what)?[0]),
            1 => GgufValue::I8(self.array::<1>(what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => GgufValue::Bool(self.array::<1>(what)?[0] != 0),
            8 => GgufValue::String(self.string(what)?),
            9 if depth == 0 => {
                let item_type = self.u32(what)?;
                let n = self.count(what, 1)?;
                let items = (0..n)
                    .map(|_| self.value(item_type, what, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => {
                return Err(self.error(format!("{what} has unknown value type {other}")));
            }
        })
    }
}

impl GgufFile {
    /// Opens and indexes `path` (versions 2 and 3).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is only read; see `safetensors.rs`.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let mut c = Cursor {
            bytes: &mmap,
            pos: 0,
            path,
        };
        if c.take(4, "the magic number")? != MAGIC {
            return Err(c.error("does not start with the magic `GGUF`".into()));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.error(format!("version {version} is not supported (2, 3)")));
        }
        let n_tensors = c.count("the tensor count", 8)?;
        let n_kv = c.count("the metadata count", 8)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let type_id = c.u32(&format!("the type of `{key}`"))?;
            let value = c.value(type_id, &format!("metadata `{key}`"), 0)?;
            if metadata.contains_key(&key) {
                return Err(c.error(format!("metadata key `{key}` appears twice")));
            }
            metadata.insert(key, value);
        }

        let mut tensors = BTreeMap::new();
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let what = format!("the directory entry of tensor `{name}`");
            let n_dims = c.u32(&what)? as usize;
            if n_dims == 0 || n_dims > 4 {
                return Err(c.error(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut shape = (0..n_dims)
                .map(|_| c.u64(&what).map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            shape.reverse();
            let type_id = c.u32(&what)?;
            let offset = c.u64(&what)?;
            if tensors.contains_key(&name) {
                return Err(c.error(format!("tensor `{name}` appears twice in the directory")));
            }
            tensors.insert(
                name,
                GgufTensorInfo {
                    shape,
                    type_id,
                    offset,
                },
            );
        }

        let alignment = match metadata.get("general.alignment") {
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 => a as usize,
                _ => return Err(c.error("`general.alignment` is not a positive integer".into())),
            },
            None => 32,
        };
        let data_start = c.pos.div_ceil(alignment) * alignment;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            version,
            metadata,
            tensors,
            data_start,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF format version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Metadata value `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// Metadata value `key` read by `read` (e.g. [`GgufValue::as_str`]): `None` when the key is
    /// absent, an error naming the key when it holds something `read` refuses (`expected`
    /// says what it should hold).
    pub fn get_as<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        read: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<Option<T>, ModelError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => read(v).map(Some).ok_or_else(|| {
                ModelError::config(&self.path, key, format!("expected {expected}, found {v:?}"))
            }),
        }
    }

    /// All metadata keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.metadata.keys().map(String::as_str)
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.get(name)
    }

    /// The names of all tensors, sorted.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Tensor `name` decoded to f32, with its row-major shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let err = |m: String| ModelError::tensor(&self.path, name, m);
        let ty = GgmlType::from_id(info.type_id).map_err(|id| {
            err(format!(
                "GGML type {id} is not supported (F32, F16, BF16, Q4_0, Q4_1, Q8_0)"
            ))
        })?;
        let n = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| err("element count overflows".into()))?;
        let len = ty.byte_len(n).ok_or_else(|| {
            err(format!(
                "{n} values are not whole {ty:?} blocks, or take more bytes than can be addressed"
            ))
        })?;
        let start = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start))
            .ok_or_else(|| err(format!("offset {} out of range", info.offset)))?;
        let bytes = start
            .checked_add(len)
            .and_then(|end| self.mmap.get(start..end))
            .ok_or_else(|| {
                err(format!(
                    "{len} bytes of data at offset {start} lie past the end of the file ({} bytes): truncated?",
                    self.mmap.len()
                ))
            })?;
        Ok((ty.dequantize(bytes), info.shape.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf_write::GgufWriter;

    #[test]
    fn reads_metadata_and_tensors_and_rejects_truncation() {
        let dir = std::env::temp_dir().join(format!("sftvsrl-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.gguf");
        GgufWriter::new()
            .metadata("general.architecture", GgufValue::String("llama".into()))
            .metadata(
                "a.list",
                GgufValue::Array(vec![GgufValue::U32(7), GgufValue::U32(9)]),
            )
            .metadata("a.eps", GgufValue::F32(1e-5))
            .tensor("w", &[2, 3], vec![1., 2., 3., 4., 5., 6.])
            .tensor("b", &[3], vec![7., 8., 9.])
            .write(&path)
            .unwrap();
        let g = GgufFile::open(&path).unwrap();
        assert_eq!(
            g.get("general.architecture").and_then(GgufValue::as_str),
            Some("llama")
        );
        let list: Vec<u64> = g
            .get("a.list")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(GgufValue::as_u64)
            .collect();
        assert_eq!(list, vec![7, 9]);
        assert_eq!(
            g.tensor_f32("w").unwrap(),
            (vec![1., 2., 3., 4., 5., 6.], vec![2, 3])
        );
        assert_eq!(g.tensor_f32("b").unwrap().0, vec![7., 8., 9.]);
        assert!(matches!(
            g.tensor_f32("nope"),
            Err(ModelError::MissingTensor { .. })
        ));

        // Cut inside the tensor data: the directory parses, reading `b` fails with a message.
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.join("cut.gguf");
        std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
        let g = GgufFile::open(&cut).unwrap();
        let e = g.tensor_f32("b").unwrap_err().to_string();
        assert!(
            e.contains("cut.gguf") && e.contains("`b`") && e.contains("truncated"),
            "{e}"
        );
        // Cut inside the metadata.
        std::fs::write(&cut, &bytes[..40]).unwrap();
        let e = GgufFile::open(&cut).err().unwrap().to_string();
        assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
        std::fs::write(&cut, b"GGML\x03\0\0\0").unwrap();
        assert!(
            GgufFile::open(&cut)
                .err()
                .unwrap()
                .to_string()
                .contains("magic")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
