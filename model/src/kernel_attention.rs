//! Scaled dot-product attention of the CPU backend as one fused operation.
//!
//! Under `Autodiff<Flex>`, Burn's attention is a chain of separate operations (batched product,
//! scale, mask fill, a softmax of five passes, product), each with its own backward step and a
//! full `[batch, heads, queries, keys]` tensor per pass. [`attention`] computes the same thing
//! per (batch, head) pair on rayon's pool: `S = Q·Kᵀ` by [`sftvsrl_kernels::sgemm`], one pass
//! per row for the scale, the mask, the row maximum, `exp` (a vectorised polynomial) and the
//! normalisation ([`sftvsrl_kernels::rows`]), then `O = P·V`. Under autodiff, the
//! probabilities `P` are kept (a `[batch, heads, queries, keys]` f32 tensor, one of the several
//! tensors of that size Burn's own chain keeps) together with `Q`, `K` and `V`, and the
//! backward step computes `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`,
//! `dQ = dS·K·scale` and `dK = dSᵀ·Q·scale` per pair, for the tracked inputs only.
//!
//! The semantics are Burn's (`attention_fallback`): `true` in the mask means "may not attend",
//! the scale is `1/sqrt(head_dim)`, and a row whose keys are all masked gives zeros. Every other
//! backend, a CPU without the kernels, another dtype, and shapes that do not fit take Burn's
//! own attention.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, BoolStore, DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;
use sftvsrl_kernels::rows::{softmax_grad_row, softmax_row};
use sftvsrl_kernels::{KernelError, MatRef, sgemm, sgemm_available};

use crate::cpu_dispatch::{CpuBackend, TrackedTensor, cast};

/// `softmax(q·kᵀ / sqrt(dim), masked) · v`, exactly what
/// `burn::tensor::module::attention(q, k, v, Some(mask), None, Default::default())` computes.
///
/// Shapes: `q` `[batch, heads, queries, dim]`, `k` `[batch, heads, keys, dim]`, `v`
/// `[batch, heads, keys, v_dim]`, `mask` `[batch, heads, queries, keys]` with `true` where a
/// query may not attend to a key; the result is `[batch, heads, queries, v_dim]`. On `Flex`
/// and `Autodiff<Flex>` (f32, on a CPU with the project's kernels) the operation is fused, with
/// its own backward step; everywhere else, and for inputs the fused path does not take, it is
/// Burn's attention.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    if CpuBackend::of::<B>().is_none() || !sgemm_available() {
        return burn_attention(q, k, v, mask);
    }
    let (q, k, v) = match (q.into_primitive(), k.into_primitive(), v.into_primitive()) {
        (TensorPrimitive::Float(q), TensorPrimitive::Float(k), TensorPrimitive::Float(v)) => {
            (q, k, v)
        }
        (q, k, v) => {
            let wrap = Tensor::from_primitive;
            return burn_attention(wrap(q), wrap(k), wrap(v), mask);
        }
    };
    let mask = mask.into_primitive();
    match fused::<B>(&q, &k, &v, &mask) {
        Some(out) => Tensor::from_primitive(TensorPrimitive::Float(out)),
        None => {
            let wrap = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
            burn_attention(wrap(q), wrap(k), wrap(v), Tensor::from_primitive(mask))
        }
    }
}

/// Burn's own attention, with the options the project uses.
fn burn_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    burn::tensor::module::attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
}

/// The fused attention where `B` is `Flex` or `Autodiff<Flex>` and the inputs fit it; `None`
/// sends the caller to Burn's attention.
fn fused<B: Backend>(
    q: &B::FloatTensorPrimitive,
    k: &B::FloatTensorPrimitive,
    v: &B::FloatTensorPrimitive,
    mask: &B::BoolTensorPrimitive,
) -> Option<B::FloatTensorPrimitive> {
    let mask = cast::<_, FlexTensor>(mask)?;
    let flex = cast::<_, FlexTensor>;
    let out: Box<dyn Any> = match (flex(q), flex(k), flex(v)) {
        (Some(q), Some(k), Some(v)) => {
            let problem = Problem::of(q, k, v, mask)?;
            Box::new(forward(&problem, q, k, v, mask, false)?.0)
        }
        _ => {
            let tracked = cast::<_, TrackedTensor>;
            Box::new(tracked_attention(
                tracked(q)?,
                tracked(k)?,
                tracked(v)?,
                mask,
            )?)
        }
    };
    out.downcast::<B::FloatTensorPrimitive>()
        .ok()
        .map(|out| *out)
}

