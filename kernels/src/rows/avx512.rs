//! AVX-512 row kernels: 16 lanes at a time, the scalar kernels for the remainder.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::portable::{self, EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, TAYLOR};

/// Lanes of a vector.
const L: usize = 16;

/// `e^x` per lane; the same steps as [`portable::exp`].
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    // max/min return their second operand when either is NaN: NaN passes through.
    let x = _mm512_min_ps(
        _mm512_set1_ps(EXP_HI),
        _mm512_max_ps(_mm512_set1_ps(EXP_LO), x),
    );
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
pub(super) fn softmax_row(row: &mut [f32], mask: &[u8], scale: f32) {
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
        unsafe { _mm512_storeu_ps(ptr.add(i), _mm512_div_ps(_mm512_loadu_ps(ptr.add(i)), vsum)) };
    }
    portable::divide(&mut row[body..len], sum);
}

/// `x ← e^(x − shift)` for every `x` of `row`, returning the sum.
#[target_feature(enable = "avx512f")]
pub(super) fn exp_sum(row: &mut [f32], shift: f32) -> f32 {
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
pub(super) fn softmax_grad_row(d: &mut [f32], p: &[f32], scale: f32) {
    let len = d.len().min(p.len());
    let body = len - len % L;
    let (dp, pp) = (d.as_mut_ptr(), p.as_ptr());
    let mut vdot = _mm512_setzero_ps();
    for i in (0..body).step_by(L) {
        // SAFETY: i + 16 <= body <= the lengths of `d` and `p`.
        unsafe {
            vdot = _mm512_fmadd_ps(_mm512_loadu_ps(dp.add(i)), _mm512_loadu_ps(pp.add(i)), vdot);
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

/// `σ(x) = 1/(1 + e^−x)` per lane.
#[target_feature(enable = "avx512f")]
fn sigmoid16(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    _mm512_div_ps(one, _mm512_add_ps(one, e))
}

/// The length of the shortest of `lens`, and the part of it that whole vectors cover.
fn body(lens: &[usize]) -> (usize, usize) {
    let len = lens.iter().copied().min().unwrap_or(0);
    (len, len - len % L)
}

/// See [`super::swiglu`].
#[target_feature(enable = "avx512f")]
pub(super) fn swiglu(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    let (len, body) = body(&[gate.len(), up.len(), out.len()]);
    let (gp, up_p, op) = (gate.as_ptr(), up.as_ptr(), out.as_mut_ptr().cast::<f32>());
    for i in (0..body).step_by(L) {
        // SAFETY: i + 16 <= body <= the length of each slice.
        unsafe {
            let g = _mm512_loadu_ps(gp.add(i));
            let silu = _mm512_mul_ps(g, sigmoid16(g));
            _mm512_storeu_ps(op.add(i), _mm512_mul_ps(silu, _mm512_loadu_ps(up_p.add(i))));
        }
    }
    portable::swiglu(&gate[body..len], &up[body..len], &mut out[body..len]);
}

/// See [`super::swiglu_backward`].
#[target_feature(enable = "avx512f")]
pub(super) fn swiglu_backward(
    grad: &[f32],
    gate: &[f32],
    up: &[f32],
    d_gate: &mut [MaybeUninit<f32>],
    d_up: &mut [MaybeUninit<f32>],
) {
    let lens = [grad.len(), gate.len(), up.len(), d_gate.len(), d_up.len()];
    let (len, body) = body(&lens);
    let (dyp, gp, up_p) = (grad.as_ptr(), gate.as_ptr(), up.as_ptr());
    let (dgp, dup) = (
        d_gate.as_mut_ptr().cast::<f32>(),
        d_up.as_mut_ptr().cast::<f32>(),
    );
    let one = _mm512_set1_ps(1.0);
    for i in (0..body).step_by(L) {
        // SAFETY: i + 16 <= body <= the length of each slice.
        unsafe {
            let (dy, g) = (_mm512_loadu_ps(dyp.add(i)), _mm512_loadu_ps(gp.add(i)));
            let s = sigmoid16(g);
            let silu = _mm512_mul_ps(g, s);
            _mm512_storeu_ps(dup.add(i), _mm512_mul_ps(dy, silu));
            let slope = _mm512_fmadd_ps(silu, _mm512_sub_ps(one, s), s);
            let dy_u = _mm512_mul_ps(dy, _mm512_loadu_ps(up_p.add(i)));
            _mm512_storeu_ps(dgp.add(i), _mm512_mul_ps(dy_u, slope));
        }
    }
    portable::swiglu_backward(
        &grad[body..len],
        &gate[body..len],
        &up[body..len],
        &mut d_gate[body..len],
        &mut d_up[body..len],
    );
}

/// See [`super::rms_norm`] (`weight` not empty).
#[target_feature(enable = "avx512f")]
pub(super) fn rms_norm(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [MaybeUninit<f32>],
    inv_rms: &mut [f32],
) {
    let dim = weight.len();
    let body = dim - dim % L;
    let wp = weight.as_ptr();
    let rows = x.chunks_exact(dim).zip(out.chunks_exact_mut(dim));
    for ((x, out), r) in rows.zip(inv_rms) {
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr().cast::<f32>());
        let mut acc = _mm512_setzero_ps();
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body <= dim, the length of `x`.
            let v = unsafe { _mm512_loadu_ps(xp.add(i)) };
            acc = _mm512_fmadd_ps(v, v, acc);
        }
        let tail: f32 = x[body..].iter().map(|v| v * v).sum();
        *r = portable::inv_rms(_mm512_reduce_add_ps(acc) + tail, dim, eps);
        let vr = _mm512_set1_ps(*r);
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body <= dim, the length of `x`, `out` and `weight`.
            unsafe {
                let y = _mm512_mul_ps(_mm512_loadu_ps(xp.add(i)), vr);
                _mm512_storeu_ps(op.add(i), _mm512_mul_ps(y, _mm512_loadu_ps(wp.add(i))));
            }
        }
        portable::scale_row(&x[body..], &weight[body..], *r, &mut out[body..]);
    }
}

/// See [`super::rms_norm_backward`], adding the rows' share of the weight's gradient to
/// `d_weight` (`weight` not empty).
#[target_feature(enable = "avx512f")]
pub(super) fn rms_norm_backward(
    grad: &[f32],
    x: &[f32],
    weight: &[f32],
    inv_rms: &[f32],
    dx: &mut [MaybeUninit<f32>],
    d_weight: &mut [f32],
) {
    let dim = weight.len();
    let (_, body) = body(&[dim, d_weight.len()]);
    let (dw_body, dw_tail) = d_weight.split_at_mut(body);
    let (wp, dwp) = (weight.as_ptr(), dw_body.as_mut_ptr());
    let rows = grad.chunks_exact(dim).zip(x.chunks_exact(dim));
    for ((dx, (grad, x)), &r) in dx.chunks_exact_mut(dim).zip(rows).zip(inv_rms) {
        let (gp, xp, dxp) = (grad.as_ptr(), x.as_ptr(), dx.as_mut_ptr().cast::<f32>());
        let mut acc = _mm512_setzero_ps();
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body <= dim, the length of `grad`, `x` and `weight`.
            unsafe {
                let dy_w = _mm512_mul_ps(_mm512_loadu_ps(gp.add(i)), _mm512_loadu_ps(wp.add(i)));
                acc = _mm512_fmadd_ps(dy_w, _mm512_loadu_ps(xp.add(i)), acc);
            }
        }
        let tail: f32 = grad[body..]
            .iter()
            .zip(weight[body..].iter().zip(&x[body..]))
            .map(|(dy, (w, v))| dy * w * v)
            .sum();
        let c = portable::row_coefficient(r, _mm512_reduce_add_ps(acc) + tail, dim);
        let (vr, vc) = (_mm512_set1_ps(r), _mm512_set1_ps(c));
        for i in (0..body).step_by(L) {
            // SAFETY: i + 16 <= body, the length of `dw_body`, and <= dim, the length of
            // `weight` and of each row slice.
            unsafe {
                let (dy, v) = (_mm512_loadu_ps(gp.add(i)), _mm512_loadu_ps(xp.add(i)));
                let r_w = _mm512_mul_ps(vr, _mm512_loadu_ps(wp.add(i)));
                _mm512_storeu_ps(dxp.add(i), _mm512_fmsub_ps(r_w, dy, _mm512_mul_ps(vc, v)));
                let dw = _mm512_fmadd_ps(_mm512_mul_ps(dy, v), vr, _mm512_loadu_ps(dwp.add(i)));
                _mm512_storeu_ps(dwp.add(i), dw);
            }
        }
        portable::norm_grad_row(
            &grad[body..],
            &x[body..],
            &weight[body..],
            (r, c),
            &mut dx[body..],
            dw_tail,
        );
    }
}

