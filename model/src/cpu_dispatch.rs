//! What the fused operations of the CPU backend share: telling `Flex` and `Autodiff<Flex>`
//! apart from every other backend, moving tensors between a generic backend's types and the
//! concrete ones, and filling fresh f32 tensors.

use std::any::{Any, TypeId};
use std::mem::MaybeUninit;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{Shape, TensorData};

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

/// A contiguous f32 tensor of `shape` whose `len` elements `fill` writes, or `None` when
/// `fill` fails (it must write every element when it returns `Ok`).
pub(crate) fn filled<E>(
    shape: impl Into<Shape>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]) -> Result<(), E>,
) -> Option<FlexTensor> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]).ok()?;
    // SAFETY: `fill` returned Ok, so it wrote all `len` elements.
    unsafe { out.set_len(len) };
    Some(FlexTensor::from_data(TensorData::new(out, shape)))
}
