//! One pre-norm decoder layer: `h = x + attn(norm(x)); out = h + mlp(norm(h))`.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::{Bool, Tensor, backend::Backend};

use crate::attention::Attention;
use crate::cache::LayerCache;
use crate::config::LlamaConfig;
use crate::error::ModelError;
use crate::kernel_rms_norm::rms_norm_forward;
use crate::layers::rms_norm;
use crate::mlp::Mlp;
use crate::rope::QkAngles;
use crate::weights::ParamSource;

/// HF `model.layers.{i}`.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// Builds layer `{prefix}` (e.g. `model.layers.3`).
    pub(crate) fn load(
        config: &LlamaConfig,
        source: &mut dyn ParamSource,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (hidden, eps) = (config.hidden_size, config.rms_norm_eps);
        Ok(DecoderLayer {
            input_layernorm: rms_norm(
                source,
                &format!("{prefix}.input_layernorm"),
                hidden,
                eps,
                device,
            )?,
            self_attn: Attention::load(config, source, &format!("{prefix}.self_attn"), device)?,
            post_attention_layernorm: rms_norm(
                source,
                &format!("{prefix}.post_attention_layernorm"),
                hidden,
                eps,
                device,
            )?,
            mlp: Mlp::load(config, source, &format!("{prefix}.mlp"), device)?,
        })
    }

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`; see [`Attention::forward`] for the mask.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        angles: &QkAngles<B>,
        mask: Tensor<B, 4, Bool>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let normed = rms_norm_forward(&self.input_layernorm, x.clone());
        let h = x + self.self_attn.forward(normed, angles, mask, cache);
        h.clone()
            + self
                .mlp
                .forward(rms_norm_forward(&self.post_attention_layernorm, h))
    }
}
