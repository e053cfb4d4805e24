//! The fused SwiGLU gate, RMSNorm and RoPE of the CPU backend give Burn's results: outputs on
//! Flex and on `Autodiff<Flex>`, and the gradients (of both gate inputs; of RMSNorm's input and
//! weight; of RoPE's input) on `Autodiff<Flex>`, compared with Burn's own operations on NdArray
//! (RMSNorm's gradients: on `Autodiff<Flex>`), over odd sizes, the model's sizes, tensors of
//! several parallel chunks and non-contiguous inputs. One test runs the others again with the
//! portable row kernels (`SFTVSRL_KERNELS_FORCE_AVX2`).

use std::process::Command;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{Param, ParamId};
use burn::nn::RmsNorm;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use sftvsrl_envs::Rng;
use sftvsrl_kernels::rows::avx512_active;
use sftvsrl_model::LlamaConfig;
use sftvsrl_model::kernel_rms_norm::rms_norm_forward;
use sftvsrl_model::kernel_swiglu::swiglu;
use sftvsrl_model::rope::{Rope, RopeAngles};

mod common;

use common::{assert_close, values};

type Reference = NdArray<f32>;

/// The variable that makes the kernels crate take its portable row kernels.
const FORCE_PORTABLE: &str = "SFTVSRL_KERNELS_FORCE_AVX2";

