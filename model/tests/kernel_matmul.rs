//! The CPU backend's products through the project's kernel give Burn's results: forward on Flex,
//! and gradients on `Autodiff<Flex>`, compared with NdArray's own products.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use sftvsrl_envs::Rng;
use sftvsrl_model::kernel_matmul::matmul;

type Reference = NdArray<f32>;

fn random(rows: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    (0..rows * cols)
        .map(|_| rng.unit_f64() as f32 * 2.0 - 1.0)
        .collect()
}

fn tensor<B: Backend>(values: &[f32], shape: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
}

fn values<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], k: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    // Sums of k products of values in [-1, 1], in another order: a few ulps of k.
    let tolerance = 4.0 * k as f32 * f32::EPSILON;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance,
            "{what}[{i}]: {g} vs {w} (tolerance {tolerance})"
        );
    }
}

/// `[m, k] × [k, n]` with each operand either stored as it is used or stored transposed and
/// read through a transposed view, as the backward pass reads them.
fn operands<B: Backend>(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    (a_t, b_t): (bool, bool),
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let a = if a_t {
        tensor::<B>(a, [k, m]).transpose()
    } else {
        tensor::<B>(a, [m, k])
    };
    let b = if b_t {
        tensor::<B>(b, [n, k]).transpose()
    } else {
        tensor::<B>(b, [k, n])
    };
    (a, b)
}

const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 5, 7),
    (13, 24, 33),
    (64, 96, 288),
    (97, 129, 65),
    (200, 17, 300),
];

#[test]
fn products_match_burns_for_every_layout() {
    let mut rng = Rng::new(7);
    for (m, k, n) in SHAPES {
        let (a, b) = (random(m, k, &mut rng), random(k, n, &mut rng));
        for layout in [(false, false), (true, false), (false, true), (true, true)] {
            let (ra, rb) = operands::<Reference>(&a, &b, (m, k, n), layout);
            let want = values(ra.matmul(rb));
            let (fa, fb) = operands::<Flex>(&a, &b, (m, k, n), layout);
            let got = values(matmul(fa, fb));
            assert_close(&got, &want, k, &format!("{m}×{k}·{k}×{n} {layout:?}"));
        }
    }
}

/// The gradients of `sum(weights ⊙ a·b)` for the operands that need one, `a·b` taken by
/// `product`.
fn gradients<B: AutodiffBackend>(
    product: fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>,
    (a, b, weights): (&[f32], &[f32], &[f32]),
    shape: (usize, usize, usize),
    layout: (bool, bool),
    (a_grad, b_grad): (bool, bool),
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (x, y) = operands::<B>(a, b, shape, layout);
    let x = if a_grad { x.require_grad() } else { x };
    let y = if b_grad { y.require_grad() } else { y };
    let w = tensor::<B>(weights, [shape.0, shape.2]);
    let g = (product(x.clone(), y.clone()) * w).sum().backward();
    let grad = |t: &Tensor<B, 2>| t.grad(&g).map(values);
    (grad(&x), grad(&y))
}

#[test]
fn gradients_match_burns() {
    let mut rng = Rng::new(11);
    for (m, k, n) in SHAPES {
        let (a, b) = (random(m, k, &mut rng), random(k, n, &mut rng));
        let weights = random(m, n, &mut rng);
        let data = (&a[..], &b[..], &weights[..]);
        for layout in [(false, false), (false, true)] {
            // Each operand alone, then both, needing a gradient.
            for needs in [(true, false), (false, true), (true, true)] {
                let want = gradients::<Autodiff<Reference>>(
                    |x, y| x.matmul(y),
                    data,
                    (m, k, n),
                    layout,
                    needs,
                );
                let got = gradients::<Autodiff<Flex>>(matmul, data, (m, k, n), layout, needs);
                let what = format!("{m}×{k}·{k}×{n} {layout:?} grads {needs:?}");
                assert_eq!(got.0.is_some(), needs.0, "{what}: left gradient present");
                assert_eq!(got.1.is_some(), needs.1, "{what}: right gradient present");
                if let (Some(got), Some(want)) = (&got.0, &want.0) {
                    assert_close(got, want, n, &format!("{what} dA"));
                }
                if let (Some(got), Some(want)) = (&got.1, &want.1) {
                    assert_close(got, want, m, &format!("{what} dB"));
                }
            }
        }
    }
}
