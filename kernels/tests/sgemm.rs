//! `sgemm` against a naive f64-accumulated reference.
//!
//! Tolerance: |ours - reference| <= 4 · k · max|a| · max|b| · f32::EPSILON (+ the same bound
//! on |c| · EPSILON for the accumulated value when `accumulate`). An f32 dot product of length
//! k summed in any order errs by at most about k · eps · Σ|a_i b_i| <= k · eps · k · max|a| max|b|
//! in the worst case; for random data the error grows like sqrt(k), so k · eps · max|a| max|b|
//! (a factor k looser than typical, far tighter than any indexing bug) is a sharp test.

use proptest::prelude::*;
use std::mem::MaybeUninit;

use sftvsrl_kernels::{KernelError, MatRef, sgemm, sgemm_available, sgemm_strided, sgemm_uninit};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next()).collect()
    }
}

/// Storage for an m × n operand in one of three layouts, with padding so strides exceed the
/// dense ones in the "strided" case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    RowMajor,
    ColMajor,
    /// Neither stride is 1: row stride 2·(cols+1)... element (i, j) at i·rs + j·cs.
    Strided,
}

fn make<'a>(
    data: &'a mut Vec<f32>,
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    layout: Layout,
) -> MatRef<'a> {
    let (rs, cs, len) = match layout {
        Layout::RowMajor => (cols, 1, rows * cols),
        Layout::ColMajor => (1, rows, rows * cols),
        Layout::Strided => (
            2 * cols + 3,
            2,
            if rows * cols == 0 {
                0
            } else {
                (rows - 1) * (2 * cols + 3) + (cols - 1) * 2 + 1
            },
        ),
    };
    *data = rng.vec(len);
    MatRef {
        data,
        rows,
        cols,
        row_stride: rs,
        col_stride: cs,
    }
}

fn at(v: &MatRef, i: usize, j: usize) -> f32 {
    v.data[i * v.row_stride + j * v.col_stride]
}

fn check(m: usize, k: usize, n: usize, la: Layout, lb: Layout, accumulate: bool, seed: u64) {
    let mut rng = Rng(seed);
    let (mut ad, mut bd) = (Vec::new(), Vec::new());
    let a = make(&mut ad, &mut rng, m, k, la);
    let b = make(&mut bd, &mut rng, k, n, lb);
    let c0 = rng.vec(m * n);
    let mut c = c0.clone();
    sgemm(a, b, &mut c, accumulate).unwrap();
    let max_a = a.data.iter().fold(0.0f32, |x, y| x.max(y.abs())) as f64;
    let max_b = b.data.iter().fold(0.0f32, |x, y| x.max(y.abs())) as f64;
    let eps = f32::EPSILON as f64;
    for i in 0..m {
        for j in 0..n {
            let mut want = 0.0f64;
            for p in 0..k {
                want += at(&a, i, p) as f64 * at(&b, p, j) as f64;
            }
            let mut tol = 4.0 * k as f64 * max_a * max_b * eps;
            if accumulate {
                want += c0[i * n + j] as f64;
                tol += 4.0 * (c0[i * n + j].abs() as f64 + want.abs()) * eps;
            }
            let got = c[i * n + j] as f64;
            assert!(
                (got - want).abs() <= tol,
                "m={m} k={k} n={n} {la:?}·{lb:?} acc={accumulate}: c[{i},{j}] = {got}, want {want} (tol {tol:e})"
            );
        }
    }
}

const LAYOUTS: [Layout; 2] = [Layout::RowMajor, Layout::ColMajor];

#[test]
fn available_on_this_machine() {
    // The project's machines all have AVX2+FMA at least; the other tests need it too.
    assert!(sgemm_available());
}

