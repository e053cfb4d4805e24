//! The fused target log-probabilities of the CPU backend give Burn's results: the
//! log-probabilities and argmax on Flex and on `Autodiff<Flex>`, and the gradient of the
//! logits on `Autodiff<Flex>` (through a weighted sum, as the SFT loss takes it), compared with
//! `log_softmax(..).gather(..)` and `argmax` on NdArray, over odd vocabularies, the model's,
//! rows of several parallel chunks, a transposed (strided) logits view, ties and a suppressed
//! token; `token_logprobs` (the RL scores) agrees with Burn's operations at a temperature.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use sftvsrl_envs::Rng;
use sftvsrl_model::kernel_logprobs::{target_logprobs, target_scores};
use sftvsrl_model::token_logprobs;

mod common;

use common::{assert_close, values};

type Reference = NdArray<f32>;

/// Log-probabilities: sums of up to 1000 exponentials in f32, relative to 1 + |expected|.
const TOLERANCE: f32 = 2e-5;
/// Gradients `w · (onehot − softmax)` against f64, elementwise.
const GRAD_TOLERANCE: f32 = 1e-6;
/// Gradients against Burn's f32 operations (their own rounding: a log-softmax through an
/// unshifted sum, and its exponential), elementwise.
const BURN_GRAD_TOLERANCE: f32 = 1e-4;

struct Case {
    rows: usize,
    vocab: usize,
    logits: Vec<f32>,
    targets: Vec<i64>,
    weights: Vec<f32>,
}

impl Case {
    fn new(rows: usize, vocab: usize, rng: &mut Rng) -> Self {
        let mut logits: Vec<f32> = (0..rows * vocab)
            .map(|_| (rng.unit_f64() as f32 * 2.0 - 1.0) * 6.0)
            .collect();
        for (i, row) in logits.chunks_exact_mut(vocab).enumerate() {
            if vocab > 2 && i % 4 == 1 {
                // A tie for the largest logit; elsewhere a suppressed token.
                row[0] = 9.0;
                row[vocab - 1] = 9.0;
            } else if vocab > 2 && i % 4 == 2 {
                row[1] = -1e9;
            }
        }
        Case {
            rows,
            vocab,
            logits,
            targets: (0..rows).map(|i| ((i * 5 + 1) % vocab) as i64).collect(),
            weights: (0..rows).map(|i| [1.0, 0.0, 0.5][i % 3]).collect(),
        }
    }

    /// Logits `[rows, vocab]`, read through a transposed view when `strided`; targets; weights.
    fn tensors<B: Backend>(
        &self,
        strided: bool,
    ) -> (Tensor<B, 2>, Tensor<B, 1, Int>, Tensor<B, 1>) {
        let device = Default::default();
        let (r, v) = (self.rows, self.vocab);
        let logits =
            Tensor::<B, 2>::from_data(TensorData::new(self.logits.clone(), [r, v]), &device);
        let logits = if strided {
            let stored: Vec<f32> = logits.transpose().into_data().to_vec().unwrap();
            Tensor::<B, 2>::from_data(TensorData::new(stored, [v, r]), &device).transpose()
        } else {
            logits
        };
        (
            logits,
            Tensor::from_data(TensorData::new(self.targets.clone(), [r]), &device),
            Tensor::from_data(TensorData::new(self.weights.clone(), [r]), &device),
        )
    }
}

fn reference<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let rows = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([rows, 1]))
        .reshape([rows])
}

