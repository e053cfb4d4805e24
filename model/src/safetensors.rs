//! Reading the weights of a Hugging Face checkpoint directory: one `model.safetensors`, or shards
//! listed by `model.safetensors.index.json`. Files are memory-mapped; F32, F16 and BF16 tensors
//! are converted to f32 as they are read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::error::{ModelError, read_json};
use crate::weights::{ParamKind, ParamSource, check_shape};

/// One memory-mapped safetensors file and its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

/// The tensors of a checkpoint directory, by name.
pub struct SafetensorsDir {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// tensor name -> index into `shards`
    index: BTreeMap<String, usize>,
    /// The tensors [`ParamSource::values`] has read.
    read: BTreeSet<String>,
}

impl SafetensorsDir {
    /// Opens `dir/model.safetensors.index.json` and its shards, or `dir/model.safetensors`, or
    /// else every `model*.safetensors` file of `dir`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            let index = read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    ModelError::config(&index_path, "weight_map", "missing or not an object")
                })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    ModelError::config(
                        &index_path,
                        &format!("weight_map.{tensor}"),
                        "not a file name",
                    )
                })?;
                let file = dir.join(file);
                if !files.contains(&file) {
                    files.push(file);
                }
            }
            files
        } else if dir.join("model.safetensors").exists() {
            vec![dir.join("model.safetensors")]
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| ModelError::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("model") && n.ends_with(".safetensors"))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ModelError::MissingFile {
                    path: dir.join("model.safetensors"),
                    what: "the weights as model.safetensors or shards with an index json",
                });
            }
            files
        };

        let mut shards = Vec::with_capacity(files.len());
        let mut index = BTreeMap::new();
        for path in files {
            let shard = Shard::open(&path)?;
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), shards.len());
            }
            shards.push(shard);
        }
        Ok(SafetensorsDir {
            dir: dir.to_path_buf(),
            shards,
            index,
            read: BTreeSet::new(),
        })
    }

    /// The names of all tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Tensor `name` as f32 values and its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let shard = self
            .index
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.dir.clone(),
                tensor: name.to_string(),
            })?;
        shard.read_f32(name)
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is only read; a checkpoint modified while it is being loaded is
        // outside what this program can guard against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let invalid = |e: safetensors::SafeTensorError| ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(invalid)?;
        // Validates offsets and lengths of every tensor against the file size.
        SafeTensors::deserialize(&mmap).map_err(invalid)?;
        Ok(Shard {
            path: path.to_path_buf(),
            mmap,
            header_len,
            metadata,
        })
    }

    fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let (start, end) = info.data_offsets;
        let base = 8 + self.header_len;
        let bytes = &self.mmap[base + start..base + end];
        let values = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::tensor(
                    &self.path,
                    name,
                    format!("dtype {other:?} is not supported (F32, F16, BF16)"),
                ));
            }
        };
        Ok((values, info.shape.clone()))
    }
}

impl ParamSource for SafetensorsDir {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn values(
        &mut self,
        name: &str,
        shape: &[usize],
        _kind: ParamKind,
    ) -> Result<Vec<f32>, ModelError> {
        let (values, found) = self.read_f32(name)?;
        let path = self
            .index
            .get(name)
            .map_or(&self.dir, |&i| &self.shards[i].path);
        check_shape(path, name, shape, &found)?;
        self.read.insert(name.to_string());
        Ok(values)
    }

    fn unread(&self) -> Vec<String> {
        (self.index.keys())
            .filter(|n| !self.read.contains(*n))
            .cloned()
            .collect()
    }
}
