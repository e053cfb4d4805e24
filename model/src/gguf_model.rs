//! A Llama-family model stored in a GGUF file: its hyperparameters from the `{arch}.*`
//! metadata, and its tensors under HF names. llama.cpp's converter permutes the q/k rows of
//! `llama` models into the interleaved RoPE layout; they are permuted back to HF's rotate-half
//! layout here (Qwen2 files keep HF's layout).

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{LlamaConfig, ModelType};
use crate::error::ModelError;
use crate::gguf::{GgufFile, GgufValue};
use crate::weights::{ParamKind, ParamSource, check_shape};

/// The largest size (width, count, length) a GGUF file may declare: 2^40.
const MAX_SIZE: f64 = (1u64 << 40) as f64;

/// A token id: a non-negative integer that fits in 32 bits.
pub(crate) fn token_id(v: &GgufValue) -> Option<u32> {
    v.as_u64().and_then(|id| u32::try_from(id).ok())
}

/// The hyperparameters of the model in `gguf` (architectures `llama` and `qwen2`).
pub fn config_from_gguf(gguf: &GgufFile) -> Result<LlamaConfig, ModelError> {
    let path = gguf.path();
    let arch = gguf
        .get_as("general.architecture", "a string", GgufValue::as_str)?
        .ok_or_else(|| ModelError::config(path, "general.architecture", "missing"))?;
    let model_type = match arch {
        "llama" => ModelType::Llama,
        "qwen2" => ModelType::Qwen2,
        other => {
            return Err(ModelError::config(
                path,
                "general.architecture",
                format!("`{other}` is not supported (llama, qwen2)"),
            ));
        }
    };
    let key = |k: &str| format!("{arch}.{k}");
    let number = |k: &str| gguf.get_as(&key(k), "a number", GgufValue::as_f64);
    // A size: a whole number from 1 to 2^40 (larger ones are corrupt, not models).
    let size = |k: &str| -> Result<Option<usize>, ModelError> {
        match number(k)? {
            Some(n) if (1.0..=MAX_SIZE).contains(&n) && n.fract() == 0.0 => Ok(Some(n as usize)),
            Some(n) => Err(ModelError::config(
                path,
                &key(k),
                format!("{n} is not a whole number from 1 to 2^40"),
            )),
            None => Ok(None),
        }
    };
    let count = |k: &str| -> Result<usize, ModelError> {
        size(k)?.ok_or_else(|| ModelError::config(path, &key(k), "missing"))
    };
    if gguf.tensor_info("rope_freqs.weight").is_some()
        || gguf.get(&key("rope.scaling.type")).is_some()
    {
        return Err(ModelError::config(
            path,
            &key("rope.scaling.type"),
            "RoPE frequency scaling in GGUF files is not supported",
        ));
    }

    let hidden_size = count("embedding_length")?;
    let heads = count("attention.head_count")?;
    let kv_heads = size("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = size("attention.key_length")?.unwrap_or(hidden_size / heads);
    let embd = gguf
        .tensor_info("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            path: path.to_path_buf(),
            tensor: "token_embd.weight".into(),
        })?;
    let vocab_size = size("vocab_size")?.unwrap_or(embd.shape[0]);
    let token = |k: &str| gguf.get_as(k, "a token id", token_id);
    let config = LlamaConfig {
        model_type,
        vocab_size,
        hidden_size,
        intermediate_size: count("feed_forward_length")?,
        num_hidden_layers: count("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: number("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        rope_theta: number("rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: size("context_length")?.unwrap_or(2048),
        tie_word_embeddings: gguf.tensor_info("output.weight").is_none(),
        attention_bias: gguf.tensor_info("blk.0.attn_q.bias").is_some(),
        bos_token_id: token("tokenizer.ggml.bos_token_id")?,
        eos_token_ids: token("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
    };
    config.validate(path)?;
    Ok(config)
}

/// The tensors of a GGUF file under HF names, decoded to f32.
pub struct GgufWeights<'a> {
    gguf: &'a GgufFile,
    config: LlamaConfig,
    /// The GGUF tensors [`ParamSource::values`] has read.
    read: BTreeSet<String>,
}

impl<'a> GgufWeights<'a> {
    /// The tensors of `gguf`, whose hyperparameters are `config`.
    pub fn new(gguf: &'a GgufFile, config: &LlamaConfig) -> Self {
        GgufWeights {
            gguf,
            config: config.clone(),
            read: BTreeSet::new(),
        }
    }

    /// The GGUF name of HF tensor `name`, and the head count of its rows if they are q/k rows
    /// stored in the interleaved RoPE layout.
    fn gguf_name(&self, name: &str) -> Option<(String, Option<usize>)> {
        let fixed = match name {
            "model.embed_tokens.weight" => Some("token_embd.weight"),
            "model.norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(n) = fixed {
            return Some((n.to_string(), None));
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (module, param) = rest.rsplit_once('.')?;
        let (gguf_module, heads) = match module {
            "input_layernorm" => ("attn_norm", None),
            "post_attention_layernorm" => ("ffn_norm", None),
            "self_attn.q_proj" => ("attn_q", Some(self.config.num_attention_heads)),
            "self_attn.k_proj" => ("attn_k", Some(self.config.num_key_value_heads)),
            "self_attn.v_proj" => ("attn_v", None),
            "self_attn.o_proj" => ("attn_output", None),
            "mlp.gate_proj" => ("ffn_gate", None),
            "mlp.up_proj" => ("ffn_up", None),
            "mlp.down_proj" => ("ffn_down", None),
            _ => return None,
        };
        let permuted = heads.filter(|_| self.config.model_type == ModelType::Llama);
        Some((format!("blk.{layer}.{gguf_module}.{param}"), permuted))
    }
}

/// Reorders q/k rows from the interleaved RoPE layout (row `h*d + 2i + j`) to rotate-half
/// (row `h*d + j*d/2 + i`); `values` holds `rows` rows of `cols` values each.
fn unpermute_rows(values: &[f32], heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&values[src..src + cols]);
            }
        }
    }
    out
}

