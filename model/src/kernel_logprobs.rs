//! The log-probabilities of target tokens (the training losses' scores) on the CPU backend as
//! one fused operation.
//!
//! In Burn's operations, `log_softmax(logits).gather(targets)` is an exponential, a sum, a
//! logarithm and a subtraction over the whole `[rows, vocab]` logits, each a pass with a fresh
//! tensor (the exponential a scalar loop), then a gather; under autodiff the backward pass
//! scatters the gradient into a zero tensor of that size and runs the softmax's backward step
//! over it. [`target_scores`] computes each row's log-probability of its target, its
//! log-sum-exp and its argmax in one read of the row ([`sftvsrl_kernels::rows::log_softmax_pick`],
//! rows in parallel), and under `Autodiff<Flex>` its backward step writes
//! `d_logits = g · (onehot(target) − softmax)` in one more pass, keeping only the logits and
//! one float per row. Every other backend, another dtype, and targets outside the vocabulary
//! take Burn's operations, so the result never depends on the path beyond float rounding.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use sftvsrl_kernels::rows;

use crate::cpu_dispatch::{
    CpuBackend, TrackedTensor, cast, contiguous_f32, filled, grad_f32, record, same_type, values,
};

/// What [`target_scores`] returns for `[rows, vocab]` logits.
#[derive(Clone, Debug)]
pub struct TargetScores<B: Backend> {
    /// `log softmax(logits)[i, targets[i]]` per row, `[rows]` (differentiable in the logits).
    pub logprobs: Tensor<B, 1>,
    /// The index of each row's largest logit (the first, on ties), `[rows]`.
    pub argmax: Tensor<B, 1, Int>,
}

/// The log-probability of `targets[i]` under the softmax of row `i` of `logits`
/// (`[rows, vocab]`, `targets` `[rows]`), and each row's argmax. Fused (with its own backward
/// step) on `Flex` and `Autodiff<Flex>` for f32 logits and targets inside the vocabulary;
/// `log_softmax(logits, 1).gather(1, targets)` and `logits.argmax(1)` everywhere else.
pub fn target_scores<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> TargetScores<B> {
    let [rows, _] = logits.dims();
    let (logprobs, argmax) = scores(logits, targets, true);
    let argmax = argmax.unwrap_or_else(|| unreachable!("asked for"));
    debug_assert_eq!(argmax.dims(), [rows]);
    TargetScores { logprobs, argmax }
}

/// The `logprobs` of [`target_scores`] alone (on other backends, without the argmax).
pub fn target_logprobs<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    scores(logits, targets, false).0
}

/// The log-probabilities, and the argmax where `want_argmax` (the fused path always has it).
fn scores<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    want_argmax: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 1, Int>>) {
    let [rows, vocab] = logits.dims();
    let backend = match CpuBackend::of::<B>() {
        Some(backend) if targets.dims() == [rows] && vocab > 0 => backend,
        _ => return burn_scores(logits, targets, want_argmax),
    };
    let Some(ids) = host_targets(&targets, vocab) else {
        return burn_scores(logits, targets, want_argmax);
    };
    let device = logits.device();
    let logits = match logits.into_primitive() {
        TensorPrimitive::Float(logits) => logits,
        other => return burn_scores(Tensor::from_primitive(other), targets, want_argmax),
    };
    let fused: Option<(B::FloatTensorPrimitive, Vec<i64>)> = match backend {
        CpuBackend::Flex => cast(&logits)
            .and_then(|x| forward(x, &ids))
            .map(|(scores, _)| (same_type(scores.logprobs), scores.argmax)),
        CpuBackend::Tracked => cast(&logits)
            .and_then(|x| tracked(x, ids))
            .map(|(logprobs, argmax)| (same_type(logprobs), argmax)),
    };
    match fused {
        Some((logprobs, argmax)) => (
            Tensor::from_primitive(TensorPrimitive::Float(logprobs)),
            Some(Tensor::from_data(TensorData::new(argmax, [rows]), &device)),
        ),
        None => {
            let logits = Tensor::from_primitive(TensorPrimitive::Float(logits));
            burn_scores(logits, targets, want_argmax)
        }
    }
}