/// The sizes of one attention call, checked to fit the fused path.
#[derive(Clone, Copy, Debug)]
struct Problem {
    batch: usize,
    heads: usize,
    q_len: usize,
    kv_len: usize,
    dim: usize,
    v_dim: usize,
    /// `1/sqrt(dim)`, as Burn's default.
    scale: f32,
}

impl Problem {
    /// The sizes of `q`, `k`, `v` and `mask`, or `None` when a tensor has another dtype, the
    /// shapes do not agree exactly (no broadcasting), a size is zero, or a buffer length would
    /// overflow.
    fn of(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, mask: &FlexTensor) -> Option<Self> {
        if [q, k, v].iter().any(|t| t.dtype() != DType::F32)
            || !matches!(mask.dtype(), DType::Bool(BoolStore::Native | BoolStore::U8))
        {
            return None;
        }
        let [batch, heads, q_len, dim] = dims(q)?;
        let [_, _, kv_len, v_dim] = dims(v)?;
        let agree = dims(k)? == [batch, heads, kv_len, dim]
            && dims(v)? == [batch, heads, kv_len, v_dim]
            && dims(mask)? == [batch, heads, q_len, kv_len];
        let sizes = [batch, heads, q_len, kv_len, dim, v_dim];
        if !agree || sizes.contains(&0) {
            return None;
        }
        let widest = kv_len.max(dim).max(v_dim);
        batch
            .checked_mul(heads)?
            .checked_mul(q_len.max(kv_len))?
            .checked_mul(widest)?;
        Some(Self {
            batch,
            heads,
            q_len,
            kv_len,
            dim,
            v_dim,
            scale: (1.0 / (dim as f64).sqrt()) as f32,
        })
    }

    /// Number of (batch, head) pairs.
    fn pairs(&self) -> usize {
        self.batch * self.heads
    }

    /// The (batch, head) indices of pair `pair`.
    fn split(&self, pair: usize) -> (usize, usize) {
        (pair / self.heads, pair % self.heads)
    }
}

/// The four sizes of a 4-D tensor.
fn dims(tensor: &FlexTensor) -> Option<[usize; 4]> {
    let &[a, b, c, d] = &tensor.layout().shape()[..] else {
        return None;
    };
    Some([a, b, c, d])
}

/// `tensor` itself when its strides are non-negative (and its last stride is 1 where
/// `unit_last`), a contiguous copy otherwise.
fn readable(tensor: &FlexTensor, unit_last: bool) -> FlexTensor {
    let strides = tensor.layout().strides();
    let ok = strides.iter().all(|&s| s >= 0) && (!unit_last || strides.last() == Some(&1));
    if ok {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

/// The strides of a 4-D view as `usize`, and the slice it reads from its first element on,
/// checked to hold every element the view reads.
fn strided<'a, E>(
    storage: &'a [E],
    tensor: &FlexTensor,
) -> Option<(&'a [E], [usize; 4], [usize; 4])> {
    let layout = tensor.layout();
    let shape = dims(tensor)?;
    let &[s0, s1, s2, s3] = layout.strides() else {
        return None;
    };
    let mut strides = [0; 4];
    for (dst, src) in strides.iter_mut().zip([s0, s1, s2, s3]) {
        *dst = usize::try_from(src).ok()?;
    }
    let data = storage.get(layout.start_offset()..)?;
    let mut last = 0usize;
    for (&size, &stride) in shape.iter().zip(&strides) {
        last = last.checked_add(size.checked_sub(1)?.checked_mul(stride)?)?;
    }
    (last < data.len()).then_some((data, shape, strides))
}

/// A 4-D f32 tensor read as one `[rows, cols]` matrix per (batch, head) pair.
struct Heads<'a> {
    data: &'a [f32],
    shape: [usize; 4],
    strides: [usize; 4],
}

impl<'a> Heads<'a> {
    /// The view of `tensor` (f32, non-negative strides), or `None` when it is not one.
    fn of(tensor: &'a FlexTensor) -> Option<Self> {
        if tensor.dtype() != DType::F32 {
            return None;
        }
        let (data, shape, strides) = strided(tensor.storage::<f32>(), tensor)?;
        Some(Self {
            data,
            shape,
            strides,
        })
    }

    /// The matrix of batch `b`, head `h` (an empty view past the end, which the kernel
    /// refuses; the callers stay inside).
    fn pair(&self, b: usize, h: usize) -> MatRef<'a> {
        let start = b * self.strides[0] + h * self.strides[1];
        MatRef {
            data: self.data.get(start..).unwrap_or_default(),
            rows: self.shape[2],
            cols: self.shape[3],
            row_stride: self.strides[2],
            col_stride: self.strides[3],
        }
    }
}