#[test]
fn small_and_edge_shapes_all_layouts() {
    // Sizes around the AVX-512 tile (12 × 32), the AVX2 tile (6 × 16), primes and 1.
    let ms = [1, 2, 5, 6, 7, 11, 12, 13, 23, 24, 25, 37];
    let ns = [1, 3, 15, 16, 17, 31, 32, 33, 47, 64, 65];
    let ks = [1, 2, 7, 17, 64];
    let mut seed = 1;
    for &m in &ms {
        for &n in &ns {
            for &k in &ks {
                for la in LAYOUTS {
                    for lb in LAYOUTS {
                        seed += 1;
                        check(m, k, n, la, lb, seed % 2 == 0, seed);
                    }
                }
            }
        }
    }
}

#[test]
fn block_edges_in_k_m_n() {
    // Across the k block (256), the A block (960 rows), the B block (4096 columns), and the
    // "read B in place" threshold (m <= 24).
    for &(m, k, n) in &[
        (13, 255, 33),
        (13, 257, 33),
        (25, 513, 40),
        (24, 300, 97),
        (961, 20, 35),
        (959, 3, 70),
        (3, 5, 4097),
        (30, 7, 4129),
        (97, 600, 101),
    ] {
        for la in LAYOUTS {
            for lb in LAYOUTS {
                check(m, k, n, la, lb, false, (m * 31 + k * 7 + n) as u64);
                check(m, k, n, la, lb, true, (m * 37 + k * 3 + n) as u64);
            }
        }
    }
}

#[test]
fn general_strides() {
    for &(m, k, n) in &[(1, 1, 1), (5, 9, 40), (26, 33, 70), (40, 300, 17)] {
        for la in [Layout::RowMajor, Layout::ColMajor, Layout::Strided] {
            for lb in [Layout::RowMajor, Layout::ColMajor, Layout::Strided] {
                check(m, k, n, la, lb, true, (m + k + n) as u64);
            }
        }
    }
}

#[test]
fn large_enough_to_use_threads() {
    // 2·m·n·k well above the threading threshold; both split directions.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        check(200, 130, 301, Layout::RowMajor, Layout::RowMajor, false, 7);
        check(301, 130, 40, Layout::ColMajor, Layout::RowMajor, true, 8);
        check(50, 520, 200, Layout::RowMajor, Layout::ColMajor, false, 9);
    });
}

#[test]
fn project_shapes_spot_check() {
    // One shape of each kind the project uses (tiny model and its backward forms).
    check(
        3072 / 8,
        96,
        288,
        Layout::RowMajor,
        Layout::RowMajor,
        false,
        11,
    );
    check(
        96,
        3072 / 4,
        288,
        Layout::ColMajor,
        Layout::RowMajor,
        false,
        12,
    );
    check(
        3072 / 8,
        288,
        96,
        Layout::RowMajor,
        Layout::ColMajor,
        true,
        13,
    );
    check(
        16,
        576,
        1536 / 4,
        Layout::RowMajor,
        Layout::RowMajor,
        false,
        14,
    );
}

#[test]
fn k_zero_zeroes_or_keeps_c() {
    let a = MatRef::row_major(&[], 3, 0);
    let b = MatRef::row_major(&[], 0, 4);
    let mut c = vec![5.0f32; 12];
    sgemm(a, b, &mut c, true).unwrap();
    assert!(c.iter().all(|&x| x == 5.0));
    sgemm(a, b, &mut c, false).unwrap();
    assert!(c.iter().all(|&x| x == 0.0));
}

