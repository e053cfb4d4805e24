//! Scaled dot-product attention of the CPU backend as one fused operation.
//!
//! Under `Autodiff<Flex>`, Burn's attention is a chain of separate operations (batched product,
//! scale, mask fill, a softmax of five passes, product), each with its own backward step and a
//! full `[batch, heads, queries, keys]` tensor per pass. [`attention`] computes the same thing
//! per (batch, key/value head) group on rayon's pool: for each query head of the group,
//! `S = Q·Kᵀ` by [`sftvsrl_kernels::sgemm`], one pass per row for the scale, the mask, the row
//! maximum, `exp` (a vectorised polynomial) and the normalisation ([`sftvsrl_kernels::rows`]),
//! then `O = P·V`. Under autodiff, the probabilities `P` are kept (a `[batch, heads, queries,
//! keys]` f32 tensor, one of the several tensors of that size Burn's own chain keeps) together
//! with `Q`, `K` and `V`, and the backward step computes `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
//! `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = dS·K·scale` and `dK = dSᵀ·Q·scale` per head, for
//! the tracked inputs only, summing `dK` and `dV` over the query heads of a group.
//!
//! Layout: the model's projections produce `[batch, seq, heads, dim]`, which the attention
//! reads as a swapped (strided) view. The fused path reads every operand through its strides,
//! takes the query heads of a key/value head without repeating keys or stacking queries, and
//! writes its output, and its gradients of q, k and v, in that same sequence-major memory
//! order, handed back as `[batch, heads, seq, dim]` views. Swapping the output back and
//! merging its heads (and, in the backward pass, the gradients' swaps) are then free: no copy
//! of a strided tensor anywhere in the attention block.
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
use sftvsrl_kernels::{KernelError, MatRef, sgemm, sgemm_available, sgemm_strided};

use crate::cpu_dispatch::{CpuBackend, TrackedTensor, cast};

/// `softmax(q·kᵀ / sqrt(dim), masked) · v` per query head, with grouped-query attention:
/// query head `h` attends with key/value head `h / n_rep`.
///
/// Shapes: `q` `[batch, heads, queries, dim]`, `k` `[batch, kv_heads, keys, dim]`, `v`
/// `[batch, kv_heads, keys, v_dim]` with `heads = n_rep · kv_heads`, `mask` `[batch, kv_heads,
/// n_rep · queries, keys]` with `true` where a query may not attend to a key, the rows of query
/// head `h` at `(h % n_rep) · queries ..` of its group (the layout of the model's
/// `causal_mask`); the result is `[batch, heads, queries, v_dim]`. With `n_rep = 1` this is
/// exactly `burn::tensor::module::attention(q, k, v, Some(mask), None, Default::default())`;
/// otherwise it is that attention of the stacked queries `[batch, kv_heads, n_rep · queries,
/// dim]`, unstacked.
///
/// On `Flex` and `Autodiff<Flex>` (f32, on a CPU with the project's kernels) the operation is
/// fused, with its own backward step, and the result is a swapped view of sequence-major
/// memory (see the module docs); everywhere else, and for inputs the fused path does not take,
/// it is Burn's attention.
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

/// Burn's own attention, with the options the project uses; grouped query heads are stacked
/// along the query axis for it and unstacked after.
fn burn_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    let [batch, heads, q_len, dim] = q.dims();
    let kv_heads = k.dims()[1];
    if heads == kv_heads || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        let options = AttentionModuleOptions::default();
        return burn::tensor::module::attention(q, k, v, Some(mask), None, options);
    }
    let n_rep = heads / kv_heads;
    let stacked = q.reshape([batch, kv_heads, n_rep * q_len, dim]);
    let options = AttentionModuleOptions::default();
    let out = burn::tensor::module::attention(stacked, k, v, Some(mask), None, options);
    let v_dim = out.dims()[3];
    out.reshape([batch, heads, q_len, v_dim])
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
    /// Query heads.
    heads: usize,
    /// Key/value heads; each serves `n_rep = heads / kv_heads` query heads.
    kv_heads: usize,
    n_rep: usize,
    q_len: usize,
    kv_len: usize,
    dim: usize,
    v_dim: usize,
    /// `1/sqrt(dim)`, as Burn's default.
    scale: f32,
}