fn random(len: usize, scale: f32, rng: &mut Rng) -> Vec<f32> {
    (0..len)
        .map(|_| (rng.unit_f64() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// `values` as a `shape` tensor; with `strided`, read through a view with the first two
/// dimensions swapped (the same values, stored with `shape[0]` and `shape[1]` swapped).
fn input<B: Backend, const D: usize>(
    values: &[f32],
    shape: [usize; D],
    strided: bool,
) -> Tensor<B, D> {
    let device = Default::default();
    let tensor = |values: Vec<f32>, shape: [usize; D]| {
        Tensor::<B, D>::from_data(TensorData::new(values, shape), &device)
    };
    if !strided {
        return tensor(values.to_vec(), shape);
    }
    let stored: Vec<f32> = tensor(values.to_vec(), shape)
        .swap_dims(0, 1)
        .into_data()
        .to_vec()
        .unwrap();
    let mut stored_shape = shape;
    stored_shape.swap(0, 1);
    tensor(stored, stored_shape).swap_dims(0, 1)
}

/// Compares optional gradients, which must be present on both sides or on neither.
fn assert_grads(got: &[Option<Vec<f32>>], want: &[Option<Vec<f32>>], tolerance: f32, what: &str) {
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        match (got, want) {
            (Some(got), Some(want)) => assert_close(got, want, tolerance, &format!("{what} #{i}")),
            (None, None) => {}
            _ => panic!("{what} #{i}: gradient present on one side only"),
        }
    }
}

/// Shapes `[batch, seq, features]`: one element, odd sizes, the tiny model's MLP width, and
/// tensors of several parallel chunks (16 Ki elements each).
const SWIGLU_SHAPES: [[usize; 3]; 5] =
    [[1, 1, 1], [2, 3, 5], [3, 7, 33], [2, 17, 96], [4, 96, 288]];

/// Forward tolerance (relative to 1 + |expected|): another `exp`, a few ulps.
const SWIGLU_TOLERANCE: f32 = 1e-5;

#[test]
fn swiglu_matches_burns() {
    let mut rng = Rng::new(21);
    for shape in SWIGLU_SHAPES {
        let len = shape.iter().product();
        let (gate, up) = (random(len, 8.0, &mut rng), random(len, 3.0, &mut rng));
        let weights = random(len, 1.0, &mut rng);
        let want =
            values(silu(input::<Reference, 3>(&gate, shape, false)) * input(&up, shape, false));
        for strided in [false, true] {
            let what = format!("{shape:?} strided {strided}");
            let got = swiglu(
                input::<Flex, 3>(&gate, shape, strided),
                input(&up, shape, false),
            );
            assert_close(
                &values(got),
                &want,
                SWIGLU_TOLERANCE,
                &format!("{what} Flex"),
            );
            // Autodiff without a tracked input (the untracked path).
            let got = swiglu(
                input::<Autodiff<Flex>, 3>(&gate, shape, false),
                input(&up, shape, strided),
            );
            let what = format!("{what} Autodiff<Flex>");
            assert_close(&values(got), &want, SWIGLU_TOLERANCE, &what);

            for tracked in [[true, true], [true, false], [false, true]] {
                let what = format!("{what} tracked {tracked:?}");
                let track = |t: Tensor<_, 3>, on: bool| if on { t.require_grad() } else { t };
                let g = track(
                    input::<Autodiff<Reference>, 3>(&gate, shape, strided),
                    tracked[0],
                );
                let u = track(input(&up, shape, false), tracked[1]);
                let out = silu(g.clone()) * u.clone();
                let grads = (out * input(&weights, shape, false)).sum().backward();
                let want = [g.grad(&grads), u.grad(&grads)].map(|t| t.map(values));

                let track = |t: Tensor<_, 3>, on: bool| if on { t.require_grad() } else { t };
                let g = track(
                    input::<Autodiff<Flex>, 3>(&gate, shape, strided),
                    tracked[0],
                );
                let u = track(input(&up, shape, false), tracked[1]);
                let out = swiglu(g.clone(), u.clone());
                let grads = (out * input(&weights, shape, false)).sum().backward();
                let got = [g.grad(&grads), u.grad(&grads)].map(|t| t.map(values));
                assert_grads(&got, &want, SWIGLU_TOLERANCE, &what);
            }
        }
    }
}

/// Shapes `[batch, seq, dim]`, normalised over `dim`: one element, odd sizes, the tiny
/// model's training batch (many parallel chunks), and rows wider than a chunk.
const RMS_SHAPES: [[usize; 3]; 6] = [
    [1, 1, 1],
    [2, 3, 5],
    [3, 7, 33],
    [2, 17, 96],
    [32, 96, 96],
    [2, 1, 20_000],
];

/// Output and `dx` tolerance (relative to 1 + |expected|): sums of `dim` squares and products
/// in another order.
const RMS_TOLERANCE: f32 = 2e-5;
/// Tolerance of the weight's gradient, a sum over all rows (up to 3072 here).
const RMS_WEIGHT_TOLERANCE: f32 = 1e-4;

/// An RMSNorm over `gamma.len()` features with weight `gamma`, tracked where `tracked`.
fn norm<B: Backend>(gamma: &[f32], tracked: bool) -> RmsNorm<B> {
    let device = Default::default();
    let gamma = Tensor::<B, 1>::from_data(TensorData::new(gamma.to_vec(), [gamma.len()]), &device);
    RmsNorm {
        gamma: Param::initialized(ParamId::new(), gamma).set_require_grad(tracked),
        epsilon: 1e-5,
    }
}

#[test]
fn rms_norm_matches_burns() {
    let mut rng = Rng::new(8);
    for shape in RMS_SHAPES {
        let len = shape.iter().product();
        let x = random(len, 2.0, &mut rng);
        let gamma = random(shape[2], 1.5, &mut rng);
        let weights = random(len, 1.0, &mut rng);
        let want = values(norm::<Reference>(&gamma, false).forward(input(&x, shape, false)));
        for strided in [false, true] {
            let what = format!("{shape:?} strided {strided}");
            let got = rms_norm_forward(&norm::<Flex>(&gamma, false), input(&x, shape, strided));
            assert_close(&values(got), &want, RMS_TOLERANCE, &format!("{what} Flex"));
            let module = norm::<Autodiff<Flex>>(&gamma, false);
            let got = rms_norm_forward(&module, input(&x, shape, strided));
            let what = format!("{what} Autodiff<Flex>");
            assert_close(&values(got), &want, RMS_TOLERANCE, &what);

            for tracked in [[true, true], [true, false], [false, true]] {
                let what = format!("{what} tracked {tracked:?}");
                let track = |t: Tensor<_, 3>| if tracked[0] { t.require_grad() } else { t };

                // Burn's own operations on the same backend: NdArray's `dx` errs by up to 4e-5
                // (relative) at 3072 rows against an f64 reference, Flex's and ours by 1e-6.
                let x_ref = track(input::<Autodiff<Flex>, 3>(&x, shape, strided));
                let module = norm(&gamma, tracked[1]);
                let out = module.forward(x_ref.clone());
                let grads = (out * input(&weights, shape, false)).sum().backward();
                let want = [
                    x_ref.grad(&grads).map(values),
                    module.gamma.val().grad(&grads).map(values),
                ];

                let track = |t: Tensor<_, 3>| if tracked[0] { t.require_grad() } else { t };
                let x_flex = track(input::<Autodiff<Flex>, 3>(&x, shape, strided));
                let module = norm(&gamma, tracked[1]);
                let out = rms_norm_forward(&module, x_flex.clone());
                let grads = (out * input(&weights, shape, false)).sum().backward();
                let got = [
                    x_flex.grad(&grads).map(values),
                    module.gamma.val().grad(&grads).map(values),
                ];

                assert_grads(&got[..1], &want[..1], RMS_TOLERANCE, &format!("{what} dx"));
                let what = format!("{what} d_gamma");
                assert_grads(&got[1..], &want[1..], RMS_WEIGHT_TOLERANCE, &what);
            }
        }
    }
}

/// Head sizes: the tiny model's 24, halves of one vector (32), of several (128), of parts of
/// vectors (6, 2).
const ROPE_HEAD_DIMS: [usize; 5] = [24, 32, 128, 6, 2];

/// Tolerance (relative to 1 + |expected|): two products and a sum, in another order.
const ROPE_TOLERANCE: f32 = 1e-5;

/// The rotation angles of `positions` (`[batch, seq]`) for `heads` heads on `B`.
fn angles<B: Backend>(rope: &Rope, positions: &TensorData, heads: usize) -> RopeAngles<B> {
    rope.angles(
        Tensor::from_data(positions.clone(), &Default::default()),
        heads,
    )
}

#[test]
fn rope_matches_burns() {
    let mut rng = Rng::new(13);
    let (batch, seq, heads) = (3, 11, 4);
    for head_dim in ROPE_HEAD_DIMS {
        let mut config = LlamaConfig::tiny(10);
        config.head_dim = head_dim;
        let rope = Rope::new(&config);
        // Left-padded rows: positions clamped at 0, as the model computes them.
        let positions: Vec<i64> = (0..batch * seq)
            .map(|i| (i % seq) as i64 - 3 * (i / seq) as i64)
            .map(|p| p.max(0) * 37)
            .collect();
        let positions = TensorData::new(positions, [batch, seq]);
        let shape = [batch, seq, heads, head_dim];
        let len = shape.iter().product();
        let (x, weights) = (random(len, 2.0, &mut rng), random(len, 1.0, &mut rng));
        let want = values(
            angles::<Reference>(&rope, &positions, heads)
                .apply(input::<Reference, 4>(&x, shape, false)),
        );
        for strided in [false, true] {
            let what = format!("head_dim {head_dim} strided {strided}");
            let got = angles::<Flex>(&rope, &positions, heads)
                .apply(input::<Flex, 4>(&x, shape, strided));
            assert_close(&values(got), &want, ROPE_TOLERANCE, &format!("{what} Flex"));

            let x_ref = input::<Autodiff<Reference>, 4>(&x, shape, strided).require_grad();
            let out = angles(&rope, &positions, heads).apply(x_ref.clone());
            let grads = (out * input(&weights, shape, false)).sum().backward();
            let want_grad = values(x_ref.grad(&grads).unwrap());

            let x_flex = input::<Autodiff<Flex>, 4>(&x, shape, strided).require_grad();
            let out = angles(&rope, &positions, heads).apply(x_flex.clone());
            let what = format!("{what} Autodiff<Flex>");
            assert_close(&values(out.clone()), &want, ROPE_TOLERANCE, &what);
            let grads = (out * input(&weights, shape, false)).sum().backward();
            let got_grad = values(x_flex.grad(&grads).unwrap());
            assert_close(&got_grad, &want_grad, ROPE_TOLERANCE, &format!("{what} dx"));
        }
    }
}

/// Runs this file's other tests again in a child process with the portable row kernels (a
/// no-op in that child itself, and where the CPU has no AVX-512 to leave).
#[test]
fn portable_kernels_match_burns_too() {
    if std::env::var_os(FORCE_PORTABLE).is_some() {
        assert!(
            !avx512_active(),
            "{FORCE_PORTABLE} leaves the AVX-512 kernels on"
        );
        return;
    }
    if !avx512_active() {
        return;
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .env(FORCE_PORTABLE, "1")
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the tests failed with the portable kernels"
    );
}
