//! Cache blocking, packing and thread splitting, generic over the micro-kernel.
//!
//! Loop nest of one thread's region of C (the BLIS order, with the roles of A and B swapped
//! because C is row-major and the micro-kernel vectorises along n):
//!
//! ```text
//! for p0 in k step KC                  k block
//!   for i0 in m step MB                A block (MB × KC, packed into MR-tall slivers): L3
//!     for j0 in n step NB              B block (KC × NB, packed into NR-wide panels): L2
//!       for each MR sliver of A        A sliver (MR × KC = 18 KiB for AVX-512): L1
//!         for each NR panel of B       B panel streams from L2 (prefetched in the kernel)
//!           micro-kernel: C[MR × NR] (+)= sliver · panel
//! ```
//!
//! Consecutive micro-kernel calls walk along the same MR rows of C, which keeps C accesses
//! sequential. Measured on the dev machine, this order beat the GotoBLAS one (B panel in L1,
//! A streaming) by 10-30 % on the large shapes.

use std::cell::RefCell;

/// Depth of a k block: the AVX-512 A sliver is 12 × 384 floats = 18 KiB of the 48 KiB L1d,
/// and C is read and written once per k block, so deeper is better until the sliver no longer
/// fits beside the B rows streaming through. k is split into equal blocks of at most KC.
pub(crate) const KC: usize = 384;
/// Rows of an A block (MB × KC floats = 6 MiB at most, in the 260 MiB L3). Large, so that B
/// is packed only once per k block for all the project's shapes (m <= 4096).
pub(crate) const MB: usize = 4096;
/// Columns of a B block: KC × NB floats = 768 KiB, well inside the 2 MiB L2 with room for the
/// A sliver and C tiles passing through.
pub(crate) const NB: usize = 512;
/// When B is row-major and m is at most this, B is read in place instead of packed: each panel
/// would be used by at most two slivers, so packing costs about as much as it saves.
pub(crate) const DIRECT_B_MAX_M: usize = 24;
/// When A is row-major and n is at most this, A is read in place instead of packed: the
/// rows of a sliver stay in L1 across the few B panels that use them, so packing (a transpose)
/// costs more than it saves.
pub(crate) const DIRECT_A_MAX_N: usize = NB;
/// Products below this many flops (2·m·n·k) stay on the calling thread: waking a second
/// thread and packing twice costs more than it gains (measured on the 2-core dev machine).
pub(crate) const PAR_MIN_FLOPS: f64 = 4.0e6;

/// A strided operand: element (i, j) at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// One thread's share of the product: `c[m × n] (+)= a[m × k] · b[k × n]`, C with row stride
/// `ldc`.
#[derive(Clone, Copy)]
pub(crate) struct Region {
    pub a: View,
    pub b: View,
    pub c: *mut f32,
    pub ldc: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub accumulate: bool,
}

// SAFETY: a Region only carries pointers into buffers that outlive the parallel section; the
// regions handed to different threads write disjoint parts of C and only read A and B.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

/// Where a micro-kernel reads its MR rows of A.
#[derive(Clone, Copy)]
pub(crate) enum ASliver {
    /// Packed by [`pack_a`]: element (i, p) at `ptr[p * mr + i]`.
    Packed(*const f32),
    /// Row-major, in place: element (i, p) at `ptr[i * lda + p]`.
    Rows(*const f32, usize),
}

/// A micro-kernel and the entry point compiled with its target features.
pub(crate) trait Micro {
    /// Rows of C per tile (broadcast from packed A).
    const MR: usize;
    /// Columns of C per tile (vector loads from B).
    const NR: usize;

    /// Runs [`region`] for this micro-kernel, compiled with its target features.
    ///
    /// # Safety
    /// The CPU has the kernel's features; the region's pointers are valid for its shape.
    unsafe fn run(r: &Region);

