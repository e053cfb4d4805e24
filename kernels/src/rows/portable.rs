//! Scalar row kernels, for CPUs without AVX-512 and for the tails of rows. Each writes only as
//! many elements as its shortest slice holds (the callers pass equally long ones).
//!
//! `exp` is computed as `x = n·ln2 + r` with `|r| ≤ ln2/2` (Cody–Waite, `ln2` in two parts),
//! `e^r` by its Taylor polynomial of degree 7 (truncation error below 6e-9), and `2^n` applied
//! in two halves so that results in the subnormal range round instead of flushing.

use std::mem::MaybeUninit;

/// Inputs of `exp` are clamped to `[EXP_LO, EXP_HI]`: `exp(EXP_LO)` rounds to 0, `exp(EXP_HI)`
/// overflows to inf.
pub(super) const EXP_LO: f32 = -104.0;
/// See [`EXP_LO`].
pub(super) const EXP_HI: f32 = 89.0;
/// `log2(e)`.
pub(super) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// The high part of `ln 2`, with trailing zero bits so that `n·LN2_HI` is exact.
pub(super) const LN2_HI: f32 = 0.693_145_75;
/// `ln 2 − LN2_HI`.
pub(super) const LN2_LO: f32 = 1.428_606_8e-6;
/// `1/k!` for `k = 0..=7`.
pub(super) const TAYLOR: [f32; 8] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

/// `e^x` (NaN stays NaN).
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
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
pub(super) fn softmax_row(row: &mut [f32], mask: &[u8], scale: f32) {
    let len = row.len().min(mask.len());
    let row = &mut row[..len];
    let max = scale_mask(row, mask, scale);
    let sum = exp_sum(row, clamp_max(max));
    divide(row, clamp_sum(sum));
}

/// Scales `row`, sets masked entries to `-inf`, and returns the row's maximum.
pub(super) fn scale_mask(row: &mut [f32], mask: &[u8], scale: f32) -> f32 {
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
pub(super) fn clamp_max(max: f32) -> f32 {
    if max < f32::MIN { f32::MIN } else { max }
}

/// Burn's clamp of the row sum (keeps NaN).
pub(super) fn clamp_sum(sum: f32) -> f32 {
    if sum < f32::MIN_POSITIVE {
        f32::MIN_POSITIVE
    } else {
        sum
    }
}

/// `x ← e^(x − shift)` for every `x` of `row`, returning the sum.
pub(super) fn exp_sum(row: &mut [f32], shift: f32) -> f32 {
    let mut sum = 0.0;
    for x in row {
        *x = exp(*x - shift);
        sum += *x;
    }
    sum
}

/// `x ← x / sum` for every `x` of `row`.
pub(super) fn divide(row: &mut [f32], sum: f32) {
    for x in row {
        *x /= sum;
    }
}

/// See [`super::softmax_grad_row`].
pub(super) fn softmax_grad_row(d: &mut [f32], p: &[f32], scale: f32) {
    let dot: f32 = d.iter().zip(p).map(|(d, p)| d * p).sum();
    grad_tail(d, p, dot, scale);
}

/// `d ← p·(d − dot)·scale` elementwise.
pub(super) fn grad_tail(d: &mut [f32], p: &[f32], dot: f32, scale: f32) {
    for (d, &p) in d.iter_mut().zip(p) {
        *d = p * (*d - dot) * scale;
    }
}

/// `σ(x) = 1/(1 + e^−x)`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// See [`super::swiglu`].
pub(super) fn swiglu(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (out, (&g, &u)) in out.iter_mut().zip(gate.iter().zip(up)) {
        out.write(g * sigmoid(g) * u);
    }
}

/// See [`super::swiglu_backward`]; `σ(g)·(1 + g·(1 − σ(g)))` is computed as
/// `σ(g) + silu(g)·(1 − σ(g))`.
pub(super) fn swiglu_backward(
    grad: &[f32],
    gate: &[f32],
    up: &[f32],
    d_gate: &mut [MaybeUninit<f32>],
    d_up: &mut [MaybeUninit<f32>],
) {
    let inputs = grad.iter().zip(gate.iter().zip(up));
    for ((d_gate, d_up), (&dy, (&g, &u))) in d_gate.iter_mut().zip(d_up).zip(inputs) {
        let s = sigmoid(g);
        let silu = g * s;
        d_up.write(dy * silu);
        d_gate.write(dy * u * (s + silu * (1.0 - s)));
    }
}

/// `1/sqrt(sum_sq/dim + eps)`, the inverse root mean square of a row.
pub(super) fn inv_rms(sum_sq: f32, dim: usize, eps: f32) -> f32 {
    1.0 / (sum_sq / dim as f32 + eps).sqrt()
}

/// See [`super::rms_norm`] (`weight` not empty).
pub(super) fn rms_norm(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [MaybeUninit<f32>],
    inv_rms: &mut [f32],
) {
    let dim = weight.len();
    let rows = x.chunks_exact(dim).zip(out.chunks_exact_mut(dim));
    for ((x, out), r) in rows.zip(inv_rms) {
        *r = self::inv_rms(x.iter().map(|v| v * v).sum(), dim, eps);
        scale_row(x, weight, *r, out);
    }
}

/// `out = x · r ⊙ weight`.
pub(super) fn scale_row(x: &[f32], weight: &[f32], r: f32, out: &mut [MaybeUninit<f32>]) {
    for (out, (&v, &w)) in out.iter_mut().zip(x.iter().zip(weight)) {
        out.write(v * r * w);
    }
}

/// See [`super::rms_norm_backward`], adding the rows' share of the weight's gradient to
/// `d_weight` (`weight` not empty).
pub(super) fn rms_norm_backward(
    grad: &[f32],
    x: &[f32],
    weight: &[f32],
    inv_rms: &[f32],
    dx: &mut [MaybeUninit<f32>],
    d_weight: &mut [f32],
) {
    let dim = weight.len();
    let rows = grad.chunks_exact(dim).zip(x.chunks_exact(dim));
    for ((dx, (grad, x)), &r) in dx.chunks_exact_mut(dim).zip(rows).zip(inv_rms) {
        let dot: f32 = grad
            .iter()
            .zip(weight.iter().zip(x))
            .map(|(dy, (w, v))| dy * w * v)
            .sum();
        norm_grad_row(
            grad,
            x,
            weight,
            (r, row_coefficient(r, dot, dim)),
            dx,
            d_weight,
        );
    }
}

/// `r³·dot/dim`, the factor of `x` in a row's `dx`.
pub(super) fn row_coefficient(r: f32, dot: f32, dim: usize) -> f32 {
    r * r * r * dot / dim as f32
}

/// `dx = r·weight ⊙ grad − c·x` and `d_weight += grad ⊙ x · r` for one row, given `(r, c)`.
pub(super) fn norm_grad_row(
    grad: &[f32],
    x: &[f32],
    weight: &[f32],
    (r, c): (f32, f32),
    dx: &mut [MaybeUninit<f32>],
    d_weight: &mut [f32],
) {
    let inputs = grad.iter().zip(x.iter().zip(weight));
    for ((dx, dw), (&dy, (&v, &w))) in dx.iter_mut().zip(d_weight).zip(inputs) {
        dx.write(r * w * dy - c * v);
        *dw += dy * v * r;
    }
}

/// See [`super::rope`], the backward step where `backward` (`dim` even and not zero).
pub(super) fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    dim: usize,
    out: &mut [MaybeUninit<f32>],
    backward: bool,
) {
    let half = dim / 2;
    let factors = cos.chunks_exact(dim).zip(sin.chunks_exact(dim));
    let rows = out.chunks_exact_mut(dim).zip(x.chunks_exact(dim));
    for ((out, x), (cos, sin)) in rows.zip(factors) {
        for j in 0..half {
            let (lo, hi) = (x[j], x[half + j]);
            let (sin_lo, sin_hi) = rope_sines(sin[j], sin[half + j], backward);
            out[j].write(lo * cos[j] + hi * sin_lo);
            out[half + j].write(hi * cos[half + j] + lo * sin_hi);
        }
    }
}