/// See [`super::rope`], the backward step where `backward` (`dim` even and not zero). Each half
/// row is read 16 lanes at a
/// time, the last part through a lane mask.
#[target_feature(enable = "avx512f")]
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
        let (xp, cp, sp) = (x.as_ptr(), cos.as_ptr(), sin.as_ptr());
        let op = out.as_mut_ptr().cast::<f32>();
        for j in (0..half).step_by(L) {
            let lanes = (half - j).min(L);
            let mask: __mmask16 = if lanes == L { !0 } else { (1 << lanes) - 1 };
            // SAFETY: every row slice holds `dim = 2·half` floats; the lanes that `mask` keeps
            // are at `j..j + lanes` and `half + j..half + j + lanes`, inside the row, and
            // masked-out lanes are neither read nor written.
            unsafe {
                let load = |p: *const f32| _mm512_maskz_loadu_ps(mask, p);
                let (lo, hi) = (load(xp.add(j)), load(xp.add(half + j)));
                let (cos_lo, cos_hi) = (load(cp.add(j)), load(cp.add(half + j)));
                let sines = (load(sp.add(j)), load(sp.add(half + j)));
                let (sin_lo, sin_hi) = portable::rope_sines(sines.0, sines.1, backward);
                let out_lo = _mm512_fmadd_ps(hi, sin_lo, _mm512_mul_ps(lo, cos_lo));
                let out_hi = _mm512_fmadd_ps(lo, sin_hi, _mm512_mul_ps(hi, cos_hi));
                _mm512_mask_storeu_ps(op.add(j), mask, out_lo);
                _mm512_mask_storeu_ps(op.add(half + j), mask, out_hi);
            }
        }
    }
}