impl ParamSource for GgufWeights<'_> {
    fn path(&self) -> &Path {
        self.gguf.path()
    }

    fn values(
        &mut self,
        name: &str,
        shape: &[usize],
        _kind: ParamKind,
    ) -> Result<Vec<f32>, ModelError> {
        let (gguf_name, permuted_heads) =
            self.gguf_name(name)
                .ok_or_else(|| ModelError::MissingTensor {
                    path: self.gguf.path().to_path_buf(),
                    tensor: name.to_string(),
                })?;
        let (values, found) = self.gguf.tensor_f32(&gguf_name)?;
        check_shape(self.gguf.path(), &gguf_name, shape, &found)?;
        self.read.insert(gguf_name);
        Ok(match permuted_heads {
            Some(heads) => {
                let cols = if shape.len() == 2 { shape[1] } else { 1 };
                unpermute_rows(&values, heads, shape[0], cols)
            }
            None => values,
        })
    }

    fn unread(&self) -> Vec<String> {
        (self.gguf.tensor_names())
            .filter(|n| !self.read.contains(*n))
            .map(String::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;
    use crate::gguf_write::GgufWriter;
    use crate::llama::Llama;
    use crate::pretrained::load_pretrained;
    use crate::weights::RandomInit;
    use burn::tensor::{Bool, Int, Tensor};

    /// llama.cpp's q/k permutation (HF rotate-half rows -> interleaved rows).
    fn permute_rows(hf: &[f32], heads: usize, rows: usize, cols: usize) -> Vec<f32> {
        let head_dim = rows / heads;
        let mut out = vec![0.0; hf.len()];
        for h in 0..heads {
            for i in 0..head_dim / 2 {
                for j in 0..2 {
                    let dst = (h * head_dim + i * 2 + j) * cols;
                    let src = (h * head_dim + j * head_dim / 2 + i) * cols;
                    out[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        out
    }

    #[test]
    fn llama_gguf_loads_like_the_hf_weights_it_was_converted_from() {
        let mut config = LlamaConfig::tiny(64);
        config.num_hidden_layers = 2;
        config.tie_word_embeddings = false;
        let (h, kv, d) = (
            config.hidden_size,
            config.num_key_value_heads,
            config.head_dim,
        );
        let heads = config.num_attention_heads;
        let mut rng = RandomInit::new(9);
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut add = |gguf: &str, hf: &str, shape: Vec<usize>, permute: Option<usize>| {
            let kind = if hf.contains("norm") {
                ParamKind::NormScale
            } else {
                ParamKind::Weight
            };
            let values = rng.values(hf, &shape, kind).unwrap();
            let values = match permute {
                Some(n) => permute_rows(&values, n, shape[0], shape[1]),
                None => values,
            };
            tensors.push((gguf.to_string(), shape, values));
        };
        add(
            "token_embd.weight",
            "model.embed_tokens.weight",
            vec![64, h],
            None,
        );
        add("output.weight", "lm_head.weight", vec![64, h], None);
        add("output_norm.weight", "model.norm.weight", vec![h], None);
        for l in 0..2 {
            let hf = |m: &str| format!("model.layers.{l}.{m}.weight");
            let g = |m: &str| format!("blk.{l}.{m}.weight");
            add(&g("attn_norm"), &hf("input_layernorm"), vec![h], None);
            add(
                &g("ffn_norm"),
                &hf("post_attention_layernorm"),
                vec![h],
                None,
            );
            add(
                &g("attn_q"),
                &hf("self_attn.q_proj"),
                vec![heads * d, h],
                Some(heads),
            );
            add(
                &g("attn_k"),
                &hf("self_attn.k_proj"),
                vec![kv * d, h],
                Some(kv),
            );
            add(&g("attn_v"), &hf("self_attn.v_proj"), vec![kv * d, h], None);
            add(
                &g("attn_output"),
                &hf("self_attn.o_proj"),
                vec![h, heads * d],
                None,
            );
            let inner = config.intermediate_size;
            add(&g("ffn_gate"), &hf("mlp.gate_proj"), vec![inner, h], None);
            add(&g("ffn_up"), &hf("mlp.up_proj"), vec![inner, h], None);
            add(&g("ffn_down"), &hf("mlp.down_proj"), vec![h, inner], None);
        }
        let u32_kv = |k: &str, v: usize| (k.to_string(), GgufValue::U32(v as u32));
        let metadata = vec![
            (
                "general.architecture".to_string(),
                GgufValue::String("llama".into()),
            ),
            u32_kv("llama.embedding_length", h),
            u32_kv("llama.block_count", 2),
            u32_kv("llama.feed_forward_length", config.intermediate_size),
            u32_kv("llama.attention.head_count", heads),
            u32_kv("llama.attention.head_count_kv", kv),
            u32_kv("llama.context_length", 2048),
            ("llama.rope.freq_base".into(), GgufValue::F32(10_000.0)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                GgufValue::F32(1e-5),
            ),
        ];
        let dir = std::env::temp_dir().join(format!("sftvsrl-gguf-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.gguf");
        // The file, with one more tensor `extra` when given.
        let write = |extra: Option<&str>| {
            let mut writer = GgufWriter::new();
            for (key, value) in metadata.clone() {
                writer = writer.metadata(&key, value);
            }
            for (name, shape, values) in tensors.clone() {
                writer = writer.tensor(&name, &shape, values);
            }
            if let Some(name) = extra {
                writer = writer.tensor(name, &[h], vec![1.0; h]);
            }
            writer.write(&path).unwrap();
        };
        write(None);

        type B = CpuBackend;
        let device = Default::default();
        let loaded = load_pretrained::<B>(&path, &device).unwrap();
        assert_eq!(loaded.model.config().vocab_size, 64);
        assert!(loaded.tokenizer.is_none());
        let reference = Llama::<B>::load(&config, &mut RandomInit::new(9), &device).unwrap();
        let ids = Tensor::<B, 2, Int>::from_ints([[3, 9, 27, 81 % 64, 5]], &device);
        let mask = Tensor::<B, 2, Bool>::from_data([[true; 5]], &device);
        let a: Vec<f32> = loaded
            .model
            .forward(ids.clone(), mask.clone())
            .into_data()
            .to_vec()
            .unwrap();
        let b: Vec<f32> = reference.forward(ids, mask).into_data().to_vec().unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "GGUF and HF logits differ by {worst}");
        // A tensor the model has no place for is refused, not dropped.
        write(Some("blk.0.ffn_gate_exps.weight"));
        let e = load_pretrained::<B>(&path, &device).unwrap_err();
        assert!(matches!(e, ModelError::UnusedTensors { .. }), "{e}");
        assert!(e.to_string().contains("blk.0.ffn_gate_exps.weight"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: reshape(heads, 2, d/2, cols).swapaxes(1, 2): row h*d + i*2 + j <- h*d + j*d/2 + i.
        let (heads, head_dim, cols) = (2, 4, 3);
        let rows = heads * head_dim;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let gguf = permute_rows(&hf, heads, rows, cols);
        assert_ne!(gguf, hf);
        assert_eq!(unpermute_rows(&gguf, heads, rows, cols), hf);
    }
}
