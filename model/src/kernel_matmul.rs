//! Matrix products of the CPU backend through the project's own kernel.
//!
//! Burn's Flex backend multiplies through the `gemm` crate, which reaches about a quarter of this
//! machine's f32 peak. [`matmul`] sends every 2-D f32 product of Flex, and of `Autodiff<Flex>`
//! in both directions (the backward products `dY·Wᵀ` and `Xᵀ·dY` read transposed views without
//! copying them), to [`sftvsrl_kernels::sgemm`]. Every other backend, a CPU without AVX2, and an
//! operand the kernel cannot read (negative strides, another dtype) take Burn's own product, so
//! the result never depends on which path ran beyond float rounding.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, binary};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use sftvsrl_kernels::{MatRef, sgemm_available, sgemm_uninit};

use crate::cpu_dispatch::{CpuBackend, TrackedTensor, filled, record, same_type};

/// `lhs · rhs` for `[m, k] × [k, n]`, through the project's kernel where the backend is the CPU
/// one, and through Burn's `Tensor::matmul` everywhere else.
pub fn matmul<B: Backend>(lhs: Tensor<B, 2>, rhs: Tensor<B, 2>) -> Tensor<B, 2> {
    let backend = match CpuBackend::of::<B>() {
        Some(backend) if sgemm_available() => backend,
        _ => return lhs.matmul(rhs),
    };
    let (lhs, rhs) = match (lhs.into_primitive(), rhs.into_primitive()) {
        (TensorPrimitive::Float(lhs), TensorPrimitive::Float(rhs)) => (lhs, rhs),
        (lhs, rhs) => return Tensor::from_primitive(lhs).matmul(Tensor::from_primitive(rhs)),
    };
    let out: B::FloatTensorPrimitive = match backend {
        CpuBackend::Flex => same_type(flex_product(same_type(lhs), same_type(rhs))),
        CpuBackend::Tracked => same_type(tracked_product(same_type(lhs), same_type(rhs))),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The product of two Flex matrices: the kernel when it can read both operands, Flex's own
/// product otherwise.
fn flex_product(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
    kernel_product(&lhs, &rhs).unwrap_or_else(|| Flex::float_matmul(lhs, rhs))
}

/// `lhs · rhs` by the kernel, or `None` where an operand is not a 2-D f32 view with
/// non-negative strides (or the kernel refuses it).
fn kernel_product(lhs: &FlexTensor, rhs: &FlexTensor) -> Option<FlexTensor> {
    let a = view(lhs)?;
    let b = view(rhs)?;
    let (m, n) = (a.rows, b.cols);
    // A product whose size overflows is refused (the shape's element count would too).
    m.checked_mul(n)?;
    let [out] = filled([m, n], |[out]| sgemm_uninit(a, b, out))?;
    Some(out)
}

/// A 2-D f32 Flex tensor as the kernel's strided view.
fn view(tensor: &FlexTensor) -> Option<MatRef<'_>> {
    if tensor.dtype() != DType::F32 {
        return None;
    }
    let layout = tensor.layout();
    let (&[rows, cols], &[row_stride, col_stride]) = (&layout.shape()[..], layout.strides()) else {
        return None;
    };
    let data: &[f32] = tensor.storage();
    Some(MatRef {
        data: data.get(layout.start_offset()..)?,
        rows,
        cols,
        row_stride: usize::try_from(row_stride).ok()?,
        col_stride: usize::try_from(col_stride).ok()?,
    })
}

/// The backward step of [`tracked_product`]: `dA = dC·Bᵀ`, `dB = Aᵀ·dC`, both by the kernel.
#[derive(Debug)]
struct KernelMatmul;

impl Backward<Flex, 2> for KernelMatmul {
    /// The left operand (kept when the right one needs a gradient) and the right one (kept when
    /// the left one does).
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| match rhs {
                Some(rhs) => flex_product(grad, rhs.transpose(0, 1)),
                None => unreachable!("the right operand is kept whenever the left is tracked"),
            },
            |grad| match lhs {
                Some(lhs) => flex_product(lhs.transpose(0, 1), grad),
                None => unreachable!("the left operand is kept whenever the right is tracked"),
            },
        );
    }
}

/// The product of two `Autodiff<Flex>` matrices, recorded for the backward pass.
fn tracked_product(lhs: TrackedTensor, rhs: TrackedTensor) -> TrackedTensor {
    let state = (
        rhs.is_tracked().then(|| lhs.primitive.clone()),
        lhs.is_tracked().then(|| rhs.primitive.clone()),
    );
    let out = flex_product(lhs.primitive.clone(), rhs.primitive.clone());
    record(KernelMatmul, [&lhs, &rhs], state, out)
}
