//! Building Burn's basic layers (linear, embedding, RMSNorm) from a [`ParamSource`] under their
//! Hugging Face names.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;

use crate::error::ModelError;
use crate::weights::{ParamKind, ParamSource, load_tensor};

/// `{prefix}.weight` (HF layout `[d_out, d_in]`) and, with `bias`, `{prefix}.bias`. Burn keeps
/// linear weights as `[d_in, d_out]`: the HF matrix is used through a transposed view.
pub(crate) fn linear<B: Backend>(
    source: &mut dyn ParamSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, ModelError> {
    let weight = load_tensor::<B, 2>(
        source,
        &format!("{prefix}.weight"),
        [d_out, d_in],
        ParamKind::Weight,
        device,
    )?;
    let bias = if bias {
        let b = load_tensor::<B, 1>(
            source,
            &format!("{prefix}.bias"),
            [d_out],
            ParamKind::Bias,
            device,
        )?;
        Some(Param::from_tensor(b))
    } else {
        None
    };
    Ok(Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias,
    })
}

/// `{prefix}.weight` as a `[rows, dim]` embedding table.
pub(crate) fn embedding<B: Backend>(
    source: &mut dyn ParamSource,
    prefix: &str,
    rows: usize,
    dim: usize,
    device: &B::Device,
) -> Result<Embedding<B>, ModelError> {
    let weight = load_tensor::<B, 2>(
        source,
        &format!("{prefix}.weight"),
        [rows, dim],
        ParamKind::Weight,
        device,
    )?;
    Ok(Embedding {
        weight: Param::from_tensor(weight),
    })
}

/// `{prefix}.weight` as the scale of an RMSNorm over `dim` features.
pub(crate) fn rms_norm<B: Backend>(
    source: &mut dyn ParamSource,
    prefix: &str,
    dim: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<RmsNorm<B>, ModelError> {
    let gamma = load_tensor::<B, 1>(
        source,
        &format!("{prefix}.weight"),
        [dim],
        ParamKind::NormScale,
        device,
    )?;
    Ok(RmsNorm {
        gamma: Param::from_tensor(gamma),
        epsilon,
    })
}
