//! What the fused operations of the CPU backend share: telling `Flex` and `Autodiff<Flex>`
//! apart from every other backend, moving tensors between a generic backend's types and the
//! concrete ones, reading Flex tensors as contiguous f32 slices, filling fresh ones, and
//! recording a fused operation's output for the backward pass.

use std::any::{Any, TypeId};
use std::mem::MaybeUninit;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Shape, TensorData};

/// A tensor of `Autodiff<Flex>` (Burn does not export the type's own name).
pub(crate) type TrackedTensor =
    <Autodiff<Flex, NoCheckpointing> as BackendTypes>::FloatTensorPrimitive;

/// The CPU backends that have fused operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuBackend {
    /// `Flex`: tensors are [`FlexTensor`]s.
    Flex,
    /// `Autodiff<Flex>` (without checkpointing): tensors are [`TrackedTensor`]s.
    Tracked,
}

impl CpuBackend {
    /// Which of the two `B` is, or `None` for any other backend.
    pub(crate) fn of<B: Backend>() -> Option<Self> {
        let backend = TypeId::of::<B>();
        if backend == TypeId::of::<Flex>() {
            Some(Self::Flex)
        } else if backend == TypeId::of::<Autodiff<Flex, NoCheckpointing>>() {
            Some(Self::Tracked)
        } else {
            None
        }
    }
}

/// `value` as the type `U`, which the caller has checked is the type `T`.
pub(crate) fn same_type<T: 'static, U: 'static>(value: T) -> U {
    match (Box::new(value) as Box<dyn Any>).downcast::<U>() {
        Ok(value) => *value,
        Err(_) => unreachable!("the caller compared the type ids"),
    }
}

/// `value` as a `U`, where its type `T` is `U`.
pub(crate) fn cast<T: 'static, U: 'static>(value: &T) -> Option<&U> {
    (value as &dyn Any).downcast_ref()
}

/// `tensor` as a contiguous f32 tensor (itself when it is one, a copy otherwise), or `None`
/// when its dtype is not f32.
pub(crate) fn contiguous_f32(tensor: &FlexTensor) -> Option<FlexTensor> {
    (tensor.dtype() == DType::F32).then(|| tensor.to_contiguous())
}

/// A gradient as a contiguous f32 tensor, converted when it has another dtype.
pub(crate) fn grad_f32(grad: FlexTensor) -> FlexTensor {
    contiguous_f32(&grad)
        .unwrap_or_else(|| FlexTensor::from_data(grad.into_data().convert::<f32>()))
}

/// The elements of a contiguous f32 tensor (as [`contiguous_f32`] and [`grad_f32`] return it).
pub(crate) fn values(tensor: &FlexTensor) -> &[f32] {
    match tensor.as_slice() {
        Some(values) => values,
        None => unreachable!("the tensor was made contiguous f32"),
    }
}

/// `N` contiguous f32 tensors of `shape` whose elements `fill` writes, or `None` when `fill`
/// fails (it must write every element of each buffer when it returns `Ok`). The buffers are
/// not zeroed first.
pub(crate) fn filled<const N: usize, E>(
    shape: impl Into<Shape>,
    fill: impl FnOnce([&mut [MaybeUninit<f32>]; N]) -> Result<(), E>,
) -> Option<[FlexTensor; N]> {
    let shape = shape.into();
    let len = shape.num_elements();
    let mut buffers: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
    fill(
        buffers
            .each_mut()
            .map(|b| &mut b.spare_capacity_mut()[..len]),
    )
    .ok()?;
    Some(buffers.map(|mut values| {
        // SAFETY: `fill` returned Ok, so it wrote all `len` elements of each buffer.
        unsafe { values.set_len(len) };
        FlexTensor::from_data(TensorData::new(values, shape.clone()))
    }))
}

/// `out`, computed from `inputs` by a fused operation, as an `Autodiff<Flex>` tensor whose
/// backward step is `step` with `state` (kept only where an input is tracked).
pub(crate) fn record<S: Backward<Flex, N>, const N: usize>(
    step: S,
    inputs: [&TrackedTensor; N],
    state: S::State,
    out: FlexTensor,
) -> TrackedTensor {
    let prepared = step
        .prepare::<NoCheckpointing>(inputs.map(|input| input.node.clone()))
        .compute_bound()
        .stateful();
    match prepared {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}