/// The sines that multiply the other half of a row, for the first half and for the second:
/// the row's own sines forward, swapped backward (the transposed rotation).
pub(super) fn rope_sines<T>(lo: T, hi: T, backward: bool) -> (T, T) {
    if backward { (hi, lo) } else { (lo, hi) }
}

/// The largest value of `row` and the index of its first occurrence (NaNs are skipped; a row
/// of NaNs, or an empty one, gives `-inf` and 0).
pub(super) fn max_argmax(row: &[f32]) -> (f32, u32) {
    let (mut max, mut arg) = (f32::NEG_INFINITY, 0);
    for (j, &x) in row.iter().enumerate() {
        if x > max {
            (max, arg) = (x, j);
        }
    }
    (max, arg as u32)
}

/// `Σ e^(x − shift)` over `row`.
pub(super) fn exp_shift_sum(row: &[f32], shift: f32) -> f32 {
    row.iter().map(|&x| exp(x - shift)).sum()
}

/// The scores of one row given its maximum (found by the caller): `(picked, lse)` from the
/// sum of `e^(x − shift)`, where `shift` is the clamped maximum.
pub(super) fn pick(row: &[f32], target: usize, shift: f32, sum: f32) -> (f32, f32) {
    let log_sum = sum.ln();
    ((row[target] - shift) - log_sum, shift + log_sum)
}

/// See [`super::log_softmax_pick`]: `(picked, lse, argmax)` of one row (`target` inside it).
pub(super) fn log_softmax_row(row: &[f32], target: usize) -> (f32, f32, u32) {
    let (max, arg) = max_argmax(row);
    let shift = clamp_max(max);
    let (picked, lse) = pick(row, target, shift, exp_shift_sum(row, shift));
    (picked, lse, arg)
}

/// See [`super::log_softmax_pick_backward`]: one row, `out[j] = grad · ([j = target] −
/// e^(x_j − lse))` for the `j` of `start..` (the row's tail after the vectorised part), every
/// element of `out` (as long as `row[start..]`) written.
pub(super) fn log_softmax_grad_tail(
    row: &[f32],
    start: usize,
    target: usize,
    lse: f32,
    grad: f32,
    out: &mut [MaybeUninit<f32>],
) {
    for (j, (o, &x)) in out.iter_mut().zip(&row[start..]).enumerate() {
        let onehot = if start + j == target { 1.0 } else { 0.0 };
        o.write(grad * (onehot - exp(x - lse)));
    }
}

/// See [`super::log_softmax_pick_backward`]: one row (`out` as long as `row`).
pub(super) fn log_softmax_grad_row(
    row: &[f32],
    target: usize,
    lse: f32,
    grad: f32,
    out: &mut [MaybeUninit<f32>],
) {
    log_softmax_grad_tail(row, 0, target, lse, grad, out);
}