/// The uninitialised-output entry point writes every element: its result over memory full of
/// NaN (what stale memory may hold) equals `sgemm`'s into zeroed memory, bit for bit, across
/// several k blocks, edge tiles and threads; with k = 0 it writes zeros.
#[test]
fn uninit_output_is_fully_written() {
    for (m, k, n) in [(1, 1, 1), (13, 385, 33), (100, 800, 70), (300, 200, 600)] {
        let mut rng = Rng(m as u64 * 7 + n as u64);
        let (ad, bd) = (rng.vec(m * k), rng.vec(k * n));
        let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
        let mut want = vec![0.0f32; m * n];
        sgemm(a, b, &mut want, false).unwrap();
        let mut got = vec![MaybeUninit::new(f32::NAN); m * n];
        sgemm_uninit(a, b, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // SAFETY: initialised with NaN above and overwritten by the kernel.
            let g = unsafe { g.assume_init() };
            assert_eq!(g.to_bits(), w.to_bits(), "{m}×{k}·{k}×{n}: element {i}");
        }
    }
    let mut c = vec![MaybeUninit::new(f32::NAN); 12];
    sgemm_uninit(
        MatRef::row_major(&[], 3, 0),
        MatRef::row_major(&[], 0, 4),
        &mut c,
    )
    .unwrap();
    // SAFETY: initialised above.
    assert!(c.iter().all(|x| unsafe { x.assume_init() } == 0.0));
    let err = sgemm_uninit(
        MatRef::row_major(&[0.0; 6], 2, 3),
        MatRef::row_major(&[0.0; 6], 3, 2),
        &mut c,
    );
    assert!(
        matches!(err, Err(KernelError::ShapeMismatch { .. })),
        "{err:?}"
    );
}

