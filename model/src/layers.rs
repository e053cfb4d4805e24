//! Building Burn's basic layers (linear, embedding, RMSNorm, LayerNorm) from a [`ParamSource`] under their
//! Hugging Face names.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm};
use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::error::ModelError;
use crate::kernel_matmul::matmul;
use crate::lora::LoraAdapter;
use crate::weights::{ParamKind, ParamSource, load_tensor};

/// `{prefix}.weight` (HF layout `[d_out, d_in]`) and, with `bias`, `{prefix}.bias`. Burn keeps
/// linear weights as `[d_in, d_out]`; the matrix is transposed in memory as it is loaded (a
/// transposed view would make every matmul on the CPU backends several times slower).
pub(crate) fn linear<B: Backend>(
    source: &mut dyn ParamSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, ModelError> {
    let hf = source.values(
        &format!("{prefix}.weight"),
        &[d_out, d_in],
        ParamKind::Weight,
    )?;
    let mut values = vec![0.0; hf.len()];
    for (o, row) in hf.chunks_exact(d_in).enumerate() {
        for (i, &x) in row.iter().enumerate() {
            values[i * d_out + o] = x;
        }
    }
    let weight = Tensor::<B, 2>::from_data(TensorData::new(values, [d_in, d_out]), device);
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
        weight: Param::from_tensor(weight),
        bias,
    })
}

/// `layer` applied to `x` (`[batch, seq, d_in]`) as one 2-D matrix product, plus the update of
/// its LoRA adapter when it has one. (Burn's `Linear::forward` multiplies per batch row, which
/// turns one-token decoding steps into many matrix-vector products.)
pub(crate) fn apply<B: Backend>(
    layer: &Linear<B>,
    lora: Option<&LoraAdapter<B>>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let weight = layer.weight.val();
    let d_out = weight.dims()[1];
    let x = x.reshape([batch * seq, d_in]);
    let y = match lora {
        Some(adapter) => matmul(x.clone(), weight) + adapter.update(x),
        None => matmul(x, weight),
    };
    let y = match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    };
    y.reshape([batch, seq, d_out])
}

/// `{name}` as a `[rows, cols]` matrix in its stored (HF) layout.
pub(crate) fn matrix<B: Backend>(
    source: &mut dyn ParamSource,
    name: &str,
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Result<Param<Tensor<B, 2>>, ModelError> {
    let m = load_tensor::<B, 2>(source, name, [rows, cols], ParamKind::Weight, device)?;
    Ok(Param::from_tensor(m))
}

/// `{prefix}.weight` as a `[rows, dim]` embedding table.
pub(crate) fn embedding<B: Backend>(
    source: &mut dyn ParamSource,
    prefix: &str,
    rows: usize,
    dim: usize,
    device: &B::Device,
) -> Result<Embedding<B>, ModelError> {
    Ok(Embedding {
        weight: matrix(source, &format!("{prefix}.weight"), rows, dim, device)?,
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

/// `{prefix}.weight` and `{prefix}.bias` as a LayerNorm over `dim` features.
pub(crate) fn layer_norm<B: Backend>(
    source: &mut dyn ParamSource,
    prefix: &str,
    dim: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<LayerNorm<B>, ModelError> {
    let mut norm = LayerNormConfig::new(dim).with_epsilon(epsilon).init(device);
    let load = |source: &mut dyn ParamSource, name: &str, kind| {
        load_tensor::<B, 1>(source, &format!("{prefix}.{name}"), [dim], kind, device)
    };
    norm.gamma = Param::from_tensor(load(source, "weight", ParamKind::NormScale)?);
    norm.beta = Some(Param::from_tensor(load(source, "bias", ParamKind::Bias)?));
    Ok(norm)
}