/// A 4-D bool tensor (stored as bytes, last stride 1) read one row at a time.
struct MaskRows<'a> {
    data: &'a [u8],
    cols: usize,
    strides: [usize; 4],
}

impl<'a> MaskRows<'a> {
    /// The view of `tensor`, or `None` when its last stride is not 1.
    fn of(tensor: &'a FlexTensor) -> Option<Self> {
        let (data, shape, strides) = strided(tensor.storage::<u8>(), tensor)?;
        (strides[3] == 1 || shape[3] == 1).then_some(Self {
            data,
            cols: shape[3],
            strides,
        })
    }

    /// Row `i` of batch `b`, head `h`.
    fn row(&self, b: usize, h: usize, i: usize) -> &'a [u8] {
        let start = b * self.strides[0] + h * self.strides[1] + i * self.strides[2];
        self.data.get(start..start + self.cols).unwrap_or_default()
    }
}

/// The next chunk of an optional buffer's chunks (`None` without a buffer).
fn next_chunk<'a>(chunks: &mut Option<std::slice::ChunksMut<'a, f32>>) -> Option<&'a mut [f32]> {
    chunks.as_mut().and_then(Iterator::next)
}

/// A contiguous f32 tensor of `shape` holding `values`.
fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The attention output `[batch, heads, q_len, v_dim]`, and the probabilities
/// `[batch, heads, q_len, kv_len]` when `keep_probs`; `None` when an operand cannot be read.
fn forward(
    problem: &Problem,
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    mask: &FlexTensor,
    keep_probs: bool,
) -> Option<(FlexTensor, Option<FlexTensor>)> {
    let (q, k, v) = (readable(q, false), readable(k, false), readable(v, false));
    let mask = readable(mask, true);
    let (qh, kh, vh) = (Heads::of(&q)?, Heads::of(&k)?, Heads::of(&v)?);
    let rows = MaskRows::of(&mask)?;
    let &Problem {
        q_len,
        kv_len,
        v_dim,
        scale,
        ..
    } = problem;
    let (p_len, o_len) = (q_len * kv_len, q_len * v_dim);
    let mut out = vec![0.0f32; problem.pairs() * o_len];
    let mut probs = keep_probs.then(|| vec![0.0f32; problem.pairs() * p_len]);
    let mut p_chunks = probs.as_deref_mut().map(|p| p.chunks_mut(p_len));
    let tasks: Vec<_> = out
        .chunks_mut(o_len)
        .enumerate()
        .map(|(pair, o)| (pair, o, next_chunk(&mut p_chunks)))
        .collect();
    tasks
        .into_par_iter()
        .try_for_each_init(Vec::new, |scratch, (pair, o, kept)| {
            let p = match kept {
                Some(p) => p,
                None => {
                    scratch.resize(p_len, 0.0);
                    scratch.as_mut_slice()
                }
            };
            let (b, h) = problem.split(pair);
            sgemm(qh.pair(b, h), kh.pair(b, h).t(), p, false)?;
            for (i, row) in p.chunks_exact_mut(kv_len).enumerate() {
                softmax_row(row, rows.row(b, h, i), scale);
            }
            sgemm(MatRef::row_major(p, q_len, kv_len), vh.pair(b, h), o, false)
        })
        .ok()?;
    let [batch, heads] = [problem.batch, problem.heads];
    Some((
        tensor(out, [batch, heads, q_len, v_dim]),
        probs.map(|p| tensor(p, [batch, heads, q_len, kv_len])),
    ))
}

/// What the backward step of [`FusedAttention`] reads.
#[derive(Clone, Debug)]
struct Saved {
    problem: Problem,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// The softmax probabilities, contiguous `[batch, heads, q_len, kv_len]`.
    probs: FlexTensor,
}

/// The backward step of the fused attention.
#[derive(Debug)]
struct FusedAttention;

