//! AdamW with a fused step on the CPU backend.
//!
//! [`FusedAdamW`] is Burn's AdamW (decoupled weight decay; with a decay of 0 it is Adam) whose
//! step, for an f32 parameter of `Flex` (the inner backend of `Autodiff<Flex>`), is one pass
//! that updates the parameter and both moments in place ([`sftvsrl_kernels::adam::adamw`])
//! instead of Burn's chain of a dozen elementwise tensor operations. Every other backend and
//! dtype, and AMSGrad state, take Burn's [`AdamW`] step. The state is Burn's [`AdamWState`], so
//! the optimizer records (and the checkpoints holding them) are the same either way.

use burn::backend::flex::FlexTensor;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use sftvsrl_kernels::adam::{AdamwStep, adamw};

use crate::cpu_dispatch::{CpuBackend, contiguous_f32, same_type, values};

/// AdamW's settings; the step is fused on the CPU backend (see the module's documentation).
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// Burn's AdamW with the same settings, for the steps that are not fused.
    burn: AdamW,
}

impl FusedAdamW {
    /// AdamW with moments' decay rates `beta_1` and `beta_2`, `epsilon` added to the second
    /// moment's root, and decoupled `weight_decay` (0 makes it Adam).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            burn,
        }
    }

    /// The optimizer of module `M`'s parameters.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(self)
    }

    /// The fused step's constants, or `None` when the tensors are not f32 `Flex` tensors of
    /// one shape or the state holds AMSGrad's maximum (Burn's step runs then).
    fn fused_step<B: Backend, const D: usize>(
        &self,
        lr: f64,
        tensor: &Tensor<B, D>,
        grad: &Tensor<B, D>,
        state: Option<&AdamWState<B, D>>,
    ) -> Option<AdamwStep> {
        if CpuBackend::of::<B>() != Some(CpuBackend::Flex) {
            return None;
        }
        let shape = tensor.shape();
        let moments_fit = state.is_none_or(|s| {
            let m = &s.momentum;
            m.max_moment_2.is_none()
                && [&m.moment_1, &m.moment_2]
                    .iter()
                    .all(|t| t.shape() == shape && t.dtype() == DType::F32)
        });
        let f32s = tensor.dtype() == DType::F32 && grad.dtype() == DType::F32;
        let fits = f32s && grad.shape() == shape && moments_fit;
        fits.then(|| AdamwStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time: state.map_or(1, |s| s.momentum.time + 1) as i32,
        })
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let Some(step) = self.fused_step(lr, &tensor, &grad, state.as_ref()) else {
            return self.burn.step(lr, tensor, grad, state);
        };
        let grad = contiguous_f32(&flex(grad)).unwrap_or_else(|| unreachable!("checked f32"));
        let mut param = flex(tensor).to_contiguous();
        let (mut moment_1, mut moment_2) = match state {
            Some(s) => (
                flex(s.momentum.moment_1).to_contiguous(),
                flex(s.momentum.moment_2).to_contiguous(),
            ),
            None => {
                let shape = param.layout().shape().clone();
                let zeros = || FlexTensor::zeros(shape.clone(), DType::F32);
                (zeros(), zeros())
            }
        };
        let updated = adamw(
            param.storage_mut(),
            values(&grad),
            moment_1.storage_mut(),
            moment_2.storage_mut(),
            &step,
        );
        if let Err(e) = updated {
            unreachable!("the shapes were checked equal: {e}");
        }
        let momentum =
            AdaptiveMomentumState::new(step.time as usize, generic(moment_1), generic(moment_2));
        (generic(param), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// A tensor of `B`, which the caller checked is `Flex`, as a [`FlexTensor`].
fn flex<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FlexTensor {
    same_type(tensor.into_primitive().tensor())
}

/// A [`FlexTensor`] as a tensor of `B`, which the caller checked is `Flex`.
fn generic<B: Backend, const D: usize>(tensor: FlexTensor) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(same_type(tensor)))
}
