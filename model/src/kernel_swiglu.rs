//! The SwiGLU gate `silu(gate) ⊙ up` of the CPU backend as one fused operation.
//!
//! Burn computes the gate as three elementwise operations (sigmoid, two products), each a
//! pass over memory with a fresh tensor, and under autodiff three backward steps. [`swiglu`]
//! computes the output in one pass ([`sftvsrl_kernels::rows::swiglu`], with a vectorised
//! `exp`), and under `Autodiff<Flex>` its backward step computes both input gradients in one
//! more (`d_gate = dY ⊙ up ⊙ σ(g) ⊙ (1 + g ⊙ (1 − σ(g)))`, `d_up = dY ⊙ silu(g)`), keeping only
//! the two inputs. Every other backend, another dtype, and inputs of different shapes take
//! Burn's own operations, so the result never depends on the path beyond float rounding.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use sftvsrl_kernels::rows;

use crate::cpu_dispatch::{
    CpuBackend, TrackedTensor, cast, contiguous_f32, filled, grad_f32, record, same_type, values,
};

/// `silu(gate) * up` elementwise, for two tensors of the same shape: fused (with its own
/// backward step) on `Flex` and `Autodiff<Flex>` for f32, Burn's operations everywhere else.
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    let backend = match CpuBackend::of::<B>() {
        Some(backend) if gate.dims() == up.dims() => backend,
        _ => return silu(gate) * up,
    };
    let (gate, up) = match (gate.into_primitive(), up.into_primitive()) {
        (TensorPrimitive::Float(gate), TensorPrimitive::Float(up)) => (gate, up),
        (gate, up) => return silu(Tensor::from_primitive(gate)) * Tensor::from_primitive(up),
    };
    let fused: Option<B::FloatTensorPrimitive> = match backend {
        CpuBackend::Flex => cast(&gate)
            .zip(cast(&up))
            .and_then(|(gate, up)| forward(gate, up))
            .map(|(out, _)| same_type(out)),
        CpuBackend::Tracked => cast(&gate)
            .zip(cast(&up))
            .and_then(|(gate, up)| tracked(gate, up))
            .map(same_type),
    };
    let wrap = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
    match fused {
        Some(out) => wrap(out),
        None => silu(wrap(gate)) * wrap(up),
    }
}

/// The output of the fused gate, and the contiguous inputs its backward step reads; `None`
/// for inputs that are not f32.
fn forward(gate: &FlexTensor, up: &FlexTensor) -> Option<(FlexTensor, [FlexTensor; 2])> {
    let (gate, up) = (contiguous_f32(gate)?, contiguous_f32(up)?);
    let [out] = filled(gate.layout().shape().clone(), |[out]| {
        rows::swiglu(values(&gate), values(&up), out)
    })?;
    Some((out, [gate, up]))
}

/// The backward step of the fused gate.
#[derive(Debug)]
struct FusedSwiglu;

impl Backward<Flex, 2> for FusedSwiglu {
    /// The contiguous f32 gate and up inputs.
    type State = [FlexTensor; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grad_f32(grads.consume::<Flex>(&ops.node));
        let [gate, up] = &ops.state;
        let shape = gate.layout().shape().clone();
        let filled = filled(shape, |[d_gate, d_up]| {
            rows::swiglu_backward(values(&grad), values(gate), values(up), d_gate, d_up)
        });
        let Some(inputs_grads) = filled else {
            unreachable!("the gradient, the gate and up have the output's shape");
        };
        for (node, grad) in ops.parents.into_iter().zip(inputs_grads) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// The fused gate of two `Autodiff<Flex>` tensors, recorded for the backward pass; `None`
/// for inputs that are not f32.
fn tracked(gate: &TrackedTensor, up: &TrackedTensor) -> Option<TrackedTensor> {
    let (out, inputs) = forward(&gate.primitive, &up.primitive)?;
    Some(record(FusedSwiglu, [gate, up], inputs, out))
}
