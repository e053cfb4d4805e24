//! Pristine inputs, built with the project's own writers: a tiny Llama as a GGUF file (with a
//! byte-level BPE tokenizer) and as a Hugging Face folder (with a word-level tokenizer).

use std::path::Path;

use burn::backend::Flex;
use sftvsrl_model::gguf::GgufValue;
use sftvsrl_model::gguf_write::{GgufBytes, GgufWriter};
use sftvsrl_model::{
    Llama, LlamaConfig, ParamKind, ParamSource, RandomInit, save_pretrained, word_level_tokenizer,
};

/// The tiny model's shape: one layer of width 16, two query heads sharing one key/value head.
pub fn tiny_config(vocab_size: usize) -> LlamaConfig {
    LlamaConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        ..LlamaConfig::tiny(vocab_size)
    }
}

/// GPT-2's byte-level alphabet: the 256 characters that stand for the bytes 0..=255.
fn byte_level_alphabet() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// The GGUF fixture's tokens: the byte alphabet, one merge's result and three control tokens.
pub fn gguf_tokens() -> Vec<String> {
    let mut tokens = byte_level_alphabet();
    tokens.extend(["he", "<|im_start|>", "<|im_end|>", "<|endoftext|>"].map(String::from));
    tokens
}

/// The metadata keys of the GGUF fixture, with their values, in file order.
pub fn gguf_metadata() -> Vec<(&'static str, GgufValue)> {
    let tokens = gguf_tokens();
    let n = tokens.len();
    let c = tiny_config(n);
    let u32v = |v: usize| GgufValue::U32(v as u32);
    let types = (0..n)
        .map(|i| GgufValue::I32(if i >= n - 3 { 3 } else { 1 }))
        .collect();
    vec![
        ("general.architecture", GgufValue::String("llama".into())),
        ("general.alignment", u32v(32)),
        ("llama.embedding_length", u32v(c.hidden_size)),
        ("llama.block_count", u32v(c.num_hidden_layers)),
        ("llama.feed_forward_length", u32v(c.intermediate_size)),
        ("llama.attention.head_count", u32v(c.num_attention_heads)),
        ("llama.attention.head_count_kv", u32v(c.num_key_value_heads)),
        ("llama.attention.key_length", u32v(c.head_dim)),
        ("llama.context_length", u32v(2048)),
        ("llama.vocab_size", u32v(n)),
        ("llama.rope.freq_base", GgufValue::F32(10_000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        ),
        ("tokenizer.ggml.model", GgufValue::String("gpt2".into())),
        ("tokenizer.ggml.pre", GgufValue::String("default".into())),
        (
            "tokenizer.ggml.tokens",
            GgufValue::Array(tokens.into_iter().map(GgufValue::String).collect()),
        ),
        ("tokenizer.ggml.token_type", GgufValue::Array(types)),
        (
            "tokenizer.ggml.merges",
            GgufValue::Array(vec![GgufValue::String("h e".into())]),
        ),
        ("tokenizer.ggml.bos_token_id", u32v(n - 1)),
        ("tokenizer.ggml.eos_token_id", u32v(n - 2)),
        ("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)),
        (
            "tokenizer.chat_template",
            GgufValue::String("{{ '<|im_start|>' }}".into()),
        ),
    ]
}

/// The GGUF fixture's tensors `(name, shape, kind)` under llama.cpp's names.
pub fn gguf_tensors() -> Vec<(String, Vec<usize>, ParamKind)> {
    let c = tiny_config(gguf_tokens().len());
    let (h, q, kv, f) = (
        c.hidden_size,
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
        c.intermediate_size,
    );
    let w = ParamKind::Weight;
    let norm = ParamKind::NormScale;
    let mut out = vec![
        ("token_embd.weight".to_string(), vec![c.vocab_size, h], w),
        ("output_norm.weight".to_string(), vec![h], norm),
    ];
    for (name, shape, kind) in [
        ("attn_norm", vec![h], norm),
        ("ffn_norm", vec![h], norm),
        ("attn_q", vec![q, h], w),
        ("attn_k", vec![kv, h], w),
        ("attn_v", vec![kv, h], w),
        ("attn_output", vec![h, q], w),
        ("ffn_gate", vec![f, h], w),
        ("ffn_up", vec![f, h], w),
        ("ffn_down", vec![h, f], w),
    ] {
        out.push((format!("blk.0.{name}.weight"), shape, kind));
    }
    out
}

/// The GGUF fixture with `metadata` in place of [`gguf_metadata`] and `tensors` in place of
/// [`gguf_tensors`] (random values seeded by name).
pub fn gguf_with(
    metadata: &[(&str, GgufValue)],
    tensors: &[(String, Vec<usize>, ParamKind)],
) -> GgufBytes {
    let mut writer = GgufWriter::new();
    for (key, value) in metadata {
        writer = writer.metadata(key, value.clone());
    }
    let mut init = RandomInit::new(0);
    for (name, shape, kind) in tensors {
        let n: usize = shape.iter().product();
        let values = init.values(name, &[n], *kind).unwrap();
        writer = writer.tensor(name, shape, values);
    }
    writer.encode()
}

/// The pristine GGUF fixture.
pub fn gguf() -> GgufBytes {
    gguf_with(&gguf_metadata(), &gguf_tensors())
}

/// Writes a Hugging Face checkpoint folder: `config.json`, `model.safetensors`,
/// `generation_config.json`, a word-level `tokenizer.json` and `tokenizer_config.json`.
pub fn hf_model(dir: &Path) {
    let tokenizer = word_level_tokenizer(["hello world, a tiny model"], 1).unwrap();
    let config = tiny_config(tokenizer.vocab_size());
    let model = Llama::<Flex>::init(&config, 0, &Default::default());
    save_pretrained(&model, Some(&tokenizer), &[3], dir).unwrap();
}
