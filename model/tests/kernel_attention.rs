//! The fused attention of the CPU backend gives Burn's results: the output on Flex and on
//! `Autodiff<Flex>`, and the gradients of q, k and v on `Autodiff<Flex>`, compared with Burn's
//! own attention on NdArray, for causal and padding masks, grouped queries (stacked along the
//! query axis, and as separate heads in the model's sequence-major layout), caches wider than
//! the queries, strided inputs and odd sizes.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData};
use sftvsrl_envs::Rng;
use sftvsrl_model::kernel_attention::attention;

mod common;

use common::{assert_close, values};

type Reference = NdArray<f32>;

/// One attention call: `kv_heads` heads of `n_rep` stacked query heads, `seq` queries at the
/// end of `kv_len` key slots, `pad[b]` leading key slots of batch row `b` padding.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    kv_heads: usize,
    n_rep: usize,
    seq: usize,
    kv_len: usize,
    dim: usize,
    v_dim: usize,
    pad: Vec<usize>,
    /// Mask every key of query row 0 of batch row 0 (a fully masked row).
    empty_row: bool,
}

impl Case {
    fn rows(&self) -> usize {
        self.n_rep * self.seq
    }

    /// The mask, true where a query may not attend: later slots, and padding other than the
    /// query's own slot (as the model's `causal_mask`).
    fn mask(&self) -> Vec<bool> {
        let offset = self.kv_len - self.seq;
        let mut mask = Vec::new();
        for b in 0..self.batch {
            for _ in 0..self.kv_heads {
                for row in 0..self.rows() {
                    let slot = offset + row % self.seq;
                    for key in 0..self.kv_len {
                        let padding = key < self.pad[b] && key != slot;
                        let empty = self.empty_row && b == 0 && row == 0;
                        mask.push(key > slot || padding || empty);
                    }
                }
            }
        }
        mask
    }
}

struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    weights: Vec<f32>,
    mask: Vec<bool>,
}

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len)
        .map(|_| rng.unit_f64() as f32 * 4.0 - 2.0)
        .collect()
}

impl Inputs {
    fn new(case: &Case, rng: &mut Rng) -> Self {
        let pairs = case.batch * case.kv_heads;
        Inputs {
            q: random(pairs * case.rows() * case.dim, rng),
            k: random(pairs * case.kv_len * case.dim, rng),
            v: random(pairs * case.kv_len * case.v_dim, rng),
            weights: random(pairs * case.rows() * case.v_dim, rng),
            mask: case.mask(),
        }
    }

    /// q (read through a swapped view when `strided`, as the model's q), k, v, the weights of
    /// the loss and the mask (an expanded view when `strided`).
    #[allow(clippy::type_complexity)]
    fn tensors<B: Backend>(
        &self,
        case: &Case,
        strided: bool,
    ) -> (
        Tensor<B, 4>,
        Tensor<B, 4>,
        Tensor<B, 4>,
        Tensor<B, 4>,
        Tensor<B, 4, Bool>,
    ) {
        let device = Default::default();
        let (b, h, r, kl) = (case.batch, case.kv_heads, case.rows(), case.kv_len);
        let float = |values: &[f32], shape: [usize; 4]| {
            Tensor::<B, 4>::from_data(TensorData::new(values.to_vec(), shape), &device)
        };
        let q = if strided {
            // The same values stored [batch, rows, heads, dim].
            let q = float(&self.q, [b, h, r, case.dim]).swap_dims(1, 2);
            let stored: Vec<f32> = q.into_data().to_vec().unwrap();
            float(&stored, [b, r, h, case.dim]).swap_dims(1, 2)
        } else {
            float(&self.q, [b, h, r, case.dim])
        };
        let mask = |values: &[bool], shape: [usize; 4]| {
            Tensor::<B, 4, Bool>::from_data(TensorData::new(values.to_vec(), shape), &device)
        };
        let mask = if strided {
            // Every head has the same mask: store one and expand it.
            let first: Vec<bool> = (0..b)
                .flat_map(|bi| {
                    let start = bi * h * r * kl;
                    self.mask[start..start + r * kl].iter().copied()
                })
                .collect();
            mask(&first, [b, 1, r, kl]).expand([b, h, r, kl])
        } else {
            mask(&self.mask, [b, h, r, kl])
        };
        (
            q,
            float(&self.k, [b, h, kl, case.dim]),
            float(&self.v, [b, h, kl, case.v_dim]),
            float(&self.weights, [b, h, r, case.v_dim]),
            mask,
        )
    }
}

