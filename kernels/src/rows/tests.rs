//! The row kernels against f64 references, the portable and the AVX-512 versions alike.

use std::mem::MaybeUninit;

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

/// Deterministic floats in `[-1, 1)`: a counter through the SplitMix64 finaliser.
struct Rng(u64);

impl Rng {
    /// `len` floats in `[-scale, scale)`.
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        let mut next = || {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        (0..len).map(|_| next() * scale).collect()
    }
}

type Out = [MaybeUninit<f32>];
/// RMSNorm's backward step: `(grad, x, weight, inv_rms, dx, d_weight)`.
type RmsNormBackward = fn(&[f32], &[f32], &[f32], &[f32], &mut Out, &mut [f32]);
/// RoPE: `(x, cos, sin, dim, out, backward)`.
type Rope = fn(&[f32], &[f32], &[f32], usize, &mut Out, bool);

/// One implementation of the whole-slice kernels, called safely.
#[derive(Clone, Copy)]
struct Kernels {
    name: &'static str,
    swiglu: fn(&[f32], &[f32], &mut Out),
    swiglu_backward: fn(&[f32], &[f32], &[f32], &mut Out, &mut Out),
    rms_norm: fn(&[f32], &[f32], f32, &mut Out, &mut [f32]),
    rms_norm_backward: RmsNormBackward,
    /// RoPE, forward or (with `true`) backward.
    rope: Rope,
}

/// The portable kernels, the AVX-512 ones where the CPU has them, and the public entry points
/// (chunked on rayon's pool; their errors are tested apart).
fn implementations() -> Vec<Kernels> {
    let mut all = vec![
        Kernels {
            name: "portable",
            swiglu: portable::swiglu,
            swiglu_backward: portable::swiglu_backward,
            rms_norm: portable::rms_norm,
            rms_norm_backward: |dy, x, w, r, dx, dw| {
                // The per-ISA kernels add to the weight's gradient.
                dw.fill(0.0);
                portable::rms_norm_backward(dy, x, w, r, dx, dw)
            },
            rope: portable::rope,
        },
        Kernels {
            name: "public",
            swiglu: |g, u, o| super::swiglu(g, u, o).unwrap(),
            swiglu_backward: |dy, g, u, dg, du| super::swiglu_backward(dy, g, u, dg, du).unwrap(),
            rms_norm: |x, w, eps, o, r| super::rms_norm(x, w, eps, o, r).unwrap(),
            rms_norm_backward: |dy, x, w, r, dx, dw| {
                super::rms_norm_backward(dy, x, w, r, dx, dw).unwrap()
            },
            rope: |x, cos, sin, dim, out, backward| {
                let step = if backward {
                    super::RopeStep::Backward
                } else {
                    super::RopeStep::Forward
                };
                super::rope(x, cos, sin, dim, step, out).unwrap()
            },
        },
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        use super::avx512;
        // SAFETY (each closure): the CPU has AVX-512F.
        all.push(Kernels {
            name: "avx512",
            swiglu: |g, u, o| unsafe { avx512::swiglu(g, u, o) },
            swiglu_backward: |dy, g, u, dg, du| unsafe {
                avx512::swiglu_backward(dy, g, u, dg, du)
            },
            rms_norm: |x, w, eps, o, r| unsafe { avx512::rms_norm(x, w, eps, o, r) },
            rms_norm_backward: |dy, x, w, r, dx, dw| {
                dw.fill(0.0);
                unsafe { avx512::rms_norm_backward(dy, x, w, r, dx, dw) }
            },
            rope: |x, cos, sin, dim, out, backward| unsafe {
                avx512::rope(x, cos, sin, dim, out, backward)
            },
        });
    }
    all
}

/// A buffer for a kernel to fill, pre-set to NaN so that an element left unwritten shows.
fn output(len: usize) -> Vec<MaybeUninit<f32>> {
    vec![MaybeUninit::new(f32::NAN); len]
}

/// The values of a filled buffer.
fn read(out: &[MaybeUninit<f32>]) -> Vec<f32> {
    // SAFETY: `output` initialised every element.
    out.iter().map(|v| unsafe { v.assume_init() }).collect()
}

/// Asserts `|got − want| <= tolerance · scale[i]` elementwise.
fn assert_close(got: &[f32], want: &[f64], scale: &[f64], tolerance: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        assert!(
            ((g as f64) - w).abs() <= tolerance * s,
            "{what}[{i}]: {g} vs {w} (tolerance {tolerance} · {s})"
        );
    }
}

