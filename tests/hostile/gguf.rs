//! Hostile GGUF files, loaded by `sftvsrl import --model FILE.gguf`: cuts at every section
//! boundary and across the file, flipped bytes, counts and lengths of 2^60, impossible shapes
//! and types, wrong-typed and out-of-range metadata, missing and repeated entries.

use std::path::Path;

use sftvsrl_model::gguf::GgufValue;

use super::corrupt::{cut_points, flip_points, flipped, patched};
use super::{Case, Expect, fixtures, import_args};

const HUGE: u64 = 1 << 60;

/// The fixture's metadata entries.
type Metadata = Vec<(&'static str, GgufValue)>;
/// The fixture's tensors: name, shape, how their random values are drawn.
type Tensors = Vec<(String, Vec<usize>, sftvsrl_model::ParamKind)>;

/// A case that imports `bytes` as `tiny.gguf`.
fn import(label: String, expect: Expect, bytes: Vec<u8>) -> Case {
    Case::new(label, expect, move |dir: &Path| {
        let path = dir.join("tiny.gguf");
        std::fs::write(&path, &bytes).unwrap();
        import_args(&path, dir)
    })
}

/// The pristine file's arguments, for the check that it imports.
pub fn pristine(dir: &Path) -> Vec<String> {
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, fixtures::gguf().bytes).unwrap();
    import_args(&path, dir).0
}

/// A value of a type that metadata entry `v` must not hold.
fn wrong_type(v: &GgufValue) -> GgufValue {
    match v {
        GgufValue::String(_) => GgufValue::U32(7),
        _ => GgufValue::String("seven".into()),
    }
}

/// Whether metadata key `key` is a size the model's shape is built from.
fn is_size(key: &str) -> bool {
    key.starts_with("llama.") && !key.contains("rope") && !key.contains("epsilon")
}