impl Inputs {
    /// q, k and v as the model hands them over: `[batch, heads, seq, dim]` with one head per
    /// query head (`n_rep` per key/value head), each a swapped view of `[batch, seq, heads,
    /// dim]` memory; and the loss weights in the same head layout.
    fn grouped<B: Backend>(
        &self,
        case: &Case,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let device = Default::default();
        let (b, kvh, heads) = (case.batch, case.kv_heads, case.kv_heads * case.n_rep);
        // Stored heads-first as given, then copied to sequence-major memory and swapped back.
        let seq_major = |values: &[f32], shape: [usize; 4]| {
            let t = Tensor::<B, 4>::from_data(TensorData::new(values.to_vec(), shape), &device);
            let [b, h, s, d] = shape;
            let stored: Vec<f32> = t.swap_dims(1, 2).into_data().to_vec().unwrap();
            Tensor::<B, 4>::from_data(TensorData::new(stored, [b, s, h, d]), &device)
                .swap_dims(1, 2)
        };
        (
            seq_major(&self.q, [b, heads, case.seq, case.dim]),
            seq_major(&self.k, [b, kvh, case.kv_len, case.dim]),
            seq_major(&self.v, [b, kvh, case.kv_len, case.v_dim]),
            Tensor::from_data(
                TensorData::new(self.weights.clone(), [b, heads, case.seq, case.v_dim]),
                &device,
            ),
        )
    }
}

fn reference(
    q: Tensor<Autodiff<Reference>, 4>,
    k: Tensor<Autodiff<Reference>, 4>,
    v: Tensor<Autodiff<Reference>, 4>,
    mask: Tensor<Autodiff<Reference>, 4, Bool>,
) -> Tensor<Autodiff<Reference>, 4> {
    burn_attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
}

fn cases() -> Vec<Case> {
    let case = |batch, kv_heads, n_rep, seq, kv_len, dim, v_dim, pad: &[usize]| Case {
        batch,
        kv_heads,
        n_rep,
        seq,
        kv_len,
        dim,
        v_dim,
        pad: pad.to_vec(),
        empty_row: false,
    };
    vec![
        // Training shapes: causal, full sequences and left padding, n_rep 1 and 2.
        case(2, 2, 1, 16, 16, 24, 24, &[0, 0]),
        case(3, 2, 2, 17, 17, 24, 24, &[0, 5, 16]),
        case(2, 1, 2, 96, 96, 24, 24, &[0, 40]),
        // Odd sizes, another value width, one head.
        case(1, 1, 1, 1, 1, 1, 1, &[0]),
        case(2, 3, 3, 13, 13, 7, 5, &[3, 0]),
        case(1, 2, 2, 33, 33, 64, 64, &[1]),
        // Generation: the cache (and the mask) wider than the queries, with padding.
        case(2, 2, 2, 1, 37, 24, 24, &[0, 9]),
        case(3, 1, 2, 5, 29, 16, 16, &[2, 0, 7]),
        case(1, 2, 1, 19, 80, 24, 24, &[11]),
    ]
}

/// Forward tolerance: outputs are weighted means of values in [-2, 2], sums of up to kv_len
/// terms in another order and with another exp; relative to 1 + |expected|.
const OUT_TOLERANCE: f32 = 2e-5;
/// Gradient tolerance (sums over kv_len and dim of products of such values).
const GRAD_TOLERANCE: f32 = 1e-4;

#[test]
fn forward_matches_burns_on_flex_and_autodiff() {
    let mut rng = Rng::new(5);
    for case in cases() {
        let inputs = Inputs::new(&case, &mut rng);
        for strided in [false, true] {
            let what = format!("{case:?} strided {strided}");
            let (q, k, v, _, mask) = inputs.tensors::<Reference>(&case, strided);
            let want = values(burn_attention(
                q,
                k,
                v,
                Some(mask),
                None,
                AttentionModuleOptions::default(),
            ));
            let (q, k, v, _, mask) = inputs.tensors::<Flex>(&case, strided);
            assert_close(
                &values(attention(q, k, v, mask)),
                &want,
                OUT_TOLERANCE,
                &format!("{what} Flex"),
            );
            // Autodiff without any tracked input (the untracked path).
            let (q, k, v, _, mask) = inputs.tensors::<Autodiff<Flex>>(&case, strided);
            assert_close(
                &values(attention(q, k, v, mask)),
                &want,
                OUT_TOLERANCE,
                &format!("{what} Autodiff<Flex>"),
            );
        }
    }
}

#[test]
fn gradients_match_burns() {
    let mut rng = Rng::new(9);
    for case in cases() {
        let inputs = Inputs::new(&case, &mut rng);
        let strided = case.pad.iter().any(|&p| p > 0);
        // All three inputs tracked, then each alone.
        for tracked in [
            [true; 3],
            [true, false, false],
            [false, true, false],
            [false, false, true],
        ] {
            let what = format!("{case:?} tracked {tracked:?}");
            let track = |t: Tensor<_, 4>, on: bool| if on { t.require_grad() } else { t };

            let (q, k, v, w, mask) = inputs.tensors::<Autodiff<Reference>>(&case, strided);
            let (q, k, v) = (
                track(q, tracked[0]),
                track(k, tracked[1]),
                track(v, tracked[2]),
            );
            let out = reference(q.clone(), k.clone(), v.clone(), mask);
            let g = (out * w).sum().backward();
            let want = [q.grad(&g), k.grad(&g), v.grad(&g)].map(|t| t.map(values));

            let (q, k, v, w, mask) = inputs.tensors::<Autodiff<Flex>>(&case, strided);
            let track = |t: Tensor<_, 4>, on: bool| if on { t.require_grad() } else { t };
            let (q, k, v) = (
                track(q, tracked[0]),
                track(k, tracked[1]),
                track(v, tracked[2]),
            );
            let out = attention(q.clone(), k.clone(), v.clone(), mask);
            let g = (out * w).sum().backward();
            let got = [q.grad(&g), k.grad(&g), v.grad(&g)].map(|t| t.map(values));

            for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
                match (got, want) {
                    (Some(got), Some(want)) => {
                        assert_close(got, want, GRAD_TOLERANCE, &format!("{what} {name}"))
                    }
                    (None, None) => {}
                    _ => panic!("{what} {name}: gradient present on one side only"),
                }
            }
        }
    }
}