/// Gates in `[-12, 12)` with saturated and special values among them.
fn gates(len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut gate = rng.vec(len, 12.0);
    for (slot, value) in [0, 5, 17, 40, 63]
        .into_iter()
        .zip([0.0, -95.0, 95.0, -30.0, 30.0])
    {
        if let Some(g) = gate.get_mut(slot) {
            *g = value;
        }
    }
    gate
}

const SWIGLU_LENS: [usize; 7] = [1, 15, 16, 17, 95, 1000, 3 * super::CHUNK + 5];

#[test]
fn swiglu_matches_f64() {
    let mut rng = Rng(11);
    for len in SWIGLU_LENS {
        let (gate, up, grad) = (gates(len, &mut rng), rng.vec(len, 3.0), rng.vec(len, 2.0));
        let sigmoid = |g: f64| 1.0 / (1.0 + (-g).exp());
        let mut want = [vec![], vec![], vec![]];
        let mut scale = [vec![], vec![], vec![]];
        for ((&g, &u), &dy) in gate.iter().zip(&up).zip(&grad) {
            let (g, u, dy) = (g as f64, u as f64, dy as f64);
            let s = sigmoid(g);
            want[0].push(g * s * u);
            want[1].push(dy * u * s * (1.0 + g * (1.0 - s)));
            want[2].push(dy * g * s);
            // Relative errors of a few ulps, of the terms of the sum in the gate's slope.
            scale[0].push(1.0 + (g * s * u).abs());
            scale[1].push(1.0 + (dy * u).abs() * (s + (g * s * (1.0 - s)).abs()));
            scale[2].push(1.0 + (dy * g * s).abs());
        }
        for k in implementations() {
            let what = format!("{} len {len}", k.name);
            let mut out = output(len);
            (k.swiglu)(&gate, &up, &mut out);
            assert_close(&read(&out), &want[0], &scale[0], 1e-6, &what);
            let (mut d_gate, mut d_up) = (output(len), output(len));
            (k.swiglu_backward)(&grad, &gate, &up, &mut d_gate, &mut d_up);
            let what = format!("{what} backward");
            assert_close(
                &read(&d_gate),
                &want[1],
                &scale[1],
                1e-6,
                &format!("{what} d_gate"),
            );
            assert_close(
                &read(&d_up),
                &want[2],
                &scale[2],
                1e-6,
                &format!("{what} d_up"),
            );
        }
    }
}

/// `(rows, dim)` of the RMSNorm cases: odd widths, vector multiples, the model's 96, and
/// enough rows (or a row wide enough) for several parallel chunks.
const RMS_SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (3, 7),
    (5, 16),
    (4, 33),
    (7, 96),
    (2, 100),
    (1000, 96),
    (2000, 17),
    (3, super::CHUNK + 9),
];

#[test]
fn rms_norm_matches_f64() {
    let mut rng = Rng(5);
    let eps = 1e-5;
    for (rows, dim) in RMS_SHAPES {
        let (x, grad) = (rng.vec(rows * dim, 2.0), rng.vec(rows * dim, 1.0));
        let weight = rng.vec(dim, 1.5);
        let mut want = [vec![], vec![], vec![]];
        let mut scale = [vec![], vec![], vec![]];
        let (mut dw, mut dw_abs) = (vec![0.0f64; dim], vec![0.0f64; dim]);
        for (x, grad) in x.chunks(dim).zip(grad.chunks(dim)) {
            let mean = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / dim as f64;
            let r = 1.0 / (mean + eps as f64).sqrt();
            want[1].push(r);
            scale[1].push(r);
            let dot: f64 = (0..dim)
                .map(|j| grad[j] as f64 * weight[j] as f64 * x[j] as f64)
                .sum();
            let dot_abs: f64 = (0..dim)
                .map(|j| (grad[j] as f64 * weight[j] as f64 * x[j] as f64).abs())
                .sum();
            for j in 0..dim {
                let (v, w, dy) = (x[j] as f64, weight[j] as f64, grad[j] as f64);
                want[0].push(v * r * w);
                scale[0].push(1.0 + (v * r * w).abs());
                let c = r.powi(3) / dim as f64;
                want[2].push(r * w * dy - c * dot * v);
                scale[2].push(1.0 + (r * w * dy).abs() + c * dot_abs * v.abs());
                dw[j] += dy * v * r;
                dw_abs[j] += (dy * v * r).abs();
            }
        }
        let dw_scale: Vec<f64> = dw_abs.iter().map(|s| 1.0 + s).collect();
        // A row's sums of `dim` terms in f32 (in sequence on the portable path) err by about
        // `sqrt(dim)` ulps.
        let row_tolerance = 2e-6 + 2.5e-7 * (dim as f64).sqrt();
        for k in implementations() {
            let what = format!("{} rows {rows} dim {dim}", k.name);
            let (mut out, mut inv_rms) = (output(rows * dim), vec![f32::NAN; rows]);
            (k.rms_norm)(&x, &weight, eps, &mut out, &mut inv_rms);
            assert_close(&read(&out), &want[0], &scale[0], row_tolerance, &what);
            let what_r = format!("{what} r");
            assert_close(&inv_rms, &want[1], &scale[1], row_tolerance, &what_r);
            let (mut dx, mut d_weight) = (output(rows * dim), vec![f32::NAN; dim]);
            (k.rms_norm_backward)(&grad, &x, &weight, &inv_rms, &mut dx, &mut d_weight);
            let what_dx = format!("{what} dx");
            assert_close(&read(&dx), &want[2], &scale[2], row_tolerance, &what_dx);
            assert_close(&d_weight, &dw, &dw_scale, 2e-6, &format!("{what} d_weight"));
        }
    }
}

