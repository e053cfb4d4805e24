//! Clipping the gradient by its global L2 norm over every parameter, as
//! `torch.nn.utils.clip_grad_norm_` and DeepSpeed's `gradient_clipping` do (Burn's own clipping
//! works per tensor). SFT and PPO share it: `max_grad_norm` means the same in both.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sum += g.square().sum().into_scalar().elem::<f64>();
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Scales `grads` so that their global norm is at most `max_norm` (by
/// `max_norm / (norm + 1e-6)`, as PyTorch); `max_norm = 0` leaves them as they are. Returns the
/// norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> f64 {
    let mut norm = SquaredNorm { grads, sum: 0.0 };
    module.visit(&mut norm);
    let total = norm.sum.sqrt();
    let factor = f64::from(max_norm) / (total + 1e-6);
    if max_norm > 0.0 && factor < 1.0 {
        module.visit(&mut Scale {
            grads,
            factor: factor as f32,
        });
    }
    total
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::module::Module;
    use burn::tensor::Tensor;

    use super::*;

    type A = Autodiff<burn::backend::NdArray<f32>>;

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        a: Param<Tensor<B, 1>>,
        b: Param<Tensor<B, 2>>,
    }

    #[test]
    fn scales_all_gradients_by_the_global_norm() {
        type Inner = burn::backend::NdArray<f32>;
        let device = Default::default();
        let m = Two::<A> {
            a: Param::from_tensor(Tensor::ones([1], &device)),
            b: Param::from_tensor(Tensor::ones([1, 1], &device)),
        };
        let first =
            |g: Option<Tensor<Inner, 1>>| g.unwrap().into_data().to_vec::<f32>().unwrap()[0];
        // d/da (3a) = 3, d/db (4b) = 4: global norm 5.
        let loss = m.a.val().sum() * 3.0 + m.b.val().sum() * 4.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &m);
        let norm = clip_global_norm(&m, &mut grads, 1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        let ga = first(grads.get::<Inner, 1>(m.a.id));
        let gb = first(grads.get::<Inner, 2>(m.b.id).map(|t| t.reshape([1])));
        assert!(
            (ga - 0.6).abs() < 1e-4 && (gb - 0.8).abs() < 1e-4,
            "{ga} {gb}"
        );
        // Under the limit nothing changes.
        let loss = m.a.val().sum() * 3.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &m);
        clip_global_norm(&m, &mut grads, 10.0);
        assert_eq!(first(grads.get::<Inner, 1>(m.a.id)), 3.0);
        // 0 turns clipping off, and the norm is still measured.
        let loss = m.a.val().sum() * 30.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &m);
        assert!((clip_global_norm(&m, &mut grads, 0.0) - 30.0).abs() < 1e-4);
        assert_eq!(first(grads.get::<Inner, 1>(m.a.id)), 30.0);
    }
}
