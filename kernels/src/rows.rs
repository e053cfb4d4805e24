//! Row and elementwise kernels of the model's fused operations: the softmax of attention
//! scores, the SwiGLU gate `silu(gate) · up`, RMSNorm, the rotary position embedding and the
//! log-softmax scores of target tokens (the loss), each with its backward step, with a
//! vectorised `exp`.
//!
//! Each kernel has an AVX-512 version (16 lanes at a time, the scalar code for the tails) and
//! a portable scalar one. The AVX-512 versions run where [`sgemm`](crate::sgemm) uses its
//! AVX-512 micro-kernel; setting `SFTVSRL_KERNELS_FORCE_AVX2` (which picks the AVX2 product
//! kernel) also picks the portable row kernels, so that tests can run both. The whole-tensor
//! kernels ([`swiglu`], [`rms_norm`], [`rope`] and their backward steps) split their work into
//! fixed chunks on rayon's global pool, so their results do not depend on the number of
//! threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::KernelError;

#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;
#[cfg(test)]
mod tests;

/// Elements per parallel task of the whole-tensor kernels (64 KiB of each f32 stream).
const CHUNK: usize = 16 * 1024;

/// Whether the AVX-512 versions of the kernels run: false on CPUs without AVX-512F, on other
/// architectures, and where `SFTVSRL_KERNELS_FORCE_AVX2` is set.
pub fn avx512_active() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::x86::isa() == crate::x86::Isa::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Calls the AVX-512 version of a kernel where [`avx512_active`] allows it, the portable one
/// otherwise; the value is the kernel's.
macro_rules! by_isa {
    ($kernel:ident($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        let value = if avx512_active() {
            // SAFETY: `avx512_active()` is true only on a CPU with AVX-512F.
            unsafe { avx512::$kernel($($arg),*) }
        } else {
            portable::$kernel($($arg),*)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let value = portable::$kernel($($arg),*);
        value
    }};
}

/// One row of attention scores to probabilities, in place: scale by `scale`, `-inf` where
/// `mask` is nonzero, then Burn's NaN-safe softmax (maximum clamped to `f32::MIN`, sum to
/// `f32::MIN_POSITIVE`, so a fully masked row becomes zeros). Only the first
/// `min(row.len(), mask.len())` entries are touched.
pub fn softmax_row(row: &mut [f32], mask: &[u8], scale: f32) {
    by_isa!(softmax_row(row, mask, scale))
}

/// The softmax backward step of one row, in place: `d ← p ⊙ (d − Σ d⊙p) · scale`, where `d`
/// holds the gradient of the probabilities `p`. Only the first `min(d.len(), p.len())` entries
/// are touched.
pub fn softmax_grad_row(d: &mut [f32], p: &[f32], scale: f32) {
    by_isa!(softmax_grad_row(d, p, scale))
}

/// `Ok` when every length in `lens` equals the first.
fn same_lengths(lens: &[usize]) -> Result<(), KernelError> {
    match lens.split_first() {
        Some((first, rest)) if rest.iter().any(|len| len != first) => {
            Err(KernelError::LengthMismatch)
        }
        _ => Ok(()),
    }
}

/// `out = silu(gate) ⊙ up` elementwise, where `silu(g) = g · σ(g)`; every element of `out` is
/// written. The three slices must be equally long.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) -> Result<(), KernelError> {
    same_lengths(&[gate.len(), up.len(), out.len()])?;
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(out, (gate, up))| by_isa!(swiglu(gate, up, out)));
    Ok(())
}

/// The backward step of [`swiglu`] from the output's gradient `grad`, in one pass:
/// `d_gate = grad ⊙ up ⊙ σ(g) ⊙ (1 + g ⊙ (1 − σ(g)))` and `d_up = grad ⊙ silu(g)`; every
/// element of both outputs is written. The five slices must be equally long.
pub fn swiglu_backward(
    grad: &[f32],
    gate: &[f32],
    up: &[f32],
    d_gate: &mut [MaybeUninit<f32>],
    d_up: &mut [MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let lens = [grad.len(), gate.len(), up.len(), d_gate.len(), d_up.len()];
    same_lengths(&lens)?;
    let inputs = grad
        .par_chunks(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)));
    d_gate
        .par_chunks_mut(CHUNK)
        .zip(d_up.par_chunks_mut(CHUNK))
        .zip(inputs)
        .for_each(|((d_gate, d_up), (grad, (gate, up)))| {
            by_isa!(swiglu_backward(grad, gate, up, d_gate, d_up))
        });
    Ok(())
}