/// `(rows, dim)` of the RoPE cases: the tiny model's heads (24), halves of one vector, of a
/// vector and a part, of several vectors, and enough rows for several parallel chunks.
const ROPE_SHAPES: [(usize, usize); 6] = [(1, 2), (5, 24), (3, 32), (2, 42), (4, 128), (900, 24)];

#[test]
fn rope_matches_f64_and_its_backward_is_the_transpose() {
    let mut rng = Rng(17);
    for (rows, dim) in ROPE_SHAPES {
        let len = rows * dim;
        let (x, grad) = (rng.vec(len, 2.0), rng.vec(len, 1.0));
        // Angles of any size; `sin` negative in the first half, as the model builds it.
        let angles = rng.vec(len, 50.0);
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = (angles.iter().enumerate())
            .map(|(i, a)| if i % dim < dim / 2 { -a.sin() } else { a.sin() })
            .collect();
        let half = dim / 2;
        let mut want = Vec::with_capacity(len);
        for i in 0..len {
            let (j, row) = (i % dim, i - i % dim);
            let other = row + (j + half) % dim;
            want.push(x[i] as f64 * cos[i] as f64 + x[other] as f64 * sin[i] as f64);
        }
        let scale = vec![1.0; len];
        // <rope(x), grad> against <x, rope_backward(grad)>, in f64.
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let dot_abs: f64 = want
            .iter()
            .zip(&grad)
            .map(|(w, &g)| (w * g as f64).abs())
            .sum();
        for k in implementations() {
            let what = format!("{} rows {rows} dim {dim}", k.name);
            let mut out = output(len);
            (k.rope)(&x, &cos, &sin, dim, &mut out, false);
            let out = read(&out);
            assert_close(&out, &want, &scale, 1e-6, &what);
            let mut dx = output(len);
            (k.rope)(&grad, &cos, &sin, dim, &mut dx, true);
            let (forward, backward) = (dot(&out, &grad), dot(&x, &read(&dx)));
            assert!(
                (forward - backward).abs() <= 1e-6 * (1.0 + dot_abs),
                "{what}: <rope(x), g> = {forward}, <x, rope_backward(g)> = {backward}"
            );
        }
    }
}

