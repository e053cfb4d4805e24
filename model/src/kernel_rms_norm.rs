//! RMSNorm of the CPU backend as one fused operation.
//!
//! Burn's `RmsNorm::forward` is a chain of elementwise operations and reductions (square, mean,
//! add, sqrt, divide, a broadcast product by the weight), each a pass over memory with a fresh
//! tensor, and under autodiff as many backward steps, two of them broadcasting reductions.
//! [`rms_norm_forward`] computes `x · r ⊙ weight` with `r = 1/sqrt(mean(x²) + eps)` in one
//! pass per row ([`sftvsrl_kernels::rows::rms_norm`]), and under `Autodiff<Flex>` its backward
//! step computes `dx` and the weight's gradient (reduced over all rows in parallel chunks) in
//! one more, keeping `x`, the weight and one `r` per row. The module and its parameter stay
//! Burn's [`RmsNorm`]; every other backend, another dtype, and a weight that does not match the
//! last dimension take `RmsNorm::forward`, so the result never depends on the path beyond
//! float rounding.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::RmsNorm;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use sftvsrl_kernels::rows;

use crate::cpu_dispatch::{
    CpuBackend, TrackedTensor, cast, contiguous_f32, filled, grad_f32, record, same_type, values,
};

/// `norm.forward(x)`: RMSNorm of `x` over its last dimension, scaled by `norm.gamma`. Fused
/// (with its own backward step, giving the gradients of `x` and of `gamma`) on `Flex` and
/// `Autodiff<Flex>` for f32; `RmsNorm::forward` everywhere else.
pub fn rms_norm_forward<B: Backend, const D: usize>(
    norm: &RmsNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let gamma = norm.gamma.val();
    let backend = match CpuBackend::of::<B>() {
        Some(backend) if gamma.dims()[0] == x.dims()[D - 1] => backend,
        _ => return norm.forward(x),
    };
    let (x, gamma) = match (x.into_primitive(), gamma.into_primitive()) {
        (TensorPrimitive::Float(x), TensorPrimitive::Float(gamma)) => (x, gamma),
        (x, _) => return norm.forward(Tensor::from_primitive(x)),
    };
    let eps = norm.epsilon as f32;
    let fused: Option<B::FloatTensorPrimitive> = match backend {
        CpuBackend::Flex => cast(&x)
            .zip(cast(&gamma))
            .and_then(|(x, gamma)| forward(x, gamma, eps))
            .map(|(out, _)| same_type(out)),
        CpuBackend::Tracked => cast(&x)
            .zip(cast(&gamma))
            .and_then(|(x, gamma)| tracked(x, gamma, eps))
            .map(same_type),
    };
    match fused {
        Some(out) => Tensor::from_primitive(TensorPrimitive::Float(out)),
        None => norm.forward(Tensor::from_primitive(TensorPrimitive::Float(x))),
    }
}

/// What the backward step reads.
#[derive(Clone, Debug)]
struct Saved {
    /// The input, contiguous f32.
    x: FlexTensor,
    /// The weight, contiguous f32.
    gamma: FlexTensor,
    /// `1/sqrt(mean(x²) + eps)` of each row.
    inv_rms: Vec<f32>,
}

/// The normalised output and what the backward step reads; `None` for inputs that are not
/// f32 or an empty last dimension.
fn forward(x: &FlexTensor, gamma: &FlexTensor, eps: f32) -> Option<(FlexTensor, Saved)> {
    let (x, gamma) = (contiguous_f32(x)?, contiguous_f32(gamma)?);
    let dim = gamma.layout().num_elements();
    let mut inv_rms = vec![0.0; values(&x).len().checked_div(dim)?];
    let [out] = filled(x.layout().shape().clone(), |[out]| {
        rows::rms_norm(values(&x), values(&gamma), eps, out, &mut inv_rms)
    })?;
    Some((out, Saved { x, gamma, inv_rms }))
}

/// The backward step of the fused RMSNorm.
#[derive(Debug)]
struct FusedRmsNorm;

impl Backward<Flex, 2> for FusedRmsNorm {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grad_f32(grads.consume::<Flex>(&ops.node));
        let Saved { x, gamma, inv_rms } = &ops.state;
        let gamma = values(gamma);
        let mut d_gamma = vec![0.0; gamma.len()];
        let filled = filled(x.layout().shape().clone(), |[dx]| {
            rows::rms_norm_backward(values(&grad), values(x), gamma, inv_rms, dx, &mut d_gamma)
        });
        let Some([dx]) = filled else {
            unreachable!("the forward step ran on the same shapes");
        };
        let [x_node, gamma_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = gamma_node {
            let d_gamma = FlexTensor::from_data(TensorData::new(d_gamma, [gamma.len()]));
            grads.register::<Flex>(node.id, d_gamma);
        }
    }
}

/// The fused RMSNorm of an `Autodiff<Flex>` input and weight, recorded for the backward pass;
/// `None` where [`forward`] refuses the inputs.
fn tracked(x: &TrackedTensor, gamma: &TrackedTensor, eps: f32) -> Option<TrackedTensor> {
    let (out, saved) = forward(&x.primitive, &gamma.primitive, eps)?;
    Some(record(FusedRmsNorm, [x, gamma], saved, out))
}
