//! Scaled dot-product attention of the CPU backend as one fused operation.
//!
//! Under `Autodiff<Flex>`, Burn's attention is a chain of separate operations (batched product,
//! scale, mask fill, a softmax of five passes, product), each with its own backward step and a
//! full `[batch, heads, queries, keys]` tensor per pass. [`attention`] computes the same thing
//! per (batch, head) pair on rayon's pool: `S = Q·Kᵀ` by [`sftvsrl_kernels::sgemm`], one pass
//! per row for the scale, the mask, the row maximum, `exp` (a vectorised polynomial) and the
//! normalisation, then `O = P·V`. Under autodiff, the probabilities `P` are kept (a
//! `[batch, heads, queries, keys]` f32 tensor, one of the several tensors of that size Burn's
//! own chain keeps) together with `Q`, `K` and `V`, and the backward step computes
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = dS·K·scale` and
//! `dK = dSᵀ·Q·scale` per pair, for the tracked inputs only.
//!
//! The semantics are Burn's (`attention_fallback`): `true` in the mask means "may not attend",
//! the scale is `1/sqrt(head_dim)`, and a row whose keys are all masked gives zeros. Every other
//! backend, a CPU without the kernels, another dtype, and shapes that do not fit take Burn's
//! own attention.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, BoolStore, DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;
use sftvsrl_kernels::{KernelError, MatRef, sgemm, sgemm_available};

/// A tensor of `Autodiff<Flex>` (Burn does not export the type's own name).
type TrackedTensor = <Autodiff<Flex, NoCheckpointing> as BackendTypes>::FloatTensorPrimitive;

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
    let backend = TypeId::of::<B>();
    let fusable = backend == TypeId::of::<Flex>()
        || backend == TypeId::of::<Autodiff<Flex, NoCheckpointing>>();
    if !fusable || !sgemm_available() {
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

/// `value` as a `U`, where its type `T` is `U`.
fn cast<T: 'static, U: 'static>(value: &T) -> Option<&U> {
    (value as &dyn Any).downcast_ref()
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

/// One row of scores to probabilities, in place: scale, `-inf` where `mask` is nonzero, then
/// Burn's NaN-safe softmax (maximum clamped to `f32::MIN`, sum to `f32::MIN_POSITIVE`, so a
/// fully masked row becomes zeros).
fn softmax_row(row: &mut [f32], mask: &[u8], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        unsafe { avx512::softmax_row(row, mask, scale) };
        return;
    }
    portable::softmax_row(row, mask, scale);
}

/// The softmax backward of one row, in place: `d = p ⊙ (d − Σ d⊙p) · scale`.
fn softmax_grad_row(d: &mut [f32], p: &[f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        unsafe { avx512::softmax_grad_row(d, p, scale) };
        return;
    }
    portable::softmax_grad_row(d, p, scale);
}

/// `exp` of f32: `x = n·ln2 + r` with `|r| ≤ ln2/2` (Cody–Waite, `ln2` in two parts), `e^r`
/// by its Taylor polynomial of degree 7 (truncation error below 6e-9), and `2^n` applied in
/// two halves so that results in the subnormal range round instead of flushing.
mod exp_consts {
    /// Inputs are clamped to `[LO, HI]`: `exp(LO)` rounds to 0, `exp(HI)` overflows to inf.
    pub const LO: f32 = -104.0;
    /// See [`LO`].
    pub const HI: f32 = 89.0;
    /// `log2(e)`.
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// The high part of `ln 2`, with trailing zero bits so that `n·LN2_HI` is exact.
    pub const LN2_HI: f32 = 0.693_145_75;
    /// `ln 2 − LN2_HI`.
    pub const LN2_LO: f32 = 1.428_606_8e-6;
    /// `1/k!` for `k = 0..=7`.
    pub const TAYLOR: [f32; 8] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
}

/// Scalar row kernels, for CPUs without AVX-512 and for the tails of rows.
mod portable {
    use super::exp_consts::{HI, LN2_HI, LN2_LO, LO, LOG2E, TAYLOR};

    /// `e^x` (NaN stays NaN).
    pub fn exp(x: f32) -> f32 {
        let x = x.clamp(LO, HI);
        let n = (x * LOG2E).round_ties_even();
        let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
        let p = TAYLOR[..7]
            .iter()
            .rev()
            .fold(TAYLOR[7], |acc, &c| acc.mul_add(r, c));
        // In range after the clamp: n is in [-150, 128], each half in [-75, 64].
        let n = n as i32;
        let half = n >> 1;
        p * pow2(half) * pow2(n - half)
    }

    /// `2^n` for `-126 <= n <= 127`.
    fn pow2(n: i32) -> f32 {
        f32::from_bits(((n + 127) as u32) << 23)
    }

    /// See [`super::softmax_row`].
    pub fn softmax_row(row: &mut [f32], mask: &[u8], scale: f32) {
        let max = scale_mask(row, mask, scale);
        let sum = exp_sum(row, clamp_max(max));
        divide(row, clamp_sum(sum));
    }

    /// Scales `row`, sets masked entries to `-inf`, and returns the row's maximum.
    pub fn scale_mask(row: &mut [f32], mask: &[u8], scale: f32) -> f32 {
        let mut max = f32::NEG_INFINITY;
        for (s, &m) in row.iter_mut().zip(mask) {
            *s = if m != 0 {
                f32::NEG_INFINITY
            } else {
                *s * scale
            };
            max = if *s > max { *s } else { max };
        }
        max
    }

    /// Burn's clamp of the row maximum (keeps NaN).
    pub fn clamp_max(max: f32) -> f32 {
        if max < f32::MIN { f32::MIN } else { max }
    }

    /// Burn's clamp of the row sum (keeps NaN).
    pub fn clamp_sum(sum: f32) -> f32 {
        if sum < f32::MIN_POSITIVE {
            f32::MIN_POSITIVE
        } else {
            sum
        }
    }

    /// `x ← e^(x − shift)` for every `x` of `row`, returning the sum.
    pub fn exp_sum(row: &mut [f32], shift: f32) -> f32 {
        let mut sum = 0.0;
        for x in row {
            *x = exp(*x - shift);
            sum += *x;
        }
        sum
    }

    /// `x ← x / sum` for every `x` of `row`.
    pub fn divide(row: &mut [f32], sum: f32) {
        for x in row {
            *x /= sum;
        }
    }

    /// See [`super::softmax_grad_row`].
    pub fn softmax_grad_row(d: &mut [f32], p: &[f32], scale: f32) {
        let dot: f32 = d.iter().zip(p).map(|(d, p)| d * p).sum();
        grad_tail(d, p, dot, scale);
    }

    /// `d ← p·(d − dot)·scale` elementwise.
    pub fn grad_tail(d: &mut [f32], p: &[f32], dot: f32, scale: f32) {
        for (d, &p) in d.iter_mut().zip(p) {
            *d = p * (*d - dot) * scale;
        }
    }
}

/// AVX-512 row kernels: 16 lanes at a time, the scalar kernels for the remainder.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::exp_consts::{HI, LN2_HI, LN2_LO, LO, LOG2E, TAYLOR};
    use super::portable;

    /// Lanes of a vector.
    const L: usize = 16;

    /// `e^x` per lane; the same steps as [`portable::exp`].
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        // max/min return their second operand when either is NaN: NaN passes through.
        let x = _mm512_min_ps(_mm512_set1_ps(HI), _mm512_max_ps(_mm512_set1_ps(LO), x));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(TAYLOR[7]);
        for &c in TAYLOR[..7].iter().rev() {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let n = _mm512_cvtps_epi32(n);
        let half = _mm512_srai_epi32::<1>(n);
        let rest = _mm512_sub_epi32(n, half);
        let bias = _mm512_set1_epi32(127);
        let pow2 = |e| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(e, bias)));
        _mm512_mul_ps(_mm512_mul_ps(p, pow2(half)), pow2(rest))
    }

    /// See [`super::softmax_row`].
    #[target_feature(enable = "avx512f")]
    pub fn softmax_row(row: &mut [f32], mask: &[u8], scale: f32) {
        let len = row.len().min(mask.len());
        let body = len - len % L;
        let ptr = row.as_mut_ptr();
        let (vscale, neg_inf) = (_mm512_set1_ps(scale), _mm512_set1_ps(f32::NEG_INFINITY));
        let mut vmax = neg_inf;
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body <= the lengths of `row` and `mask`.
            unsafe {
                let s = _mm512_mul_ps(_mm512_loadu_ps(ptr.add(i)), vscale);
                let m = _mm512_cvtepu8_epi32(_mm_loadu_si128(mask.as_ptr().add(i).cast()));
                let s = _mm512_mask_blend_ps(_mm512_test_epi32_mask(m, m), s, neg_inf);
                _mm512_storeu_ps(ptr.add(i), s);
                vmax = _mm512_max_ps(vmax, s);
            }
        }
        let tail_max = portable::scale_mask(&mut row[body..len], &mask[body..len], scale);
        let max = _mm512_reduce_max_ps(vmax);
        let max = portable::clamp_max(if tail_max > max { tail_max } else { max });
        let sum = portable::clamp_sum(exp_sum(&mut row[..len], max));
        let vsum = _mm512_set1_ps(sum);
        for i in (0..body).step_by(L) {
            // SAFETY: as above.
            unsafe {
                _mm512_storeu_ps(ptr.add(i), _mm512_div_ps(_mm512_loadu_ps(ptr.add(i)), vsum))
            };
        }
        portable::divide(&mut row[body..len], sum);
    }

    /// `x ← e^(x − shift)` for every `x` of `row`, returning the sum.
    #[target_feature(enable = "avx512f")]
    pub fn exp_sum(row: &mut [f32], shift: f32) -> f32 {
        let body = row.len() - row.len() % L;
        let ptr = row.as_mut_ptr();
        let vshift = _mm512_set1_ps(shift);
        let mut vsum = _mm512_setzero_ps();
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body <= row.len().
            unsafe {
                let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(ptr.add(i)), vshift));
                _mm512_storeu_ps(ptr.add(i), e);
                vsum = _mm512_add_ps(vsum, e);
            }
        }
        _mm512_reduce_add_ps(vsum) + portable::exp_sum(&mut row[body..], shift)
    }

    /// See [`super::softmax_grad_row`].
    #[target_feature(enable = "avx512f")]
    pub fn softmax_grad_row(d: &mut [f32], p: &[f32], scale: f32) {
        let len = d.len().min(p.len());
        let body = len - len % L;
        let (dp, pp) = (d.as_mut_ptr(), p.as_ptr());
        let mut vdot = _mm512_setzero_ps();
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body <= the lengths of `d` and `p`.
            unsafe {
                vdot =
                    _mm512_fmadd_ps(_mm512_loadu_ps(dp.add(i)), _mm512_loadu_ps(pp.add(i)), vdot);
            }
        }
        let tail: f32 = d[body..len]
            .iter()
            .zip(&p[body..len])
            .map(|(d, p)| d * p)
            .sum();
        let dot = _mm512_reduce_add_ps(vdot) + tail;
        let (vdot, vscale) = (_mm512_set1_ps(dot), _mm512_set1_ps(scale));
        for i in (0..body).step_by(L) {
            // SAFETY: as above.
            unsafe {
                let diff = _mm512_sub_ps(_mm512_loadu_ps(dp.add(i)), vdot);
                let g = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(pp.add(i)), diff), vscale);
                _mm512_storeu_ps(dp.add(i), g);
            }
        }
        portable::grad_tail(&mut d[body..len], &p[body..len], dot, scale);
    }
}

#[cfg(test)]
mod tests {
    use super::portable;

    /// The largest relative error of `exp` over `[-88, 88]` (every 1e-4 step, plus the ends),
    /// against f64; results below `f32::MIN_POSITIVE` are compared in absolute terms.
    fn check_exp(exp_sum: impl Fn(&mut [f32])) {
        let count = 1_760_001;
        let xs: Vec<f32> = (0..count)
            .map(|i| -88.0 + 176.0 * i as f32 / (count - 1) as f32)
            .collect();
        let mut ys = xs.clone();
        exp_sum(&mut ys);
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            if want >= f32::MIN_POSITIVE as f64 {
                let rel = ((y as f64) - want).abs() / want;
                worst = worst.max(rel);
            } else {
                // Subnormal results: within one subnormal step (2^-149).
                assert!(
                    ((y as f64) - want).abs() <= 1.5e-45,
                    "exp({x}) = {y}, want {want}"
                );
            }
        }
        assert!(worst < 2e-7, "largest relative error {worst:e}");
        let mut special = [
            f32::NEG_INFINITY,
            -200.0,
            0.0,
            100.0,
            f32::INFINITY,
            f32::NAN,
        ];
        exp_sum(&mut special);
        assert_eq!(&special[..2], &[0.0, 0.0]);
        assert_eq!(special[2], 1.0);
        assert_eq!(&special[3..5], &[f32::INFINITY, f32::INFINITY]);
        assert!(special[5].is_nan());
    }

    #[test]
    fn portable_exp_matches_f64() {
        check_exp(|xs| {
            portable::exp_sum(xs, 0.0);
        });
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_exp_matches_f64() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        check_exp(|xs| {
            // SAFETY: the CPU has AVX-512F.
            unsafe { super::avx512::exp_sum(xs, 0.0) };
        });
    }
}