#[test]
fn mismatched_lengths_are_refused() {
    use super::RopeStep::{Backward, Forward};
    use super::{rms_norm, rms_norm_backward, rope, swiglu, swiglu_backward};
    use crate::KernelError::LengthMismatch;
    let (a, b) = (vec![0.0; 6], vec![0.0; 5]);
    let (mut o6, mut o5) = (output(6), output(5));
    assert_eq!(swiglu(&a, &b, &mut o6), Err(LengthMismatch));
    assert_eq!(swiglu(&a, &a, &mut o5), Err(LengthMismatch));
    let mut o6b = output(6);
    assert_eq!(
        swiglu_backward(&a, &a, &b, &mut o6, &mut o6b),
        Err(LengthMismatch)
    );
    let mut r = vec![0.0; 2];
    // dim 4 does not divide 6; an empty weight; 2 rows of 3 but one inv_rms.
    assert_eq!(
        rms_norm(&a, &[1.0; 4], 1e-5, &mut o6, &mut r),
        Err(LengthMismatch)
    );
    assert_eq!(
        rms_norm(&a, &[], 1e-5, &mut o6, &mut r),
        Err(LengthMismatch)
    );
    assert_eq!(
        rms_norm(&a, &[1.0; 3], 1e-5, &mut o6, &mut r[..1]),
        Err(LengthMismatch)
    );
    assert_eq!(rms_norm(&a, &[1.0; 3], 1e-5, &mut o6, &mut r), Ok(()));
    let mut dw = vec![0.0; 2];
    let result = rms_norm_backward(&a, &a, &[1.0; 3], &r, &mut o6, &mut dw);
    assert_eq!(result, Err(LengthMismatch));
    // An odd row width; rows that do not divide the slices; a short `sin`.
    assert_eq!(rope(&a, &a, &a, 3, Forward, &mut o6), Err(LengthMismatch));
    assert_eq!(rope(&a, &a, &a, 4, Forward, &mut o6), Err(LengthMismatch));
    assert_eq!(rope(&a, &a, &b, 2, Backward, &mut o6), Err(LengthMismatch));
    assert_eq!(rope(&a, &a, &a, 2, Backward, &mut o6), Ok(()));
}

/// Log-softmax scoring: `(logits, vocab, targets, picked, lse, argmax)`.
type Pick = fn(&[f32], usize, &[u32], &mut [f32], &mut [f32], &mut [u32]);
/// Its backward step: `(logits, vocab, targets, lse, grad, d_logits)`.
type PickBackward = fn(&[f32], usize, &[u32], &[f32], &[f32], &mut Out);

/// The portable and AVX-512 row kernels looped over rows, and the public entry points.
fn pick_implementations() -> Vec<(&'static str, Pick, PickBackward)> {
    let mut all: Vec<(&'static str, Pick, PickBackward)> = vec![
        (
            "portable",
            |x, v, t, p, l, a| {
                for (i, row) in x.chunks_exact(v).enumerate() {
                    (p[i], l[i], a[i]) = portable::log_softmax_row(row, t[i] as usize);
                }
            },
            |x, v, t, l, g, out| {
                for (i, (row, out)) in x.chunks_exact(v).zip(out.chunks_exact_mut(v)).enumerate() {
                    portable::log_softmax_grad_row(row, t[i] as usize, l[i], g[i], out);
                }
            },
        ),
        (
            "public",
            |x, v, t, p, l, a| super::log_softmax_pick(x, v, t, p, l, a).unwrap(),
            |x, v, t, l, g, out| super::log_softmax_pick_backward(x, v, t, l, g, out).unwrap(),
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        use super::avx512;
        // SAFETY (both closures): the CPU has AVX-512F.
        all.push((
            "avx512",
            |x, v, t, p, l, a| {
                for (i, row) in x.chunks_exact(v).enumerate() {
                    (p[i], l[i], a[i]) = unsafe { avx512::log_softmax_row(row, t[i] as usize) };
                }
            },
            |x, v, t, l, g, out| {
                for (i, (row, out)) in x.chunks_exact(v).zip(out.chunks_exact_mut(v)).enumerate() {
                    unsafe { avx512::log_softmax_grad_row(row, t[i] as usize, l[i], g[i], out) };
                }
            },
        ));
    }
    all
}

/// The picked log-probabilities, `lse`, the argmax (first occurrence, exactly) and the
/// backward step against f64, for vocabularies around the vector width and rows spanning
/// several parallel chunks, with ties, a suppressed logit (-1e9) and large logits among them.
/// Tolerances: `lse` and `picked` to 2e-6 · (1 + |value|) (sums of up to 512 exponentials in
/// f32), each gradient element to 1e-6 · (1 + |grad|).
#[test]
fn log_softmax_pick_matches_f64() {
    let mut rng = Rng(21);
    for (rows, vocab) in [
        (1, 1),
        (3, 15),
        (4, 16),
        (5, 17),
        (7, 33),
        (70, 512),
        (9, 1000),
    ] {
        let mut logits = rng.vec(rows * vocab, 8.0);
        for (i, row) in logits.chunks_exact_mut(vocab).enumerate() {
            if vocab > 3 {
                // A tie for the maximum in some rows, a suppressed token in others.
                let top = row.iter().cloned().fold(f32::MIN, f32::max) + 1.0;
                if i % 3 == 0 {
                    row[vocab / 3] = top;
                    row[vocab - 1] = top;
                } else if i % 3 == 1 {
                    row[1] = -1e9;
                    row[vocab - 2] = 60.0;
                }
            }
        }
        let targets: Vec<u32> = (0..rows).map(|i| ((i * 7 + 3) % vocab) as u32).collect();
        let grad = rng.vec(rows, 2.0);
        for (name, pick, backward) in pick_implementations() {
            let what = format!("{name} {rows}×{vocab}");
            let (mut picked, mut lse, mut argmax) =
                (vec![0.0; rows], vec![0.0; rows], vec![0; rows]);
            pick(&logits, vocab, &targets, &mut picked, &mut lse, &mut argmax);
            let mut d = output(rows * vocab);
            backward(&logits, vocab, &targets, &lse, &grad, &mut d);
            let d = read(&d);
            for (i, row) in logits.chunks_exact(vocab).enumerate() {
                let max = row.iter().map(|&x| x as f64).fold(f64::MIN, f64::max);
                let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
                let want_lse = max + sum.ln();
                let t = targets[i] as usize;
                let want_picked = row[t] as f64 - want_lse;
                let first = row.iter().position(|&x| x as f64 == max).unwrap();
                assert_eq!(argmax[i] as usize, first, "{what}: argmax of row {i}");
                let close =
                    |got: f32, want: f64| (got as f64 - want).abs() <= 2e-6 * (1.0 + want.abs());
                assert!(
                    close(lse[i], want_lse),
                    "{what}: lse[{i}] {} vs {want_lse}",
                    lse[i]
                );
                assert!(
                    close(picked[i], want_picked),
                    "{what}: picked[{i}] {} vs {want_picked}",
                    picked[i]
                );
                let want: Vec<f64> = row
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| {
                        let onehot = if j == t { 1.0 } else { 0.0 };
                        grad[i] as f64 * (onehot - (x as f64 - want_lse).exp())
                    })
                    .collect();
                let scale = vec![1.0 + grad[i].abs() as f64; vocab];
                let got = &d[i * vocab..(i + 1) * vocab];
                assert_close(
                    got,
                    &want,
                    &scale,
                    1e-6,
                    &format!("{what}: d_logits row {i}"),
                );
            }
        }
    }
}

