//! One pre-norm layer of the vision encoder, as SigLIP's:
//! `h = x + attn(layer_norm1(x)); out = h + fc2(gelu_tanh(fc1(layer_norm2(h))))`, with
//! bidirectional multi-head attention (every patch sees every patch of its image).

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::gelu_approximate;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, backend::Backend};

use crate::error::ModelError;
use crate::layers::{apply, layer_norm, linear};
use crate::vision::VisionConfig;
use crate::weights::ParamSource;

/// HF `self_attn` of a vision layer: `q_proj`, `k_proj`, `v_proj`, `out_proj`, all with biases.
#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    num_heads: usize,
}

/// HF `mlp` of a vision layer: `fc1`, tanh-approximated GELU, `fc2`.
#[derive(Module, Debug)]
pub struct VisionMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

/// HF `encoder.layers.{i}`.
#[derive(Module, Debug)]
pub struct VisionLayer<B: Backend> {
    pub layer_norm1: LayerNorm<B>,
    pub self_attn: VisionAttention<B>,
    pub layer_norm2: LayerNorm<B>,
    pub mlp: VisionMlp<B>,
}

impl<B: Backend> VisionLayer<B> {
    /// Builds layer `{prefix}` (e.g. `vision_tower.encoder.layers.0`).
    pub(crate) fn load(
        config: &VisionConfig,
        source: &mut dyn ParamSource,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (d, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let mut lin = |name: &str, d_in, d_out| {
            linear(
                source,
                &format!("{prefix}.{name}"),
                d_in,
                d_out,
                true,
                device,
            )
        };
        let self_attn = VisionAttention {
            q_proj: lin("self_attn.q_proj", d, d)?,
            k_proj: lin("self_attn.k_proj", d, d)?,
            v_proj: lin("self_attn.v_proj", d, d)?,
            out_proj: lin("self_attn.out_proj", d, d)?,
            num_heads: config.num_attention_heads,
        };
        let mlp = VisionMlp {
            fc1: lin("mlp.fc1", d, inner)?,
            fc2: lin("mlp.fc2", inner, d)?,
        };
        Ok(VisionLayer {
            layer_norm1: layer_norm(source, &format!("{prefix}.layer_norm1"), d, eps, device)?,
            self_attn,
            layer_norm2: layer_norm(source, &format!("{prefix}.layer_norm2"), d, eps, device)?,
            mlp,
        })
    }

    /// `[n, patches, hidden] -> [n, patches, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        h.clone() + self.mlp.forward(self.layer_norm2.forward(h))
    }
}

impl<B: Backend> VisionAttention<B> {
    /// Unmasked multi-head self-attention over `[n, patches, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, seq, d] = x.dims();
        let heads = self.num_heads;
        let split = |t: Tensor<B, 3>| t.reshape([n, seq, heads, d / heads]).swap_dims(1, 2);
        let q = split(apply(&self.q_proj, None, x.clone()));
        let k = split(apply(&self.k_proj, None, x.clone()));
        let v = split(apply(&self.v_proj, None, x));
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        apply(
            &self.out_proj,
            None,
            out.swap_dims(1, 2).reshape([n, seq, d]),
        )
    }
}

impl<B: Backend> VisionMlp<B> {
    /// `[n, patches, hidden] -> [n, patches, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = gelu_approximate(apply(&self.fc1, None, x));
        apply(&self.fc2, None, h)
    }
}
