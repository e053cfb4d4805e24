//! The SwiGLU feed-forward block: `down_proj(silu(gate_proj(x)) * up_proj(x))`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;
use crate::error::ModelError;
use crate::kernel_swiglu::swiglu;
use crate::layers::{apply, linear};
use crate::lora::LoraAdapter;
use crate::weights::ParamSource;

/// The `mlp` block of a decoder layer (HF names: `gate_proj`, `up_proj`, `down_proj`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
    /// The LoRA adapter of `gate_proj` (see [`crate::lora`]); `None` without LoRA.
    pub gate_lora: Option<LoraAdapter<B>>,
    /// The LoRA adapter of `up_proj`.
    pub up_lora: Option<LoraAdapter<B>>,
    /// The LoRA adapter of `down_proj`.
    pub down_lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Mlp<B> {
    /// Builds the block from `{prefix}.gate_proj` etc.
    pub(crate) fn load(
        config: &LlamaConfig,
        source: &mut dyn ParamSource,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        Ok(Mlp {
            gate_proj: linear(
                source,
                &format!("{prefix}.gate_proj"),
                hidden,
                inner,
                false,
                device,
            )?,
            up_proj: linear(
                source,
                &format!("{prefix}.up_proj"),
                hidden,
                inner,
                false,
                device,
            )?,
            down_proj: linear(
                source,
                &format!("{prefix}.down_proj"),
                inner,
                hidden,
                false,
                device,
            )?,
            gate_lora: None,
            up_lora: None,
            down_lora: None,
        })
    }

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = apply(&self.gate_proj, self.gate_lora.as_ref(), x.clone());
        let up = apply(&self.up_proj, self.up_lora.as_ref(), x);
        apply(&self.down_proj, self.down_lora.as_ref(), swiglu(gate, up))
    }
}