impl Backward<Flex, 3> for FusedAttention {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [q_node, k_node, v_node] = ops.parents;
        let need = [q_node.is_some(), k_node.is_some(), v_node.is_some()];
        let [dq, dk, dv] = gradients(&ops.state, grad, need);
        for (node, grad) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// The fused attention of three `Autodiff<Flex>` tensors, recorded for the backward pass;
/// `None` when the inputs do not fit the fused path.
fn tracked_attention(
    q: &TrackedTensor,
    k: &TrackedTensor,
    v: &TrackedTensor,
    mask: &FlexTensor,
) -> Option<TrackedTensor> {
    let (qp, kp, vp) = (&q.primitive, &k.primitive, &v.primitive);
    let problem = Problem::of(qp, kp, vp, mask)?;
    let prepared = FusedAttention
        .prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()])
        .compute_bound()
        .stateful();
    match prepared {
        OpsKind::Tracked(prep) => {
            let (out, probs) = forward(&problem, qp, kp, vp, mask, true)?;
            let saved = Saved {
                problem,
                q: readable(qp, false),
                k: readable(kp, false),
                v: readable(vp, false),
                probs: probs?,
            };
            Some(prep.finish(saved, out))
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = forward(&problem, qp, kp, vp, mask, false)?;
            Some(prep.finish(out))
        }
    }
}

/// The gradients of q, k and v (each where `need` asks for it) from the output's gradient.
fn gradients(saved: &Saved, grad: FlexTensor, need: [bool; 3]) -> [Option<FlexTensor>; 3] {
    let grad = if grad.dtype() == DType::F32 {
        readable(&grad, false)
    } else {
        FlexTensor::from_data(grad.into_data().convert::<f32>())
    };
    let views = (
        Heads::of(&saved.q),
        Heads::of(&saved.k),
        Heads::of(&saved.v),
        Heads::of(&grad),
        saved.probs.as_slice::<f32>(),
    );
    let (Some(qh), Some(kh), Some(vh), Some(gh), Some(probs)) = views else {
        unreachable!("the saved tensors and the gradient are f32 with non-negative strides");
    };
    let &Problem {
        q_len,
        kv_len,
        dim,
        v_dim,
        scale,
        ..
    } = &saved.problem;
    let pairs = saved.problem.pairs();
    let p_len = q_len * kv_len;
    let lens = [q_len * dim, kv_len * dim, kv_len * v_dim];
    let mut bufs = [0, 1, 2].map(|i| need[i].then(|| vec![0.0f32; pairs * lens[i]]));
    let [dq, dk, dv] = &mut bufs;
    let mut chunks = [
        dq.as_deref_mut().map(|d| d.chunks_mut(lens[0])),
        dk.as_deref_mut().map(|d| d.chunks_mut(lens[1])),
        dv.as_deref_mut().map(|d| d.chunks_mut(lens[2])),
    ];
    let tasks: Vec<_> = (0..pairs)
        .map(|pair| {
            let [dq, dk, dv] = &mut chunks;
            (pair, next_chunk(dq), next_chunk(dk), next_chunk(dv))
        })
        .collect();
    let run = tasks.into_par_iter().try_for_each_init(
        Vec::new,
        |dp, (pair, dq, dk, dv)| -> Result<(), KernelError> {
            let (b, h) = saved.problem.split(pair);
            let p = probs
                .get(pair * p_len..(pair + 1) * p_len)
                .ok_or(KernelError::OutOfBounds)?;
            let p_mat = MatRef::row_major(p, q_len, kv_len);
            let grad_out = gh.pair(b, h);
            if let Some(dv) = dv {
                sgemm(p_mat.t(), grad_out, dv, false)?;
            }
            if dq.is_none() && dk.is_none() {
                return Ok(());
            }
            dp.resize(p_len, 0.0);
            sgemm(grad_out, vh.pair(b, h).t(), dp, false)?;
            for (d_row, p_row) in dp.chunks_exact_mut(kv_len).zip(p.chunks_exact(kv_len)) {
                softmax_grad_row(d_row, p_row, scale);
            }
            let ds = MatRef::row_major(dp, q_len, kv_len);
            if let Some(dq) = dq {
                sgemm(ds, kh.pair(b, h), dq, false)?;
            }
            if let Some(dk) = dk {
                sgemm(ds.t(), qh.pair(b, h), dk, false)?;
            }
            Ok(())
        },
    );
    if let Err(err) = run {
        unreachable!("the views were checked against their buffers: {err}");
    }
    let [batch, heads] = [saved.problem.batch, saved.problem.heads];
    let shapes = [
        [batch, heads, q_len, dim],
        [batch, heads, kv_len, dim],
        [batch, heads, kv_len, v_dim],
    ];
    let [dq, dk, dv] = bufs;
    [
        dq.map(|d| tensor(d, shapes[0])),
        dk.map(|d| tensor(d, shapes[1])),
        dv.map(|d| tensor(d, shapes[2])),
    ]
}