/// The strided-destination entry point gives `sgemm`'s result bit for bit in its rows of a
/// wider matrix, with and without accumulation, across k blocks, edge tiles and threads, and
/// leaves every element outside those rows and columns untouched; k = 0 zeroes (or keeps) only
/// its elements; a row stride below n is refused without writing.
#[test]
fn strided_destination_writes_only_its_block() {
    for (m, k, n, ldc, col) in [
        (1, 1, 1, 3, 1),
        (96, 24, 24, 96, 48),
        (13, 385, 33, 40, 7),
        (300, 200, 600, 650, 50),
    ] {
        let mut rng = Rng(m as u64 * 11 + n as u64);
        let (ad, bd) = (rng.vec(m * k), rng.vec(k * n));
        let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
        for accumulate in [false, true] {
            let c0 = rng.vec(m * n);
            let mut want = c0.clone();
            sgemm(a, b, &mut want, accumulate).unwrap();
            let mut wide = vec![f32::NAN; m * ldc];
            for i in 0..m {
                wide[i * ldc + col..i * ldc + col + n].copy_from_slice(&c0[i * n..(i + 1) * n]);
            }
            // SAFETY: rows i < m of the block start at i·ldc + col < m·ldc - n + 1, each n long.
            unsafe { sgemm_strided(a, b, wide[col..].as_mut_ptr(), ldc, accumulate) }.unwrap();
            for i in 0..m {
                for j in 0..ldc {
                    let got = wide[i * ldc + j];
                    if (col..col + n).contains(&j) {
                        let w = want[i * n + j - col];
                        assert_eq!(got.to_bits(), w.to_bits(), "{m}×{k}·{k}×{n} ({i}, {j})");
                    } else {
                        assert!(
                            got.is_nan(),
                            "{m}×{k}·{k}×{n}: ({i}, {j}) outside was written"
                        );
                    }
                }
            }
        }
    }
    let (a, b) = (MatRef::row_major(&[], 2, 0), MatRef::row_major(&[], 0, 2));
    let mut wide = vec![7.0f32; 8];
    // SAFETY: a 2 × 2 block of row stride 4 inside 8 floats.
    unsafe { sgemm_strided(a, b, wide.as_mut_ptr(), 4, true) }.unwrap();
    assert!(wide.iter().all(|&x| x == 7.0));
    unsafe { sgemm_strided(a, b, wide.as_mut_ptr(), 4, false) }.unwrap();
    assert_eq!(wide, [0.0, 0.0, 7.0, 7.0, 0.0, 0.0, 7.0, 7.0]);
    let data = [1.0f32; 6];
    let (a, b) = (
        MatRef::row_major(&data, 2, 3),
        MatRef::row_major(&data, 3, 2),
    );
    // SAFETY: refused before any write.
    let err = unsafe { sgemm_strided(a, b, wide.as_mut_ptr(), 1, false) };
    assert!(
        matches!(err, Err(KernelError::ShapeMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(wide, [0.0, 0.0, 7.0, 7.0, 0.0, 0.0, 7.0, 7.0]);
}

#[test]
fn m_or_n_zero_is_a_no_op() {
    let data = [1.0f32; 8];
    let mut c: Vec<f32> = Vec::new();
    sgemm(
        MatRef::row_major(&[], 0, 2),
        MatRef::row_major(&data, 2, 4),
        &mut c,
        false,
    )
    .unwrap();
    sgemm(
        MatRef::row_major(&data, 4, 2),
        MatRef::row_major(&[], 2, 0),
        &mut c,
        true,
    )
    .unwrap();
}

#[test]
fn errors_not_panics() {
    let data = vec![1.0f32; 64];
    let a = MatRef::row_major(&data, 4, 4);
    let b = MatRef::row_major(&data, 4, 8);
    let mut c = vec![0.0f32; 32];
    // Inner dimensions differ.
    let b_bad = MatRef::row_major(&data, 3, 8);
    assert!(matches!(
        sgemm(a, b_bad, &mut c, false),
        Err(KernelError::ShapeMismatch { .. })
    ));
    // C has the wrong length.
    assert!(matches!(
        sgemm(a, b, &mut c[..31], false),
        Err(KernelError::ShapeMismatch { .. })
    ));
    // m · n overflows.
    let huge = MatRef {
        data: &data,
        rows: usize::MAX,
        cols: 0,
        row_stride: 0,
        col_stride: 0,
    };
    let wide = MatRef {
        data: &data,
        rows: 0,
        cols: 3,
        row_stride: 0,
        col_stride: 0,
    };
    assert!(matches!(
        sgemm(huge, wide, &mut c, false),
        Err(KernelError::ShapeMismatch { .. })
    ));
    // Views reading past their slice.
    let short = MatRef::row_major(&data[..15], 4, 4);
    assert_eq!(
        sgemm(short, b, &mut c, false),
        Err(KernelError::OutOfBounds)
    );
    let wrong_stride = MatRef {
        data: &data,
        rows: 4,
        cols: 8,
        row_stride: 17,
        col_stride: 2,
    };
    assert_eq!(
        sgemm(a, wrong_stride, &mut c, false),
        Err(KernelError::OutOfBounds)
    );
    // Index arithmetic that overflows.
    let overflow = MatRef {
        data: &data,
        rows: 4,
        cols: 4,
        row_stride: usize::MAX / 2,
        col_stride: 1,
    };
    assert_eq!(
        sgemm(overflow, b, &mut c, false),
        Err(KernelError::OutOfBounds)
    );
    // Nothing was written by the failed calls.
    assert!(c.iter().all(|&x| x == 0.0));
    // Errors display.
    assert!(KernelError::Unsupported.to_string().contains("AVX"));
}

#[test]
fn transpose_helper_matches_col_major() {
    let mut rng = Rng(99);
    let data = rng.vec(6 * 5);
    let x = MatRef::row_major(&data, 6, 5);
    let xt = x.t();
    assert_eq!(
        (xt.rows, xt.cols, xt.row_stride, xt.col_stride),
        (5, 6, 1, 5)
    );
    let y = MatRef::col_major(&data, 5, 6);
    assert_eq!((y.rows, y.cols, y.row_stride, y.col_stride), (5, 6, 1, 5));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_reference(
        m in 1usize..40,
        k in 0usize..80,
        n in 1usize..80,
        la in 0usize..3,
        lb in 0usize..3,
        accumulate in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let layouts = [Layout::RowMajor, Layout::ColMajor, Layout::Strided];
        check(m, k, n, layouts[la], layouts[lb], accumulate, seed);
    }
}
