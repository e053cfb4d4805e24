//! x86-64 micro-kernels (AVX-512F and AVX2+FMA) and run-time ISA detection.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use crate::MatRef;
use crate::driver::{self, ASliver, Micro, Region, View};

/// The instruction set the kernels use on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    None,
    Avx2,
    Avx512,
}

/// Detected once, then cached. Setting `SFTVSRL_KERNELS_FORCE_AVX2` in the environment picks
/// the AVX2+FMA kernel even on AVX-512 CPUs (to test it).
pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var_os("SFTVSRL_KERNELS_FORCE_AVX2").is_some()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            Isa::Avx2
        } else if is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Isa::Avx2
        } else {
            Isa::None
        }
    })
}

/// # Safety
/// Views checked to lie inside their slices, `c` valid for an m × n matrix of row stride
/// `ldc >= n` (initialised when `accumulate`), m, n, k > 0, and `isa() != Isa::None`.
pub(crate) unsafe fn sgemm(a: MatRef, b: MatRef, c: *mut f32, ldc: usize, accumulate: bool) {
    let r = Region {
        a: View {
            ptr: a.data.as_ptr(),
            rs: a.row_stride,
            cs: a.col_stride,
        },
        b: View {
            ptr: b.data.as_ptr(),
            rs: b.row_stride,
            cs: b.col_stride,
        },
        c,
        ldc,
        m: a.rows,
        n: b.cols,
        k: a.cols,
        accumulate,
    };
    // SAFETY: forwarded from the caller; the ISA matches the kernel.
    unsafe {
        match isa() {
            Isa::Avx512 => driver::gemm::<Avx512Tile>(r),
            Isa::Avx2 => driver::gemm::<Avx2>(r),
            Isa::None => unreachable!("sgemm called without a fast path"),
        }
    }
}

/// Dispatches a runtime row count to the const-generic kernel instantiations.
macro_rules! dispatch_rows {
    ($kernel:ident, $mr:expr, [$($m:literal),*], <$g:tt>, $args:tt) => {
        match $mr {
            $($m => $kernel::<$m, $g> $args,)*
            _ => unreachable!("tile with {} rows", $mr),
        }
    };
    ($kernel:ident, $mr:expr, [$($m:literal),*], <$g1:tt, $g2:tt>, $args:tt) => {
        match $mr {
            $($m => $kernel::<$m, $g1, $g2> $args,)*
            _ => unreachable!("tile with {} rows", $mr),
        }
    };
}

/// AVX-512F: MR rows × (16·NV) columns, MR·NV zmm accumulators.
pub(crate) struct Avx512<const MR: usize, const NV: usize>;

/// The AVX-512 configuration in use: 12 rows × 32 columns, 24 accumulators, 2 loads of B and
/// 12 broadcasts of A per 24 FMAs. (6 × 64 and 8 × 48 measured no better here, and 32
/// columns divide all the project's widths: 96, 288, 576, 1536, 49152.)
pub(crate) type Avx512Tile = Avx512<12, 2>;

impl<const MR_: usize, const NV: usize> Micro for Avx512<MR_, NV> {
    const MR: usize = MR_;
    const NR: usize = 16 * NV;

    unsafe fn run(r: &Region) {
        // SAFETY: forwarded.
        unsafe { run_avx512::<MR_, NV>(r) }
    }

    #[inline(always)]
    unsafe fn pack_transposed(
        src: *const f32,
        stride: usize,
        count: usize,
        kc: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        // SAFETY: forwarded; `run` is only called with AVX-512F present.
        unsafe { transpose_pack_avx512(src, stride, count, kc, dst, dst_stride) }
    }

    #[inline(always)]
    unsafe fn tile(
        mr: usize,
        kc: usize,
        a: ASliver,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        nr: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded.
        unsafe {
            match a {
                ASliver::Packed(a) => dispatch_rows!(
                    kernel_avx512,
                    mr,
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                    <{ NV }, false>,
                    (kc, a, 0, b, ldb, c, ldc, nr, accumulate)
                ),
                ASliver::Rows(a, lda) => dispatch_rows!(
                    kernel_avx512,
                    mr,
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                    <{ NV }, true>,
                    (kc, a, lda, b, ldb, c, ldc, nr, accumulate)
                ),
            }
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<const MR: usize, const NV: usize>(r: &Region) {
    // SAFETY: forwarded.
    unsafe { driver::region::<Avx512<MR, NV>>(r) }
}

/// How many rows of the B panel ahead the AVX-512 kernel prefetches.
const B_PREFETCH_ROWS: usize = 16;

/// [`Micro::pack_transposed`] with 16 × 16 in-register transposes: 16 columns of up to 16
/// source rows are loaded, transposed (unpack 32-bit, unpack 64-bit, two 128-bit lane
/// shuffles), and stored as 16 masked rows of `count` floats.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_pack_avx512(
    src: *const f32,
    stride: usize,
    count: usize,
    kc: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    let mask = ((1u32 << count) - 1) as u16;
    let mut p = 0;
    while p + 16 <= kc {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, r) in r.iter_mut().enumerate().take(count) {
            // SAFETY: row i, columns p..p+16 are inside the source.
            *r = unsafe { _mm512_loadu_ps(src.add(i * stride + p)) };
        }
        // Stage 1: interleave 32-bit elements of row pairs within 128-bit lanes.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Stage 2: interleave 64-bit pairs; u[4g + j] lane L holds rows 4g..4g+4 of column
        // 4L + j.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let (t0, t1) = (_mm512_castps_pd(t[4 * g]), _mm512_castps_pd(t[4 * g + 1]));
            let (t2, t3) = (
                _mm512_castps_pd(t[4 * g + 2]),
                _mm512_castps_pd(t[4 * g + 3]),
            );
            u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        // Stage 3: 4 × 4 transpose of 128-bit lanes across u[j], u[4 + j], u[8 + j], u[12 + j].
        for j in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j]);
            let v2 = _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j]);
            let v3 = _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j]);
            let cols = [
                _mm512_shuffle_f32x4::<0x88>(v0, v2),
                _mm512_shuffle_f32x4::<0xDD>(v0, v2),
                _mm512_shuffle_f32x4::<0x88>(v1, v3),
                _mm512_shuffle_f32x4::<0xDD>(v1, v3),
            ];
            for (l, col) in cols.into_iter().enumerate() {
                // SAFETY: destination row p + 4l + j holds at least `count` floats.
                unsafe { _mm512_mask_storeu_ps(dst.add((p + 4 * l + j) * dst_stride), mask, col) };
            }
        }
        p += 16;
    }
    // SAFETY: forwarded.
    unsafe { driver::transpose_scalar(src, stride, count, p, kc, dst, dst_stride) };
}