    /// Transposing copy: for `p < kc` and `i < count` (`count <= 16`),
    /// `dst[p * dst_stride + i] = src[i * stride + p]`. Used to pack row-major A and
    /// column-major B; kernels with wide registers override it with an in-register transpose.
    ///
    /// # Safety
    /// Source and destination valid for those indices.
    #[inline(always)]
    unsafe fn pack_transposed(
        src: *const f32,
        stride: usize,
        count: usize,
        kc: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        // SAFETY: by the caller's contract.
        unsafe { transpose_scalar(src, stride, count, 0, kc, dst, dst_stride) }
    }

    /// `c[mr × nr] (+)= a · b` over depth `kc`: `a` is a sliver of mr rows, `b` a panel whose row p starts at `b + p * ldb` with NR readable
    /// floats; `c` has row stride `ldc`. Overwrites C unless `accumulate`.
    ///
    /// # Safety
    /// `1 <= mr <= MR`, `1 <= nr <= NR`, pointers valid as described, CPU features present.
    #[allow(clippy::too_many_arguments)]
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
    );
}

/// Scalar part of [`Micro::pack_transposed`], for columns `p_start..kc`.
///
/// # Safety
/// As for [`Micro::pack_transposed`].
#[inline(always)]
pub(crate) unsafe fn transpose_scalar(
    src: *const f32,
    stride: usize,
    count: usize,
    p_start: usize,
    kc: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    // Chunks of 8 columns keep the reads sequential and the written lines few.
    let mut p = p_start;
    while p < kc {
        let pe = (p + 8).min(kc);
        for i in 0..count {
            // SAFETY: by the caller's contract.
            unsafe {
                let row = src.add(i * stride);
                for q in p..pe {
                    *dst.add(q * dst_stride + i) = *row.add(q);
                }
            }
        }
        p = pe;
    }
}

/// 64-byte aligned storage for packed panels.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

#[derive(Default)]
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

fn grow(buf: &mut Vec<Line>, floats: usize) -> *mut f32 {
    let lines = floats.div_ceil(16);
    if buf.len() < lines {
        buf.resize(lines, Line([0.0; 16]));
    }
    buf.as_mut_ptr().cast()
}

/// Splits `len` into `ceil(len / max)` nearly equal blocks, each rounded up to a multiple of
/// `unit`; returns the block size.
fn balanced_block(len: usize, max: usize, unit: usize) -> usize {
    let blocks = len.div_ceil(max);
    len.div_ceil(blocks).div_ceil(unit) * unit
}

/// Splits the product between rayon's threads (or not) and runs the regions.
///
/// # Safety
/// As for [`Micro::run`]: views valid for an m × k and a k × n matrix, `c` for m × n.
pub(crate) unsafe fn gemm<K: Micro>(r: Region) {
    let threads = rayon::current_num_threads().max(1);
    let flops = 2.0 * r.m as f64 * r.n as f64 * r.k as f64;
    if threads == 1 || flops < PAR_MIN_FLOPS {
        // SAFETY: forwarded from the caller.
        unsafe { K::run(&r) };
        return;
    }
    // Split along n (whole NR panels) or along m (whole MR slivers), whichever gives the
    // smallest largest share; ties go to n, where each thread reads only its part of B.
    let panels = r.n.div_ceil(K::NR);
    let slivers = r.m.div_ceil(K::MR);
    let parts_n = threads.min(panels);
    let parts_m = threads.min(slivers);
    let cost_n = panels.div_ceil(parts_n) * K::NR * r.m;
    let cost_m = slivers.div_ceil(parts_m) * K::MR * r.n;
    let (split_n, parts) = if cost_n <= cost_m {
        (true, parts_n)
    } else {
        (false, parts_m)
    };
    if parts <= 1 {
        // SAFETY: forwarded from the caller.
        unsafe { K::run(&r) };
        return;
    }
    let units = if split_n { panels } else { slivers };
    let unit = if split_n { K::NR } else { K::MR };
    let total = if split_n { r.n } else { r.m };
    let part = move |i: usize| -> Region {
        let start = (units * i / parts * unit).min(total);
        let end = (units * (i + 1) / parts * unit).min(total);
        let mut sub = r;
        if split_n {
            sub.n = end - start;
            sub.b.ptr = r.b.ptr.wrapping_add(start * r.b.cs);
            sub.c = r.c.wrapping_add(start);
        } else {
            sub.m = end - start;
            sub.a.ptr = r.a.ptr.wrapping_add(start * r.a.rs);
            sub.c = r.c.wrapping_add(start * r.ldc);
        }
        sub
    };
    use rayon::prelude::*;
    (0..parts).into_par_iter().for_each(|i| {
        let sub = part(i);
        if sub.m > 0 && sub.n > 0 {
            // SAFETY: the parts cover disjoint column (or row) ranges of C inside the caller's
            // region, and read A and B inside the caller's views.
            unsafe { K::run(&sub) };
        }
    });
}

