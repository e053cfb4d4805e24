//! Grouped-query self-attention with RoPE, optional q/k/v biases and an optional KV cache.
//!
//! Query heads are grouped with the key/value head they share (`n_rep` query heads per kv
//! head, head `h` uses kv head `h / n_rep`, as HF's `repeat_kv`), and keys and values are never
//! repeated in memory: see [`crate::kernel_attention::attention`].

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Bool, Tensor, backend::Backend};

use crate::cache::LayerCache;
use crate::config::LlamaConfig;
use crate::error::ModelError;
use crate::kernel_attention::attention;
use crate::layers::{apply, linear};
use crate::lora::LoraAdapter;
use crate::rope::QkAngles;
use crate::weights::ParamSource;

/// The `self_attn` block of a decoder layer (HF names: `q_proj`, `k_proj`, `v_proj`, `o_proj`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    /// The LoRA adapter of `q_proj` (see [`crate::lora`]); `None` without LoRA.
    pub q_lora: Option<LoraAdapter<B>>,
    /// The LoRA adapter of `k_proj`.
    pub k_lora: Option<LoraAdapter<B>>,
    /// The LoRA adapter of `v_proj`.
    pub v_lora: Option<LoraAdapter<B>>,
    /// The LoRA adapter of `o_proj`.
    pub o_lora: Option<LoraAdapter<B>>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Builds the block from `{prefix}.q_proj` etc.
    pub(crate) fn load(
        config: &LlamaConfig,
        source: &mut dyn ParamSource,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let hidden = config.hidden_size;
        let q_dim = config.num_attention_heads * config.head_dim;
        let kv_dim = config.num_key_value_heads * config.head_dim;
        let bias = config.attention_bias;
        Ok(Attention {
            q_proj: linear(
                source,
                &format!("{prefix}.q_proj"),
                hidden,
                q_dim,
                bias,
                device,
            )?,
            k_proj: linear(
                source,
                &format!("{prefix}.k_proj"),
                hidden,
                kv_dim,
                bias,
                device,
            )?,
            v_proj: linear(
                source,
                &format!("{prefix}.v_proj"),
                hidden,
                kv_dim,
                bias,
                device,
            )?,
            o_proj: linear(
                source,
                &format!("{prefix}.o_proj"),
                q_dim,
                hidden,
                false,
                device,
            )?,
            q_lora: None,
            k_lora: None,
            v_lora: None,
            o_lora: None,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
        })
    }

    /// `x`: `[batch, seq, hidden]`; `mask`: `[batch, kv_heads, n_rep * seq, kv_len]` from
    /// `mask::causal_mask`. With a cache, the new keys and values are written at the cache's
    /// current length and attention covers its first `kv_len` slots: everything cached so far,
    /// and empty slots after it when the mask is wider (hidden by the mask).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        angles: &QkAngles<B>,
        mask: Tensor<B, 4, Bool>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (heads, kv_heads, dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let n_rep = heads / kv_heads;
        let split = |t: Tensor<B, 3>, h: usize| t.reshape([batch, seq, h, dim]);

        // RoPE in the [batch, seq, heads, dim] layout the projections produce, then heads first.
        let q = apply(&self.q_proj, self.q_lora.as_ref(), x.clone());
        let k = apply(&self.k_proj, self.k_lora.as_ref(), x.clone());
        let v = apply(&self.v_proj, self.v_lora.as_ref(), x);
        let q = angles.q.apply(split(q, heads));
        let k = angles.k.apply(split(k, kv_heads));
        let v = split(v, kv_heads);
        let (q, k, v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
        let kv_len = mask.dims()[3];
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v, kv_len),
            None => (k, v),
        };

        debug_assert_eq!(mask.dims(), [batch, kv_heads, n_rep * seq, kv_len]);
        // On the CPU backend the output is a view of [batch, seq, heads, dim] memory, so the
        // swap and the merge of the heads below copy nothing (nor do their backward steps).
        let out = attention(q, k, v, mask);
        let out = out.swap_dims(1, 2).reshape([batch, seq, heads * dim]);
        apply(&self.o_proj, self.o_lora.as_ref(), out)
    }
}