/// The AVX-512 tile: A element (i, p) at `a[p * M + i]` (packed) or, with `ROWS`, at
/// `a[i * lda + p]`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx512<const M: usize, const NV: usize, const ROWS: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    accumulate: bool,
) {
    // Start fetching the C tile now: its rows are far apart (often in L3 or memory), and the
    // write-back at the end would otherwise wait for them.
    for i in 0..M {
        let row = c.wrapping_add(i * ldc);
        let mut j = 0;
        while j < nr {
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(j).cast());
            j += 16;
        }
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(nr - 1).cast());
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; M];
    let mut a = a;
    let mut b = b;
    // SAFETY: the sliver holds M rows of kc floats, the panel kc rows of 16 * NV floats.
    unsafe {
        for _ in 0..kc {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(b.add(16 * v));
                // Fetch the panel some rows ahead: B read in place has its rows in different
                // pages, where the hardware prefetchers do not follow.
                _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(B_PREFETCH_ROWS * ldb + 16 * v).cast());
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(if ROWS { i * lda } else { i }));
                for v in 0..NV {
                    acc[v] = _mm512_fmadd_ps(ai, bv[v], acc[v]);
                }
            }
            a = a.add(if ROWS { 1 } else { M });
            b = b.add(ldb);
        }
    }
    let mut masks = [0 as __mmask16; NV];
    for (v, mask) in masks.iter_mut().enumerate() {
        let lanes = nr.saturating_sub(16 * v).min(16);
        *mask = ((1u32 << lanes) - 1) as u16;
    }
    // SAFETY: the first nr columns of M rows at stride ldc lie in C; masked-off lanes are not
    // accessed.
    unsafe {
        for (i, acc) in acc.iter().enumerate() {
            let row = c.wrapping_add(i * ldc);
            for v in 0..NV {
                let p = row.wrapping_add(16 * v);
                let mut r = acc[v];
                if accumulate {
                    r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(masks[v], p));
                }
                _mm512_mask_storeu_ps(p, masks[v], r);
            }
        }
    }
}

/// AVX2+FMA: 6 × 16 tile, 12 ymm accumulators.
pub(crate) struct Avx2;

impl Micro for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;

    unsafe fn run(r: &Region) {
        // SAFETY: forwarded.
        unsafe { run_avx2(r) }
    }

    #[inline(always)]
    unsafe fn tile(
        mr: usize,
        kc: usize,
        a: ASliver,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        nr: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded.
        unsafe {
            match a {
                ASliver::Packed(a) => dispatch_rows!(
                    kernel_avx2,
                    mr,
                    [1, 2, 3, 4, 5, 6],
                    <false>,
                    (kc, a, 0, b, ldb, c, ldc, nr, accumulate)
                ),
                ASliver::Rows(a, lda) => dispatch_rows!(
                    kernel_avx2,
                    mr,
                    [1, 2, 3, 4, 5, 6],
                    <true>,
                    (kc, a, lda, b, ldb, c, ldc, nr, accumulate)
                ),
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(r: &Region) {
    // SAFETY: forwarded.
    unsafe { driver::region::<Avx2>(r) }
}

/// The AVX2 tile, A addressed as in [`kernel_avx512`].
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx2<const M: usize, const ROWS: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    accumulate: bool,
) {
    let mut c0 = [_mm256_setzero_ps(); M];
    let mut c1 = [_mm256_setzero_ps(); M];
    let mut a = a;
    let mut b = b;
    // SAFETY: the sliver holds M rows of kc floats, the panel kc rows of 16 floats.
    unsafe {
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for i in 0..M {
                let ai = _mm256_broadcast_ss(&*a.add(if ROWS { i * lda } else { i }));
                c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
            }
            a = a.add(if ROWS { 1 } else { M });
            b = b.add(ldb);
        }
    }
    // SAFETY: the first nr columns of M rows at stride ldc lie in C.
    unsafe {
        if nr == 16 {
            for i in 0..M {
                let row = c.add(i * ldc);
                let (mut r0, mut r1) = (c0[i], c1[i]);
                if accumulate {
                    r0 = _mm256_add_ps(r0, _mm256_loadu_ps(row));
                    r1 = _mm256_add_ps(r1, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, r0);
                _mm256_storeu_ps(row.add(8), r1);
            }
        } else {
            let mut tmp = [0.0f32; 16];
            for i in 0..M {
                let row = c.add(i * ldc);
                _mm256_storeu_ps(tmp.as_mut_ptr(), c0[i]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), c1[i]);
                for (j, &v) in tmp.iter().enumerate().take(nr) {
                    let dst = row.add(j);
                    *dst = if accumulate { *dst + v } else { v };
                }
            }
        }
    }
}