/// The blocked loop nest for one thread's region (see the module docs).
///
/// # Safety
/// As for [`Micro::run`].
#[inline(always)]
pub(crate) unsafe fn region<K: Micro>(r: &Region) {
    BUFFERS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        let bufs = &mut *bufs;
        let (m, n, k) = (r.m, r.n, r.k);
        let kc_block = balanced_block(k, KC, 1);
        let mb_block = balanced_block(m, MB, K::MR).min(m.div_ceil(K::MR) * K::MR);
        let nb_block = balanced_block(n, NB, K::NR).min(n.div_ceil(K::NR) * K::NR);
        let direct_b = r.b.cs == 1 && m <= DIRECT_B_MAX_M;
        let direct_a = r.a.cs == 1 && n <= DIRECT_A_MAX_N;
        let a_buf = if direct_a {
            std::ptr::null_mut()
        } else {
            grow(&mut bufs.a, mb_block * kc_block)
        };
        let b_buf = grow(&mut bufs.b, nb_block * kc_block);
        let mut p0 = 0;
        while p0 < k {
            let kc = kc_block.min(k - p0);
            let accumulate = r.accumulate || p0 > 0;
            let mut i0 = 0;
            while i0 < m {
                let mb = mb_block.min(m - i0);
                let a_src = View {
                    ptr: r.a.ptr.wrapping_add(i0 * r.a.rs + p0 * r.a.cs),
                    ..r.a
                };
                if !direct_a {
                    // SAFETY: rows i0..i0+mb, columns p0..p0+kc lie inside A's view; the
                    // buffer holds mb_block * kc_block floats.
                    unsafe { pack_a::<K>(a_src, mb, kc, a_buf) };
                }
                let mut j0 = 0;
                while j0 < n {
                    let nb = nb_block.min(n - j0);
                    let b_src = View {
                        ptr: r.b.ptr.wrapping_add(p0 * r.b.rs + j0 * r.b.cs),
                        ..r.b
                    };
                    // SAFETY: rows p0..p0+kc and columns j0..j0+nb lie inside B's view; the
                    // buffer holds nb_block * kc_block floats.
                    if direct_b {
                        let full = nb / K::NR * K::NR;
                        if full < nb {
                            unsafe { pack_b::<K>(b_src, kc, full, nb - full, b_buf) };
                        }
                    } else {
                        unsafe { pack_b::<K>(b_src, kc, 0, nb, b_buf) };
                    }
                    let mut ir = 0;
                    while ir < mb {
                        let mr = K::MR.min(mb - ir);
                        let a_sliver = if direct_a {
                            ASliver::Rows(a_src.ptr.wrapping_add(ir * r.a.rs), r.a.rs)
                        } else {
                            ASliver::Packed(a_buf.wrapping_add(ir * kc).cast_const())
                        };
                        let c_row = r.c.wrapping_add((i0 + ir) * r.ldc + j0);
                        let mut jr = 0;
                        while jr < nb {
                            let nr = K::NR.min(nb - jr);
                            let (b_panel, ldb) = if direct_b && nr == K::NR {
                                (b_src.ptr.wrapping_add(jr), r.b.rs)
                            } else {
                                (b_buf.wrapping_add(jr * kc).cast_const(), K::NR)
                            };
                            // SAFETY: the sliver and panel were packed above (or are read in
                            // place: MR rows of A, a full NR-wide panel of B, inside their
                            // views); the C tile lies in the region.
                            unsafe {
                                K::tile(
                                    mr,
                                    kc,
                                    a_sliver,
                                    b_panel,
                                    ldb,
                                    c_row.wrapping_add(jr),
                                    r.ldc,
                                    nr,
                                    accumulate,
                                )
                            };
                            jr += nr;
                        }
                        ir += mr;
                    }
                    j0 += nb;
                }
                i0 += mb;
            }
            p0 += kc;
        }
    });
}