impl Problem {
    /// The sizes of `q`, `k`, `v` and `mask`, or `None` when a tensor has another dtype, the
    /// shapes do not agree exactly (no broadcasting; `heads` a multiple of `kv_heads` and the
    /// mask of the grouped layout), a size is zero, or a buffer length would overflow.
    fn of(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, mask: &FlexTensor) -> Option<Self> {
        if [q, k, v].iter().any(|t| t.dtype() != DType::F32)
            || !matches!(mask.dtype(), DType::Bool(BoolStore::Native | BoolStore::U8))
        {
            return None;
        }
        let [batch, heads, q_len, dim] = dims(q)?;
        let [_, kv_heads, kv_len, v_dim] = dims(v)?;
        let sizes = [batch, heads, kv_heads, q_len, kv_len, dim, v_dim];
        if sizes.contains(&0) || !heads.is_multiple_of(kv_heads) {
            return None;
        }
        let n_rep = heads / kv_heads;
        let agree = dims(k)? == [batch, kv_heads, kv_len, dim]
            && dims(v)? == [batch, kv_heads, kv_len, v_dim]
            && dims(mask)? == [batch, kv_heads, n_rep.checked_mul(q_len)?, kv_len];
        if !agree {
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
            kv_heads,
            n_rep,
            q_len,
            kv_len,
            dim,
            v_dim,
            scale: (1.0 / (dim as f64).sqrt()) as f32,
        })
    }

    /// Number of (batch, key/value head) groups: the parallel tasks.
    fn groups(&self) -> usize {
        self.batch * self.kv_heads
    }

    /// The (batch, key/value head) indices of group `group`.
    fn split(&self, group: usize) -> (usize, usize) {
        (group / self.kv_heads, group % self.kv_heads)
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

/// A contiguous f32 tensor of `shape` holding `values`.
fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Sequence-major memory `[batch, seq, heads, width]` of a result that is handed back as the
/// `[batch, heads, seq, width]` view.
#[derive(Clone, Copy, Debug)]
struct SeqMajor {
    batch: usize,
    seq: usize,
    heads: usize,
    width: usize,
}

impl SeqMajor {
    /// Floats in the buffer.
    fn len(&self) -> usize {
        self.batch * self.seq * self.heads * self.width
    }

    /// Where the `[seq, width]` matrix of batch `b`, head `h` starts.
    fn start(&self, b: usize, h: usize) -> usize {
        (b * self.seq * self.heads + h) * self.width
    }

    /// The row stride of each head's matrix.
    fn row_stride(&self) -> usize {
        self.heads * self.width
    }

    /// The buffer (every element written) as the `[batch, heads, seq, width]` view.
    fn tensor(&self, values: Vec<f32>) -> FlexTensor {
        tensor(values, [self.batch, self.seq, self.heads, self.width]).transpose(1, 2)
    }
}

/// A buffer of `len` floats that parallel tasks fill through raw pointers, each writing its
/// own elements.
struct Output {
    values: Vec<f32>,
    len: usize,
}

impl Output {
    fn new(len: usize) -> Self {
        Self {
            values: Vec::with_capacity(len),
            len,
        }
    }

    fn target(&mut self) -> Target {
        Target(self.values.as_mut_ptr())
    }

    /// The buffer, once every element has been written.
    ///
    /// # Safety
    /// All `len` floats were written through [`Output::target`].
    unsafe fn finish(mut self) -> Vec<f32> {
        // SAFETY: by the caller's contract, all `len` elements (within capacity) are written.
        unsafe { self.values.set_len(self.len) };
        self.values
    }
}

/// The start of an [`Output`]'s buffer, shared by the parallel tasks.
#[derive(Clone, Copy)]
struct Target(*mut f32);

// SAFETY: the tasks write disjoint elements of the buffer (each its own heads' rows), which
// outlives the parallel section, and nothing reads it until they are done.
unsafe impl Send for Target {}
unsafe impl Sync for Target {}

impl Target {
    /// Element `offset` of the buffer (inside its capacity; the callers stay inside).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `c = a · b` (or `+=` when `accumulate`) into the `[seq, width]` matrix of batch `b`, head
/// `h` of a sequence-major buffer.
///
/// # Safety
/// `target` is the buffer of `layout`, no other task touches that head's matrix during the
/// call, and it is initialised where `accumulate`.
unsafe fn product_into(
    a: MatRef,
    bm: MatRef,
    target: Target,
    layout: &SeqMajor,
    (b, h): (usize, usize),
    accumulate: bool,
) -> Result<(), KernelError> {
    if a.rows != layout.seq || bm.cols != layout.width || b >= layout.batch || h >= layout.heads {
        return Err(KernelError::OutOfBounds);
    }
    let c = target.at(layout.start(b, h));
    // SAFETY: the matrix lies inside the buffer (checked sizes); exclusive by the contract.
    unsafe { sgemm_strided(a, bm, c, layout.row_stride(), accumulate) }
}

/// The attention output `[batch, heads, q_len, v_dim]` (a view of sequence-major memory), and
/// the probabilities `[batch, heads, q_len, kv_len]` (contiguous) when `keep_probs`; `None`
/// when an operand cannot be read.
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
        batch,
        heads,
        n_rep,
        q_len,
        kv_len,
        v_dim,
        scale,
        ..
    } = problem;
    let p_len = q_len * kv_len;
    let layout = SeqMajor {
        batch,
        seq: q_len,
        heads,
        width: v_dim,
    };
    let mut out = Output::new(layout.len());
    let target = out.target();
    let mut probs = keep_probs.then(|| Output::new(batch * heads * p_len));
    // One chunk of kept probabilities per group: its heads are consecutive.
    let mut p_chunks = probs
        .as_mut()
        .map(|p| p.values.spare_capacity_mut()[..p.len].chunks_mut(n_rep * p_len));
    let tasks: Vec<_> = (0..problem.groups())
        .map(|group| (group, p_chunks.as_mut().and_then(Iterator::next)))
        .collect();
    tasks
        .into_par_iter()
        .try_for_each_init(Vec::new, |scratch, (group, kept)| {
            let (b, g) = problem.split(group);
            let (k_mat, v_mat) = (kh.pair(b, g), vh.pair(b, g));
            let mut kept = kept.map(|p| p.chunks_exact_mut(p_len));
            for r in 0..n_rep {
                let h = g * n_rep + r;
                let p: &mut [f32] = match kept.as_mut().and_then(Iterator::next) {
                    Some(p) => {
                        sftvsrl_kernels::sgemm_uninit(qh.pair(b, h), k_mat.t(), p)?;
                        // SAFETY: the product wrote every element.
                        unsafe { &mut *(p as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
                    }
                    None => {
                        scratch.resize(p_len, 0.0);
                        sgemm(qh.pair(b, h), k_mat.t(), scratch, false)?;
                        scratch.as_mut_slice()
                    }
                };
                for (i, row) in p.chunks_exact_mut(kv_len).enumerate() {
                    softmax_row(row, rows.row(b, g, r * q_len + i), scale);
                }
                let p_mat = MatRef::row_major(p, q_len, kv_len);
                // SAFETY: this task alone writes the rows of head h of batch b.
                unsafe { product_into(p_mat, v_mat, target, &layout, (b, h), false)? };
            }
            Ok::<(), KernelError>(())
        })
        .ok()?;
    // SAFETY: the tasks covered every (batch, head) matrix of the output, and of the
    // probabilities when kept.
    let out = unsafe { out.finish() };
    let probs = probs.map(|p| unsafe { p.finish() });
    Some((
        layout.tensor(out),
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

/// The gradients of q, k and v (each where `need` asks for it) from the output's gradient,
/// each a `[batch, heads, seq, dim]` view of sequence-major memory.
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
        batch,
        heads,
        kv_heads,
        n_rep,
        q_len,
        kv_len,
        dim,
        v_dim,
        scale,
    } = &saved.problem;
    let p_len = q_len * kv_len;
    let layouts = [
        (q_len, heads, dim),
        (kv_len, kv_heads, dim),
        (kv_len, kv_heads, v_dim),
    ]
    .map(|(seq, heads, width)| SeqMajor {
        batch,
        seq,
        heads,
        width,
    });
    let mut outputs = [0, 1, 2].map(|i| need[i].then(|| Output::new(layouts[i].len())));
    let [dq, dk, dv] = [0, 1, 2].map(|i| outputs[i].as_mut().map(Output::target));
    let [dq_layout, dk_layout, dv_layout] = &layouts;
    let run = (0..saved.problem.groups())
        .into_par_iter()
        .try_for_each_init(Vec::new, |dp, group| -> Result<(), KernelError> {
            let (b, g) = saved.problem.split(group);
            let (k_mat, v_mat) = (kh.pair(b, g), vh.pair(b, g));
            for r in 0..n_rep {
                let h = g * n_rep + r;
                let start = (b * heads + h) * p_len;
                let p = probs
                    .get(start..start + p_len)
                    .ok_or(KernelError::OutOfBounds)?;
                let p_mat = MatRef::row_major(p, q_len, kv_len);
                let grad_out = gh.pair(b, h);
                // dK and dV sum over the group's query heads: the first writes, the rest add.
                let accumulate = r > 0;
                // SAFETY (all three products): this task alone writes head h's rows of dQ and
                // kv head g's rows of dK and dV, which its first query head initialised.
                if let Some(dv) = dv {
                    unsafe {
                        product_into(p_mat.t(), grad_out, dv, dv_layout, (b, g), accumulate)?
                    };
                }
                if dq.is_none() && dk.is_none() {
                    continue;
                }
                dp.resize(p_len, 0.0);
                sgemm(grad_out, v_mat.t(), dp, false)?;
                for (d_row, p_row) in dp.chunks_exact_mut(kv_len).zip(p.chunks_exact(kv_len)) {
                    softmax_grad_row(d_row, p_row, scale);
                }
                let ds = MatRef::row_major(dp, q_len, kv_len);
                if let Some(dq) = dq {
                    unsafe { product_into(ds, k_mat, dq, dq_layout, (b, h), false)? };
                }
                if let Some(dk) = dk {
                    let q_mat = qh.pair(b, h);
                    unsafe { product_into(ds.t(), q_mat, dk, dk_layout, (b, g), accumulate)? };
                }
            }
            Ok(())
        });
    if let Err(err) = run {
        unreachable!("the views were checked against their buffers: {err}");
    }
    let mut results = outputs.into_iter().zip(&layouts).map(|(out, layout)| {
        // SAFETY: the tasks covered every head's matrix of each needed gradient.
        out.map(|out| layout.tensor(unsafe { out.finish() }))
    });
    [(); 3].map(|_| results.next().flatten())
}