/// The shape of an RMSNorm call: `rows` rows of `dim` features, checked against the lengths
/// of its slices.
#[derive(Clone, Copy, Debug)]
struct Rows {
    rows: usize,
    dim: usize,
}

impl Rows {
    /// The shape of `x` (`rows · dim` features) under a `dim`-long weight; an error when `dim`
    /// is zero or does not divide `x`.
    fn of(x_len: usize, dim: usize) -> Result<Self, KernelError> {
        if dim == 0 || !x_len.is_multiple_of(dim) {
            return Err(KernelError::LengthMismatch);
        }
        Ok(Self {
            rows: x_len / dim,
            dim,
        })
    }

    /// Rows per parallel task.
    fn per_chunk(&self) -> usize {
        (CHUNK / self.dim).max(1)
    }
}

/// RMSNorm over rows of `weight.len()` features: `out = x · r ⊙ weight` per row, where
/// `r = 1/sqrt(mean(x²) + eps)` is written to `inv_rms` (one per row, for the backward step);
/// every element of `out` is written. `x` and `out` hold `rows · weight.len()` floats, row by
/// row; `weight` must not be empty.
pub fn rms_norm(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [MaybeUninit<f32>],
    inv_rms: &mut [f32],
) -> Result<(), KernelError> {
    let shape = Rows::of(x.len(), weight.len())?;
    same_lengths(&[x.len(), out.len()])?;
    same_lengths(&[shape.rows, inv_rms.len()])?;
    let rows = shape.per_chunk();
    let floats = rows * shape.dim;
    out.par_chunks_mut(floats)
        .zip(inv_rms.par_chunks_mut(rows))
        .zip(x.par_chunks(floats))
        .for_each(|((out, inv_rms), x)| by_isa!(rms_norm(x, weight, eps, out, inv_rms)));
    Ok(())
}

/// The backward step of [`rms_norm`] from the output's gradient `grad`, with the `inv_rms`
/// the forward step wrote: `dx = r·weight ⊙ grad − x · r³·Σ(grad ⊙ weight ⊙ x)/dim` per row
/// (every element written), and `d_weight = Σ_rows grad ⊙ x · r` (overwritten). `grad`, `x`
/// and `dx` hold `rows · weight.len()` floats, `d_weight` as many as `weight`.
pub fn rms_norm_backward(
    grad: &[f32],
    x: &[f32],
    weight: &[f32],
    inv_rms: &[f32],
    dx: &mut [MaybeUninit<f32>],
    d_weight: &mut [f32],
) -> Result<(), KernelError> {
    let shape = Rows::of(x.len(), weight.len())?;
    same_lengths(&[x.len(), grad.len(), dx.len()])?;
    same_lengths(&[shape.rows, inv_rms.len()])?;
    same_lengths(&[shape.dim, d_weight.len()])?;
    let rows = shape.per_chunk();
    let floats = rows * shape.dim;
    let inputs = grad
        .par_chunks(floats)
        .zip(x.par_chunks(floats).zip(inv_rms.par_chunks(rows)));
    // One partial `d_weight` per chunk, summed in chunk order: the same result on any pool.
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(floats)
        .zip(inputs)
        .map(|(dx, (grad, (x, inv_rms)))| {
            let mut d_weight = vec![0.0; shape.dim];
            by_isa!(rms_norm_backward(
                grad,
                x,
                weight,
                inv_rms,
                dx,
                &mut d_weight
            ));
            d_weight
        })
        .collect();
    d_weight.fill(0.0);
    for partial in partials {
        for (sum, part) in d_weight.iter_mut().zip(partial) {
            *sum += part;
        }
    }
    Ok(())
}

/// Which step of [`rope`] to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStep {
    /// The rotation: `out = (x₁·cos₁ + x₂·sin₁, x₂·cos₂ + x₁·sin₂)` per row.
    Forward,
    /// Its transpose, the backward step: given the output's gradient `g` as `x`, the input's
    /// gradient `out = (g₁·cos₁ + g₂·sin₂, g₂·cos₂ + g₁·sin₁)` per row.
    Backward,
}