/// Packs an `mb × kc` block of A into slivers of `MR` rows: the sliver starting at row `s`
/// (with `mr` rows) lives at `dst + s * kc`, element (i, p) at `p * mr + i`.
///
/// # Safety
/// `a` valid for mb × kc, `dst` for mb × kc floats.
#[inline(always)]
unsafe fn pack_a<K: Micro>(a: View, mb: usize, kc: usize, dst: *mut f32) {
    let mut s = 0;
    while s < mb {
        let mr = K::MR.min(mb - s);
        // SAFETY: in bounds by the caller's contract.
        unsafe {
            let src = a.ptr.add(s * a.rs);
            let d = dst.add(s * kc);
            if mr == K::MR {
                pack_a_sliver::<K>(src, a.rs, a.cs, kc, K::MR, d);
            } else {
                pack_a_sliver::<K>(src, a.rs, a.cs, kc, mr, d);
            }
        }
        s += mr;
    }
}

#[inline(always)]
unsafe fn pack_a_sliver<K: Micro>(
    src: *const f32,
    rs: usize,
    cs: usize,
    kc: usize,
    mr: usize,
    d: *mut f32,
) {
    // SAFETY: in bounds by the caller's contract.
    unsafe {
        if rs == 1 {
            // Column-major: each column of the sliver is contiguous.
            for p in 0..kc {
                std::ptr::copy_nonoverlapping(src.add(p * cs), d.add(p * mr), mr);
            }
        } else if cs == 1 {
            // Row-major: transpose.
            K::pack_transposed(src, rs, mr, kc, d, mr);
        } else {
            for p in 0..kc {
                for i in 0..mr {
                    *d.add(p * mr + i) = *src.add(i * rs + p * cs);
                }
            }
        }
    }
}

/// Packs columns `j_start .. j_start + width` of a `kc`-deep block of B into NR-wide panels:
/// the panel starting at column `j` lives at `dst + j * kc`, element (p, jj) at `p * NR + jj`,
/// zero-padded to NR columns.
///
/// # Safety
/// `b` valid for kc rows and `j_start + width` columns; `dst` for `(j_start + width)` rounded
/// up to NR, times kc floats.
#[inline(always)]
unsafe fn pack_b<K: Micro>(b: View, kc: usize, j_start: usize, width: usize, dst: *mut f32) {
    let nr_full = K::NR;
    let mut j = j_start;
    let end = j_start + width;
    while j < end {
        let nr = nr_full.min(end - j);
        // SAFETY: in bounds by the caller's contract.
        unsafe {
            let src = b.ptr.add(j * b.cs);
            let d = dst.add(j * kc);
            if b.cs == 1 {
                for p in 0..kc {
                    let dp = d.add(p * nr_full);
                    std::ptr::copy_nonoverlapping(src.add(p * b.rs), dp, nr);
                    if nr < nr_full {
                        std::ptr::write_bytes(dp.add(nr), 0, nr_full - nr);
                    }
                }
            } else {
                if nr < nr_full {
                    for p in 0..kc {
                        std::ptr::write_bytes(d.add(p * nr_full + nr), 0, nr_full - nr);
                    }
                }
                if b.rs == 1 {
                    // Column-major: transpose, 16 columns at a time.
                    let mut h = 0;
                    while h < nr {
                        let count = 16.min(nr - h);
                        K::pack_transposed(src.add(h * b.cs), b.cs, count, kc, d.add(h), nr_full);
                        h += count;
                    }
                } else {
                    for p in 0..kc {
                        for jj in 0..nr {
                            *d.add(p * nr_full + jj) = *src.add(p * b.rs + jj * b.cs);
                        }
                    }
                }
            }
        }
        j += nr;
    }
}