#[test]
fn fully_masked_rows_give_zeros() {
    let mut rng = Rng::new(3);
    let case = Case {
        batch: 2,
        kv_heads: 2,
        n_rep: 2,
        seq: 9,
        kv_len: 9,
        dim: 8,
        v_dim: 8,
        pad: vec![0, 3],
        empty_row: true,
    };
    let inputs = Inputs::new(&case, &mut rng);
    let (q, k, v, _, mask) = inputs.tensors::<Reference>(&case, false);
    let want = values(burn_attention(
        q,
        k,
        v,
        Some(mask),
        None,
        AttentionModuleOptions::default(),
    ));
    let (q, k, v, w, mask) = inputs.tensors::<Autodiff<Flex>>(&case, false);
    let q = q.require_grad();
    let out = attention(q.clone(), k, v, mask);
    let got = values(out.clone());
    assert_close(&got, &want, OUT_TOLERANCE, "output");
    assert!(got[..case.v_dim].iter().all(|&x| x == 0.0), "masked row");
    // The masked row's queries get no gradient (and nothing is NaN).
    let dq = values(q.grad(&(out * w).sum().backward()).unwrap());
    assert!(dq.iter().all(|x| x.is_finite()));
    assert!(dq[..case.dim].iter().all(|&x| x == 0.0));
}

/// Query heads handed over separately (the model's layout, every operand a strided view) give
/// the output and gradients of Burn's attention over the same queries stacked per key/value
/// head: the same numbers in the same order.
#[test]
fn grouped_heads_match_stacked_queries() {
    let mut rng = Rng::new(13);
    for case in cases() {
        let inputs = Inputs::new(&case, &mut rng);
        let (_, _, _, _, mask) = inputs.tensors::<Reference>(&case, false);
        let (q, k, v, _) = inputs.grouped::<Reference>(&case);
        let heads = case.kv_heads * case.n_rep;
        let want = values(burn_attention(
            q.reshape([case.batch, case.kv_heads, case.rows(), case.dim]),
            k,
            v,
            Some(mask),
            None,
            AttentionModuleOptions::default(),
        ));
        let (_, _, _, _, mask) = inputs.tensors::<Flex>(&case, true);
        let (q, k, v, _) = inputs.grouped::<Flex>(&case);
        let out = attention(q, k, v, mask);
        assert_eq!(out.dims(), [case.batch, heads, case.seq, case.v_dim]);
        assert_close(
            &values(out),
            &want,
            OUT_TOLERANCE,
            &format!("{case:?} Flex"),
        );

        for tracked in [[true; 3], [true, false, false], [false, true, true]] {
            let what = format!("{case:?} grouped, tracked {tracked:?}");
            let track = |t: Tensor<_, 4>, on: bool| if on { t.require_grad() } else { t };
            let (_, _, _, _, mask) = inputs.tensors::<Autodiff<Reference>>(&case, false);
            let (q, k, v, w) = inputs.grouped::<Autodiff<Reference>>(&case);
            let (q, k, v) = (
                track(q, tracked[0]),
                track(k, tracked[1]),
                track(v, tracked[2]),
            );
            let stacked = q
                .clone()
                .reshape([case.batch, case.kv_heads, case.rows(), case.dim]);
            let out = reference(stacked, k.clone(), v.clone(), mask);
            let w = w.reshape([case.batch, case.kv_heads, case.rows(), case.v_dim]);
            let g = (out * w).sum().backward();
            let want = [q.grad(&g), k.grad(&g), v.grad(&g)].map(|t| t.map(values));

            let (_, _, _, _, mask) = inputs.tensors::<Autodiff<Flex>>(&case, true);
            let (q, k, v, w) = inputs.grouped::<Autodiff<Flex>>(&case);
            let track = |t: Tensor<_, 4>, on: bool| if on { t.require_grad() } else { t };
            let (q, k, v) = (
                track(q, tracked[0]),
                track(k, tracked[1]),
                track(v, tracked[2]),
            );
            let out = attention(q.clone(), k.clone(), v.clone(), mask);
            let g = (out * w).sum().backward();
            let got = [q.grad(&g), k.grad(&g), v.grad(&g)].map(|t| t.map(values));
            for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
                match (got, want) {
                    (Some(got), Some(want)) => {
                        assert_close(got, want, GRAD_TOLERANCE, &format!("{what} {name}"))
                    }
                    (None, None) => {}
                    _ => panic!("{what} {name}: gradient present on one side only"),
                }
            }
        }
    }
}