/// [`scores`] by Burn's operations.
fn burn_scores<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    want_argmax: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 1, Int>>) {
    let [rows, _] = logits.dims();
    let argmax = want_argmax.then(|| logits.clone().argmax(1).reshape([rows]));
    let logprobs = log_softmax(logits, 1)
        .gather(1, targets.reshape([rows, 1]))
        .reshape([rows]);
    (logprobs, argmax)
}

/// The targets as token indices, or `None` when one is outside `0..vocab`.
fn host_targets<B: Backend>(targets: &Tensor<B, 1, Int>, vocab: usize) -> Option<Vec<u32>> {
    let data = targets.clone().into_data();
    data.iter::<i64>()
        .map(|t| u32::try_from(t).ok().filter(|&t| (t as usize) < vocab))
        .collect()
}

/// The fused forward step's results.
struct Scores {
    /// The targets' log-probabilities, `[rows]`.
    logprobs: FlexTensor,
    /// Each row's argmax.
    argmax: Vec<i64>,
}

/// What the backward step reads.
#[derive(Debug, Clone)]
struct Saved {
    /// The logits, contiguous f32 `[rows, vocab]`.
    logits: FlexTensor,
    targets: Vec<u32>,
    /// Each row's log-sum-exp.
    lse: Vec<f32>,
}

/// The scores of `logits` against `targets`, and what the backward step reads; `None` for
/// logits that are not f32 or not `[targets.len(), vocab]`.
fn forward(logits: &FlexTensor, targets: &[u32]) -> Option<(Scores, Saved)> {
    let logits = contiguous_f32(logits)?;
    let &[rows, vocab] = &logits.layout().shape()[..] else {
        return None;
    };
    let (mut picked, mut lse, mut argmax) = (vec![0.0; rows], vec![0.0; rows], vec![0u32; rows]);
    rows::log_softmax_pick(
        values(&logits),
        vocab,
        targets,
        &mut picked,
        &mut lse,
        &mut argmax,
    )
    .ok()?;
    let scores = Scores {
        logprobs: FlexTensor::from_data(TensorData::new(picked, [rows])),
        argmax: argmax.into_iter().map(i64::from).collect(),
    };
    let saved = Saved {
        logits,
        targets: targets.to_vec(),
        lse,
    };
    Some((scores, saved))
}

/// The backward step of the fused scores.
#[derive(Debug)]
struct FusedLogprobs;

impl Backward<Flex, 1> for FusedLogprobs {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grad_f32(grads.consume::<Flex>(&ops.node));
        let Saved {
            logits,
            targets,
            lse,
        } = &ops.state;
        let vocab = logits.layout().shape()[1];
        let filled = filled(logits.layout().shape().clone(), |[d_logits]| {
            let (x, g) = (values(logits), values(&grad));
            rows::log_softmax_pick_backward(x, vocab, targets, lse, g, d_logits)
        });
        let (Some([d_logits]), [Some(node)]) = (filled, ops.parents) else {
            unreachable!("the forward step ran on the same shapes, and the logits are tracked");
        };
        grads.register::<Flex>(node.id, d_logits);
    }
}

/// The fused scores of `Autodiff<Flex>` logits, the log-probabilities recorded for the
/// backward pass; `None` where [`forward`] refuses the inputs.
fn tracked(logits: &TrackedTensor, targets: Vec<u32>) -> Option<(TrackedTensor, Vec<i64>)> {
    let (scores, saved) = forward(&logits.primitive, &targets)?;
    let logprobs = record(FusedLogprobs, [logits], saved, scores.logprobs);
    Some((logprobs, scores.argmax))
}