/// The rotary position embedding in the rotate-half layout (or its backward step), over rows
/// of `dim` features (`dim` even): `(x₁, x₂)` are the two halves of a row of `x`, and `cos`,
/// `sin` the row's factors (the sign of the rotation carried by `sin`); see [`RopeStep`] for
/// `out`. Every element of `out` is written. The four slices must be equally long, a multiple
/// of `dim`.
pub fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    dim: usize,
    step: RopeStep,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let shape = Rows::of(x.len(), dim)?;
    if !dim.is_multiple_of(2) {
        return Err(KernelError::LengthMismatch);
    }
    same_lengths(&[x.len(), cos.len(), sin.len(), out.len()])?;
    let floats = shape.per_chunk() * dim;
    let backward = step == RopeStep::Backward;
    let factors = cos.par_chunks(floats).zip(sin.par_chunks(floats));
    out.par_chunks_mut(floats)
        .zip(x.par_chunks(floats).zip(factors))
        .for_each(|(out, (x, (cos, sin)))| by_isa!(rope(x, cos, sin, dim, out, backward)));
    Ok(())
}

/// The shape of a log-softmax call: `rows` rows of `vocab` logits with one target each,
/// checked against the slices; an error when `vocab` is zero or does not divide the logits,
/// when a per-row slice has another length, or when a target is not below `vocab`.
fn scored_rows(logits: &[f32], vocab: usize, targets: &[u32]) -> Result<Rows, KernelError> {
    let shape = Rows::of(logits.len(), vocab)?;
    same_lengths(&[shape.rows, targets.len()])?;
    if targets.iter().any(|&t| t as usize >= vocab) {
        return Err(KernelError::OutOfBounds);
    }
    Ok(shape)
}

/// Log-softmax scores of rows of `vocab` logits against one target token each, in one read of
/// every row: the target's log-probability `picked[i] = x[i, t_i] − lse[i]`, where
/// `lse[i] = log Σ_j e^x[i, j]` (taken from the row's maximum, clamped as [`softmax_row`]
/// clamps it), and `argmax[i]`, the first index of the row's largest logit (NaNs skipped).
/// `logits` holds the rows one after another; `targets`, `picked`, `lse` and `argmax` one
/// value per row. Errors (writing nothing) when the lengths do not fit or a target is not
/// below `vocab`. Rows are independent, so the results do not depend on the thread count.
pub fn log_softmax_pick(
    logits: &[f32],
    vocab: usize,
    targets: &[u32],
    picked: &mut [f32],
    lse: &mut [f32],
    argmax: &mut [u32],
) -> Result<(), KernelError> {
    let shape = scored_rows(logits, vocab, targets)?;
    same_lengths(&[shape.rows, picked.len(), lse.len(), argmax.len()])?;
    let rows = shape.per_chunk();
    let outputs = picked
        .par_chunks_mut(rows)
        .zip(lse.par_chunks_mut(rows).zip(argmax.par_chunks_mut(rows)));
    let inputs = logits
        .par_chunks(rows * vocab)
        .zip(targets.par_chunks(rows));
    outputs
        .zip(inputs)
        .for_each(|((picked, (lse, argmax)), (logits, targets))| {
            let scores = picked.iter_mut().zip(lse.iter_mut().zip(argmax));
            for ((row, &t), (p, (l, a))) in logits.chunks_exact(vocab).zip(targets).zip(scores) {
                (*p, *l, *a) = by_isa!(log_softmax_row(row, t as usize));
            }
        });
    Ok(())
}

/// The backward step of [`log_softmax_pick`]'s picked log-probabilities, given their gradient
/// `grad` (one per row) and the `lse` it wrote: `d_logits[i, j] = grad[i] · ([j = t_i] −
/// e^(x[i, j] − lse[i]))`, every element written. Errors as [`log_softmax_pick`] does, and
/// when `d_logits` is not as long as `logits`.
pub fn log_softmax_pick_backward(
    logits: &[f32],
    vocab: usize,
    targets: &[u32],
    lse: &[f32],
    grad: &[f32],
    d_logits: &mut [MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let shape = scored_rows(logits, vocab, targets)?;
    same_lengths(&[shape.rows, lse.len(), grad.len()])?;
    same_lengths(&[logits.len(), d_logits.len()])?;
    let rows = shape.per_chunk();
    let per_row = targets
        .par_chunks(rows)
        .zip(lse.par_chunks(rows).zip(grad.par_chunks(rows)));
    d_logits
        .par_chunks_mut(rows * vocab)
        .zip(logits.par_chunks(rows * vocab).zip(per_row))
        .for_each(|(out, (logits, (targets, (lse, grad))))| {
            let rows = out.chunks_exact_mut(vocab).zip(logits.chunks_exact(vocab));
            for ((out, row), (&t, (&l, &g))) in rows.zip(targets.iter().zip(lse.iter().zip(grad))) {
                by_isa!(log_softmax_grad_row(row, t as usize, l, g, out));
            }
        });
    Ok(())
}