/// See [`super::log_softmax_pick`]: `(picked, lse, argmax)` of one row (`target` inside it),
/// with the same steps as [`portable::log_softmax_row`].
#[target_feature(enable = "avx512f")]
pub(super) fn log_softmax_row(row: &[f32], target: usize) -> (f32, f32, u32) {
    let body = row.len() - row.len() % L;
    let ptr = row.as_ptr();
    let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..body).step_by(L) {
        // SAFETY: i + 16 <= body <= row.len(). max keeps its first operand when the second
        // is NaN, so NaNs are skipped as in the scalar kernel.
        vmax = _mm512_max_ps(vmax, unsafe { _mm512_loadu_ps(ptr.add(i)) });
    }
    let (tail_max, tail_arg) = portable::max_argmax(&row[body..]);
    let body_max = _mm512_reduce_max_ps(vmax);
    // The first occurrence: in the body when its maximum is at least the tail's.
    let (max, arg) = if body > 0 && body_max >= tail_max {
        let splat = _mm512_set1_ps(body_max);
        let mut arg = 0;
        for i in (0..body).step_by(L) {
            // SAFETY: as above.
            let hits =
                _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(unsafe { _mm512_loadu_ps(ptr.add(i)) }, splat);
            if hits != 0 {
                arg = i + hits.trailing_zeros() as usize;
                break;
            }
        }
        (body_max, arg as u32)
    } else {
        (tail_max, body as u32 + tail_arg)
    };
    let shift = portable::clamp_max(max);
    let vshift = _mm512_set1_ps(shift);
    let mut vsum = _mm512_setzero_ps();
    for i in (0..body).step_by(L) {
        // SAFETY: as above.
        let x = unsafe { _mm512_loadu_ps(ptr.add(i)) };
        vsum = _mm512_add_ps(vsum, exp16(_mm512_sub_ps(x, vshift)));
    }
    let sum = _mm512_reduce_add_ps(vsum) + portable::exp_shift_sum(&row[body..], shift);
    let (picked, lse) = portable::pick(row, target, shift, sum);
    (picked, lse, arg)
}

/// See [`super::log_softmax_pick_backward`]: one row (`target` inside it, `out` as long as
/// `row`).
#[target_feature(enable = "avx512f")]
pub(super) fn log_softmax_grad_row(
    row: &[f32],
    target: usize,
    lse: f32,
    grad: f32,
    out: &mut [MaybeUninit<f32>],
) {
    let (len, body) = body(&[row.len(), out.len()]);
    let (xp, op) = (row.as_ptr(), out.as_mut_ptr().cast::<f32>());
    let (vlse, vneg) = (_mm512_set1_ps(lse), _mm512_set1_ps(-grad));
    for i in (0..body).step_by(L) {
        // SAFETY: i + 16 <= body <= the lengths of `row` and `out`.
        unsafe {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(xp.add(i)), vlse));
            _mm512_storeu_ps(op.add(i), _mm512_mul_ps(vneg, e));
        }
    }
    if target < body {
        // SAFETY: written above; the same value as the portable kernel's `grad · (1 − e)`.
        unsafe {
            let e = portable::exp(row[target] - lse);
            *op.add(target) = grad * (1.0 - e);
        }
    }
    portable::log_softmax_grad_tail(&row[..len], body, target, lse, grad, &mut out[body..len]);
}