fn ints<B: Backend>(t: Tensor<B, 1, Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

const SHAPES: [(usize, usize); 6] = [(1, 1), (3, 7), (5, 16), (9, 33), (1536, 512), (40, 1000)];

#[test]
fn scores_match_burns_on_flex_and_autodiff() {
    let mut rng = Rng::new(3);
    for (rows, vocab) in SHAPES {
        let case = Case::new(rows, vocab, &mut rng);
        for strided in [false, true] {
            let what = format!("{rows}×{vocab} strided {strided}");
            let (logits, targets, _) = case.tensors::<Reference>(strided);
            let want = values(reference(logits.clone(), targets));
            let want_argmax = ints(logits.argmax(1).reshape([rows]));

            let (logits, targets, _) = case.tensors::<Flex>(strided);
            let scores = target_scores(logits.clone(), targets.clone());
            assert_close(
                &values(scores.logprobs),
                &want,
                TOLERANCE,
                &format!("{what} Flex"),
            );
            assert_eq!(ints(scores.argmax), want_argmax, "{what} Flex argmax");
            let alone = target_logprobs(logits, targets);
            assert_close(
                &values(alone),
                &want,
                TOLERANCE,
                &format!("{what} Flex alone"),
            );

            let (logits, targets, _) = case.tensors::<Autodiff<Flex>>(strided);
            let scores = target_scores(logits, targets);
            assert_close(
                &values(scores.logprobs),
                &want,
                TOLERANCE,
                &format!("{what} Autodiff"),
            );
            assert_eq!(ints(scores.argmax), want_argmax, "{what} Autodiff argmax");
        }
    }
}

#[test]
fn gradients_match_burns() {
    let mut rng = Rng::new(4);
    for (rows, vocab) in SHAPES {
        let case = Case::new(rows, vocab, &mut rng);
        let strided = rows % 2 == 1;
        let (logits, targets, w) = case.tensors::<Autodiff<Reference>>(strided);
        let logits = logits.require_grad();
        let g = (reference(logits.clone(), targets) * w)
            .sum()
            .neg()
            .backward();
        let want = values(logits.grad(&g).unwrap());

        let (logits, targets, w) = case.tensors::<Autodiff<Flex>>(strided);
        let logits = logits.require_grad();
        let scores = target_scores(logits.clone(), targets);
        let g = (scores.logprobs * w).sum().neg().backward();
        let got = values(logits.grad(&g).unwrap());
        let what = format!("{rows}×{vocab} d_logits");
        assert_close(&got, &want, BURN_GRAD_TOLERANCE, &format!("{what} vs Burn"));
        assert_close(
            &got,
            &case.f64_gradient(),
            GRAD_TOLERANCE,
            &format!("{what} vs f64"),
        );
    }
}

impl Case {
    /// The gradient of `−Σ w · logprob` in f64: `w · (softmax − onehot)` per row.
    fn f64_gradient(&self) -> Vec<f32> {
        let mut grad = Vec::new();
        for (i, row) in self.logits.chunks_exact(self.vocab).enumerate() {
            let max = row.iter().map(|&x| x as f64).fold(f64::MIN, f64::max);
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            for (j, &x) in row.iter().enumerate() {
                let p = (x as f64 - max).exp() / sum;
                let onehot = if j as i64 == self.targets[i] {
                    1.0
                } else {
                    0.0
                };
                grad.push((self.weights[i] as f64 * (p - onehot)) as f32);
            }
        }
        grad
    }
}

/// The RL side's `token_logprobs` (`[batch, seq, vocab]` logits at a temperature) goes through
/// the fused scores: Burn's log-softmax of the scaled logits, and its gradient.
#[test]
fn token_logprobs_match_burns() {
    let mut rng = Rng::new(5);
    let case = Case::new(24, 50, &mut rng);
    let shape = [4, 6, 50];
    let run = |logits: Tensor<Autodiff<Flex>, 2>, targets: Tensor<Autodiff<Flex>, 1, Int>| {
        let logits = logits.reshape(shape).require_grad();
        let lp = token_logprobs(logits.clone(), targets.reshape([4, 6]), 0.7);
        let out = values(lp.clone());
        (
            out,
            values(logits.grad(&(lp * 0.5).sum().backward()).unwrap()),
        )
    };
    let (logits, targets, _) = case.tensors::<Autodiff<Flex>>(false);
    let (got, got_grad) = run(logits, targets);
    let (logits, targets, _) = case.tensors::<Autodiff<Reference>>(false);
    let logits = logits.reshape(shape).require_grad();
    let lp = log_softmax(logits.clone() / 0.7, 2)
        .gather(2, targets.reshape([4, 6, 1]))
        .reshape([4, 6]);
    let want = values(lp.clone());
    let want_grad = values(logits.grad(&(lp * 0.5).sum().backward()).unwrap());
    assert_close(&got, &want, TOLERANCE, "token_logprobs");
    assert_close(
        &got_grad,
        &want_grad,
        GRAD_TOLERANCE,
        "token_logprobs gradient",
    );
}
