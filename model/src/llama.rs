//! The Llama-family decoder: token embedding, pre-norm decoder layers, final RMSNorm and the
//! output projection (tied to the embedding or separate). Field names follow Hugging Face's
//! (`embed_tokens`, `layers`, `self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, `norm`,
//! `lm_head`), so checkpoints map onto it name for name.

use burn::module::{Module, Param};
use burn::nn::{Embedding, RmsNorm};
use burn::tensor::{Bool, Int, Tensor, backend::Backend};

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::decoder_layer::DecoderLayer;
use crate::error::ModelError;
use crate::kernel_logprobs::target_logprobs;
use crate::kernel_matmul::matmul;
use crate::kernel_rms_norm::rms_norm_forward;
use crate::layers::{embedding, matrix, rms_norm};
use crate::mask::causal_mask;
use crate::rope::Rope;
use crate::weights::{ParamSource, RandomInit, prefixed};

/// A Llama-family causal language model, generic over the Burn backend.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// The output projection `[vocab, hidden]` (HF layout, like the embedding); `None` when it
    /// is tied to `embed_tokens`.
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    rope: Rope,
    config: LlamaConfig,
    /// A token the model never predicts (a vision-language model's image placeholder): its
    /// logit is [`SUPPRESSED_LOGIT`] in every output, so sampling never emits it and every
    /// log-prob is taken over the same distribution generation samples from.
    suppressed: Option<u32>,
}

/// The logit of a suppressed token: finite, so that entropies stay finite (`p · log p` is
/// exactly 0), yet far below any real logit.
pub const SUPPRESSED_LOGIT: f32 = -1e9;

impl<B: Backend> Llama<B> {
    /// A model with seeded random weights (for training from scratch).
    pub fn init(config: &LlamaConfig, seed: u64, device: &B::Device) -> Self {
        Self::load(config, &mut RandomInit::new(seed), device)
            .expect("random initialisation supplies every tensor")
    }

    /// A model whose weights come from `source`, under their HF names.
    pub fn load(
        config: &LlamaConfig,
        source: &mut dyn ParamSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Self::load_prefixed(config, source, "", device)
    }

    /// [`Llama::load`] of the tensors named `{prefix}.` plus their HF names (as
    /// `language_model.model.norm.weight` in a vision-language checkpoint).
    pub(crate) fn load_prefixed(
        config: &LlamaConfig,
        source: &mut dyn ParamSource,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (vocab, hidden) = (config.vocab_size, config.hidden_size);
        let name = |n: &str| prefixed(prefix, n);
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                DecoderLayer::load(config, source, &name(&format!("model.layers.{i}")), device)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(matrix(
                source,
                &name("lm_head.weight"),
                vocab,
                hidden,
                device,
            )?)
        };
        Ok(Llama {
            embed_tokens: embedding(source, &name("model.embed_tokens"), vocab, hidden, device)?,
            layers,
            norm: rms_norm(
                source,
                &name("model.norm"),
                hidden,
                config.rms_norm_eps,
                device,
            )?,
            lm_head,
            rope: Rope::new(config),
            config: config.clone(),
            suppressed: None,
        })
    }

    /// The hyperparameters this model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Next-token logits `[batch, seq, vocab]` for every position (the training forward pass).
    ///
    /// `attention_mask` (`[batch, seq]`) is HF's: true for real tokens, false for padding (on
    /// either side). Positions count real tokens only, so a left-padded row gets the same
    /// logits as the unpadded sequence. Logits at padding positions are meaningless.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        self.logits(self.forward_hidden(input_ids, attention_mask))
    }

    /// The final (normalised) hidden states `[batch, seq, hidden]` that [`Llama::logits`] turns
    /// into logits; a value head reads these.
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        self.forward_hidden_embeds(self.embed_tokens.forward(input_ids), attention_mask)
    }

    /// [`Llama::forward_hidden`] of input embeddings `[batch, seq, hidden]` instead of token
    /// ids (a vision-language model splices image features into them), with the same position
    /// and padding semantics.
    pub fn forward_hidden_embeds(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let positions = (attention_mask.clone().int().cumsum(1) - 1).clamp_min(0);
        self.hidden_from_embeds(embeds, positions, attention_mask, None)
    }

    /// Output logits `[batch, seq, vocab]` of final hidden states `[batch, seq, hidden]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, dim] = hidden.dims();
        let head = match &self.lm_head {
            Some(head) => head.val(),
            None => self.embed_tokens.weight.val(),
        };
        // The kernel reads `headᵀ` as a view: no copy of the large matrix.
        let vocab = head.dims()[0];
        let logits = matmul(hidden.reshape([batch * seq, dim]), head.transpose())
            .reshape([batch, seq, vocab]);
        match self.suppressed {
            Some(t) if (t as usize) < vocab => {
                let t = t as usize;
                logits.slice_fill([0..batch, 0..seq, t..t + 1], SUPPRESSED_LOGIT)
            }
            _ => logits,
        }
    }

    /// The model with `token` never predicted (see [`SUPPRESSED_LOGIT`]).
    pub fn suppressing(mut self, token: u32) -> Self {
        self.suppressed = Some(token);
        self
    }

    /// Final hidden states of `input_ids` (`[batch, seq]`) at `positions`. With a cache, the
    /// tokens go after the cached ones and `key_valid` (`[batch, keys]`, at least `cached +
    /// seq` slots, up to the whole cache for fixed-shape decoding) marks which slots hold real
    /// tokens; slots after the new tokens are hidden by the causal mask. Without a cache,
    /// `key_valid` is `[batch, seq]`.
    pub(crate) fn hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        key_valid: Tensor<B, 2, Bool>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let embeds = self.embed_tokens.forward(input_ids);
        self.hidden_from_embeds(embeds, positions, key_valid, cache)
    }

    /// [`Llama::hidden`] of input embeddings `[batch, seq, hidden]` instead of token ids.
    pub(crate) fn hidden_from_embeds(
        &self,
        mut x: Tensor<B, 3>,
        positions: Tensor<B, 2, Int>,
        key_valid: Tensor<B, 2, Bool>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let seq = x.dims()[1];
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let c = &self.config;
        let (heads, kv_heads) = (c.num_attention_heads, c.num_key_value_heads);
        let mask = causal_mask(key_valid, seq, offset, kv_heads, heads / kv_heads);
        let angles = self.rope.qk_angles(positions, heads, kv_heads);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &angles, mask.clone(), layer_cache);
        }
        rms_norm_forward(&self.norm, x)
    }
}

/// Log-probabilities `[batch, seq]` of `targets` (`[batch, seq]`) under `softmax(logits /
/// temperature)` (`logits`: `[batch, seq, vocab]`). A temperature of 0 means greedy decoding and
/// is scored at temperature 1, as [`crate::generate`] records it.
pub fn token_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    temperature: f32,
) -> Tensor<B, 2> {
    let [batch, seq, _] = logits.dims();
    let logits = if temperature > 0.0 && temperature != 1.0 {
        logits / temperature
    } else {
        logits
    };
    let vocab = logits.dims()[2];
    let targets = targets.reshape([batch * seq]);
    target_logprobs(logits.reshape([batch * seq, vocab]), targets).reshape([batch, seq])
}
