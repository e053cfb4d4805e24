//! The rotary position embedding of the CPU backend as one fused operation.
//!
//! In Burn's operations, the rotate-half RoPE `x ⊙ cos + (x₂, x₁) ⊙ sin` is two slices, a
//! concatenation, two products and a sum, and under autodiff as many backward steps, which
//! read the gradient through the strided view that the heads-first attention layout hands
//! back. [`rotate`] computes it in one pass per row ([`sftvsrl_kernels::rows::rope`]), and
//! under `Autodiff<Flex>` its backward step applies the transposed rotation in one more,
//! keeping only `cos` and `sin`. Every other backend, another dtype, an odd head size, angles
//! that need gradients, and shapes that differ take Burn's operations, so the result never
//! depends on the path beyond float rounding.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use sftvsrl_kernels::rows::{self, RopeStep};

use crate::cpu_dispatch::{
    CpuBackend, TrackedTensor, cast, contiguous_f32, filled, grad_f32, record, same_type, values,
};

/// `x ⊙ cos + (x₂, x₁) ⊙ sin` for `x`, `cos` and `sin` of one shape `[.., .., .., head_dim]`,
/// where `(x₂, x₁)` swaps the two halves of each head (`sin` carries the rotation's sign).
/// Fused on `Flex` and `Autodiff<Flex>` (f32, even head size, untracked angles), Burn's
/// operations everywhere else.
pub fn rotate<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let backend = match CpuBackend::of::<B>() {
        Some(backend) if x.dims() == cos.dims() && x.dims() == sin.dims() => backend,
        _ => return burn_rotate(x, cos, sin),
    };
    let primitives = (
        x.into_primitive(),
        cos.clone().into_primitive(),
        sin.clone().into_primitive(),
    );
    let (x, cos_p, sin_p) = match primitives {
        (TensorPrimitive::Float(x), TensorPrimitive::Float(c), TensorPrimitive::Float(s)) => {
            (x, c, s)
        }
        (x, _, _) => return burn_rotate(Tensor::from_primitive(x), cos, sin),
    };
    let fused: Option<B::FloatTensorPrimitive> = match backend {
        CpuBackend::Flex => cast(&x)
            .zip(cast(&cos_p).zip(cast(&sin_p)))
            .and_then(|(x, (cos, sin))| forward(x, cos, sin))
            .map(|(out, _)| same_type(out)),
        CpuBackend::Tracked => cast(&x)
            .zip(cast(&cos_p).zip(cast(&sin_p)))
            .and_then(|(x, (cos, sin))| tracked(x, cos, sin))
            .map(same_type),
    };
    match fused {
        Some(out) => Tensor::from_primitive(TensorPrimitive::Float(out)),
        None => burn_rotate(Tensor::from_primitive(TensorPrimitive::Float(x)), cos, sin),
    }
}

/// [`rotate`] by Burn's operations.
fn burn_rotate<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [batch, seq, heads, dim] = x.dims();
    let half = dim / 2;
    let x1 = x.clone().slice([0..batch, 0..seq, 0..heads, 0..half]);
    let x2 = x.clone().slice([0..batch, 0..seq, 0..heads, half..dim]);
    let swapped = Tensor::cat(vec![x2, x1], 3);
    x * cos.clone() + swapped * sin.clone()
}

/// The rotated `x`, and the contiguous `cos` and `sin` the backward step reads; `None` for
/// inputs that are not f32 or an odd (or zero) head size.
fn forward(
    x: &FlexTensor,
    cos: &FlexTensor,
    sin: &FlexTensor,
) -> Option<(FlexTensor, [FlexTensor; 2])> {
    let [x, cos, sin] = [x, cos, sin].map(contiguous_f32);
    let (x, cos, sin) = (x?, cos?, sin?);
    let shape = x.layout().shape().clone();
    let dim = *shape.last()?;
    let [out] = filled(shape, |[out]| {
        rows::rope(
            values(&x),
            values(&cos),
            values(&sin),
            dim,
            RopeStep::Forward,
            out,
        )
    })?;
    Some((out, [cos, sin]))
}

/// The backward step of the fused rotation.
#[derive(Debug)]
struct FusedRope;

impl Backward<Flex, 1> for FusedRope {
    /// The contiguous f32 `cos` and `sin`.
    type State = [FlexTensor; 2];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grad_f32(grads.consume::<Flex>(&ops.node));
        let [cos, sin] = &ops.state;
        let shape = cos.layout().shape().clone();
        let dim = shape.last().copied().unwrap_or_default();
        let filled = filled(shape, |[dx]| {
            let (grad, cos, sin) = (values(&grad), values(cos), values(sin));
            rows::rope(grad, cos, sin, dim, RopeStep::Backward, dx)
        });
        let (Some([dx]), [Some(node)]) = (filled, ops.parents) else {
            unreachable!("the forward step ran on the same shapes, and x is tracked");
        };
        grads.register::<Flex>(node.id, dx);
    }
}

/// The fused rotation of an `Autodiff<Flex>` tensor by untracked angles, recorded for the
/// backward pass; `None` where [`forward`] refuses the inputs or the angles are tracked.
fn tracked(x: &TrackedTensor, cos: &TrackedTensor, sin: &TrackedTensor) -> Option<TrackedTensor> {
    if cos.is_tracked() || sin.is_tracked() {
        return None;
    }
    let (out, angles) = forward(&x.primitive, &cos.primitive, &sin.primitive)?;
    Some(record(FusedRope, [x], angles, out))
}