#[test]
fn log_softmax_pick_refuses_bad_shapes_and_targets() {
    use super::{log_softmax_pick, log_softmax_pick_backward};
    use crate::KernelError::{LengthMismatch, OutOfBounds};
    let x = vec![0.5; 12];
    let (mut p, mut l, mut a) = (vec![0.0; 3], vec![0.0; 3], vec![0; 3]);
    // vocab 5 does not divide 12; zero vocab; two targets for three rows; a target = vocab.
    assert_eq!(
        log_softmax_pick(&x, 5, &[0, 0], &mut p[..2], &mut l[..2], &mut a[..2]),
        Err(LengthMismatch)
    );
    assert_eq!(
        log_softmax_pick(&x, 0, &[], &mut p, &mut l, &mut a),
        Err(LengthMismatch)
    );
    assert_eq!(
        log_softmax_pick(&x, 4, &[0, 1], &mut p, &mut l, &mut a),
        Err(LengthMismatch)
    );
    assert_eq!(
        log_softmax_pick(&x, 4, &[0, 4, 1], &mut p, &mut l, &mut a),
        Err(OutOfBounds)
    );
    assert_eq!(
        log_softmax_pick(&x, 4, &[0, 3, 1], &mut p, &mut l[..2], &mut a),
        Err(LengthMismatch)
    );
    assert_eq!(
        log_softmax_pick(&x, 4, &[0, 3, 1], &mut p, &mut l, &mut a),
        Ok(())
    );
    let mut d = output(12);
    let g = [1.0; 3];
    assert_eq!(
        log_softmax_pick_backward(&x, 4, &[0, 3, 1], &l, &g, &mut d[..8]),
        Err(LengthMismatch)
    );
    assert_eq!(
        log_softmax_pick_backward(&x, 4, &[0, 9, 1], &l, &g, &mut d),
        Err(OutOfBounds)
    );
    assert_eq!(
        log_softmax_pick_backward(&x, 4, &[0, 3, 1], &l, &g[..2], &mut d),
        Err(LengthMismatch)
    );
    assert_eq!(
        log_softmax_pick_backward(&x, 4, &[0, 3, 1], &l, &g, &mut d),
        Ok(())
    );
}