pub fn cases() -> Vec<Case> {
    let file = fixtures::gguf();
    let bytes = &file.bytes;
    let at = |name: &str| file.offset(name).unwrap();
    let mut cases = Vec::new();

    // Cuts: at every section boundary, and across the file (a cut inside the last tensor's
    // padding would leave a whole file, so cuts stop where the data ends).
    let boundaries: Vec<usize> = file.sections.iter().map(|&(_, o)| o).collect();
    for cut in cut_points(at("end of data"), &boundaries, 48) {
        cases.push(import(
            format!("cut at byte {cut}"),
            Expect::Fails,
            bytes[..cut].to_vec(),
        ));
    }
    // Flipped bytes before the data (a flip inside a string may leave a valid file).
    for (k, i) in flip_points(0..at("data"), 40, 17).into_iter().enumerate() {
        cases.push(import(
            format!("flip {k} at byte {i}"),
            Expect::NoCrash,
            flipped(bytes, i),
        ));
    }

    // Huge or impossible declared sizes, patched into the pristine bytes.
    let u64le = |v: u64| v.to_le_bytes().to_vec();
    let u32le = |v: u32| v.to_le_bytes().to_vec();
    let mut patch = |label: &str, offset: usize, new: Vec<u8>| {
        cases.push(import(
            label.to_string(),
            Expect::Fails,
            patched(bytes, offset, &new),
        ));
    };
    let counts = at("counts");
    patch("tensor count 2^60", counts, u64le(HUGE));
    patch("metadata count 2^60", counts + 8, u64le(HUGE));
    patch("metadata count 2^64-1", counts + 8, u64le(u64::MAX));
    patch("version 1", 4, u32le(1));
    patch("magic GGML", 0, b"GGML".to_vec());
    let arch = at("metadata general.architecture");
    patch("key length 2^60", arch, u64le(HUGE));
    let arch_payload = arch + 8 + "general.architecture".len();
    patch("value type 99", arch_payload, u32le(99));
    patch("string length 2^60", arch_payload + 4, u64le(HUGE));
    let tokens = at("metadata tokenizer.ggml.tokens") + 8 + "tokenizer.ggml.tokens".len() + 4;
    patch("array item type 99", tokens, u32le(99));
    patch("array of arrays", tokens, u32le(9));
    patch("array count 2^60", tokens + 4, u64le(HUGE));
    let first = at("tensor info token_embd.weight");
    let dims = first + 8 + "token_embd.weight".len();
    patch("tensor name length 2^60", first, u64le(HUGE));
    patch("tensor with 0 dimensions", dims, u32le(0));
    patch("tensor with 2^31 dimensions", dims, u32le(1 << 31));
    patch("tensor dimension 2^60", dims + 4, u64le(HUGE));
    patch(
        "tensor dimensions 2^40 x 2^40",
        dims + 4,
        [u64le(1 << 40), u64le(1 << 40)].concat(),
    );
    patch(
        "tensor dimensions overflowing",
        dims + 4,
        [u64le(u64::MAX), u64le(3)].concat(),
    );
    patch("tensor type 99", dims + 20, u32le(99));
    patch("tensor offset 2^63", dims + 24, u64le(1 << 63));
    patch("tensor offset 2^64-1", dims + 24, u64le(u64::MAX));
    // The data then starts at byte 2^64-1: its end overflows.
    let last_start = u64::MAX - at("data") as u64;
    patch(
        "tensor data starting at byte 2^64-1",
        dims + 24,
        u64le(last_start),
    );
    patch(
        "tensor offset past the end",
        dims + 24,
        u64le(bytes.len() as u64),
    );
    // `output_norm.weight` holds 16 values: not a whole block of 32.
    let norm = at("tensor info output_norm.weight") + 8 + "output_norm.weight".len();
    patch("tensor type Q4_0 (not whole blocks)", norm + 12, u32le(2));

    // Metadata: each entry missing where required, wrong-typed, and out of range.
    let metadata = fixtures::gguf_metadata();
    let tensors = fixtures::gguf_tensors();
    let mut with = |label: String, expect: Expect, edit: &dyn Fn(&mut Metadata)| {
        let mut m = metadata.clone();
        edit(&mut m);
        cases.push(import(
            label,
            expect,
            fixtures::gguf_with(&m, &tensors).bytes,
        ));
    };
    for (i, (key, value)) in metadata.iter().enumerate() {
        let wrong = wrong_type(value);
        with(format!("`{key}` of the wrong type"), Expect::Fails, &|m| {
            m[i].1 = wrong.clone()
        });
        if is_size(key) {
            for bad in [
                GgufValue::U64(HUGE),
                GgufValue::U32(0),
                GgufValue::I32(-1),
                GgufValue::F32(2.5),
                GgufValue::F32(f32::NAN),
            ] {
                with(format!("`{key}` = {bad:?}"), Expect::Fails, &|m| {
                    m[i].1 = bad.clone()
                });
            }
        }
    }
    for key in [
        "general.architecture",
        "llama.embedding_length",
        "llama.block_count",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
    ] {
        with(format!("`{key}` missing"), Expect::Fails, &|m| {
            m.retain(|(k, _)| *k != key)
        });
    }
    let n = fixtures::gguf_tokens().len();
    let set = |key: &'static str, v: GgufValue| {
        move |m: &mut Metadata| {
            m.iter_mut().find(|(k, _)| *k == key).unwrap().1 = v.clone();
        }
    };
    let semantic: Vec<(&str, &'static str, GgufValue)> = vec![
        (
            "unknown architecture",
            "general.architecture",
            GgufValue::String("gpt9".into()),
        ),
        (
            "unknown tokenizer model",
            "tokenizer.ggml.model",
            GgufValue::String("llama".into()),
        ),
        (
            "unknown pre-tokenizer",
            "tokenizer.ggml.pre",
            GgufValue::String("nope".into()),
        ),
        (
            "bos id outside the vocabulary",
            "tokenizer.ggml.bos_token_id",
            GgufValue::U32(n as u32 + 5),
        ),
        (
            "eos id over 32 bits",
            "tokenizer.ggml.eos_token_id",
            GgufValue::U64(1 << 40),
        ),
        (
            "negative bos id",
            "tokenizer.ggml.bos_token_id",
            GgufValue::I32(-1),
        ),
        ("alignment 0", "general.alignment", GgufValue::U32(0)),
        (
            "negative epsilon",
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(-1.0),
        ),
        (
            "NaN rope base",
            "llama.rope.freq_base",
            GgufValue::F32(f32::NAN),
        ),
        (
            "odd head size",
            "llama.attention.key_length",
            GgufValue::U32(7),
        ),
        (
            "kv heads not dividing heads",
            "llama.attention.head_count_kv",
            GgufValue::U32(3),
        ),
        (
            "huge head count and size",
            "llama.attention.head_count",
            GgufValue::U64(1 << 39),
        ),
        (
            "vocabulary larger than the embedding",
            "llama.vocab_size",
            GgufValue::U32(n as u32 * 2),
        ),
        (
            "a merge of unknown tokens",
            "tokenizer.ggml.merges",
            GgufValue::Array(vec![GgufValue::String("zz qq".into())]),
        ),
        (
            "a merge without a space",
            "tokenizer.ggml.merges",
            GgufValue::Array(vec![GgufValue::String("he".into())]),
        ),
        (
            "tokens that are numbers",
            "tokenizer.ggml.tokens",
            GgufValue::Array(vec![GgufValue::U32(1); n]),
        ),
        (
            "no tokens",
            "tokenizer.ggml.tokens",
            GgufValue::Array(Vec::new()),
        ),
        (
            "token types for half the tokens",
            "tokenizer.ggml.token_type",
            GgufValue::Array(vec![GgufValue::I32(1); n / 2]),
        ),
        (
            "token types that are strings",
            "tokenizer.ggml.token_type",
            GgufValue::Array(vec![GgufValue::String("x".into()); n]),
        ),
    ];
    for (label, key, value) in semantic {
        with(label.to_string(), Expect::Fails, &set(key, value));
    }
    with("heads and head size of 2^33".into(), Expect::Fails, &|m| {
        for (k, v) in m.iter_mut() {
            if k.starts_with("llama.attention.head_count") || *k == "llama.attention.key_length" {
                *v = GgufValue::U64(1 << 33);
            }
        }
    });
    with("a key stored twice".into(), Expect::Fails, &|m| {
        m.push(("llama.block_count", GgufValue::U32(1)))
    });

    // Tensors: each one missing, transposed, or stored twice.
    let mut with_tensors = |label: String, edit: &dyn Fn(&mut Tensors)| {
        let mut t = tensors.clone();
        edit(&mut t);
        cases.push(import(
            label,
            Expect::Fails,
            fixtures::gguf_with(&metadata, &t).bytes,
        ));
    };
    for (i, (name, shape, _)) in tensors.iter().enumerate() {
        with_tensors(format!("tensor `{name}` missing"), &|t| {
            t.remove(i);
        });
        let mut other = shape.clone();
        other.reverse();
        if other == *shape {
            other.push(1);
        }
        with_tensors(format!("tensor `{name}` with shape {other:?}"), &|t| {
            t[i].1 = other.clone()
        });
    }
    with_tensors("a tensor stored twice".into(), &|t| {
        let again = t[1].clone();
        t.push(again)
    });

    // Not a GGUF file at all.
    for (label, content) in [
        ("an empty file", Vec::new()),
        ("only the magic", b"GGUF".to_vec()),
        ("a JSON file", b"{\"model_type\": \"llama\"}".to_vec()),
    ] {
        cases.push(import(label.into(), Expect::Fails, content));
    }
    cases.push(Case::new("a missing file", Expect::Fails, |dir: &Path| {
        let path = dir.join("missing.gguf");
        import_args(&path, dir)
    }));
    cases
}
