//! CPU compute kernels for sftvsrl.
//!
//! The one kernel so far is [`sgemm`], a single-precision matrix multiply written in the
//! GotoBLAS/BLIS style: operands are packed into micro-panels, the loops are blocked for the
//! caches, and an AVX-512 (or AVX2+FMA) micro-kernel keeps a tile of C in registers. Work is
//! split between the threads of rayon's global pool when the product is large enough to gain
//! from it. Operands are strided views ([`MatRef`]), so transposed operands (as autodiff's
//! backward pass produces them) need no copy before the call.
//!
//! On CPUs without AVX2+FMA, and on other architectures, [`sgemm_available`] is false and
//! [`sgemm`] returns [`KernelError::Unsupported`]; callers then use their own matmul.
//!
//! [`adam`] holds the fused AdamW update of the optimizer.
//!
//! [`rows`] holds the row and elementwise kernels of the model's fused operations (softmax rows,
//! the SwiGLU gate, RMSNorm, each with its backward step), with an AVX-512 and a portable
//! version of each.

pub mod adam;
#[cfg(target_arch = "x86_64")]
mod driver;
pub mod rows;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::fmt;
use std::mem::MaybeUninit;

/// A read-only strided view of an f32 matrix: element (i, j) is
/// `data[i * row_stride + j * col_stride]` (slice `data` first to start the view at an offset).
///
/// A row-major matrix has `col_stride == 1`; a column-major one (for instance the transpose of
/// a row-major matrix) has `row_stride == 1`. Any other strides work too, more slowly.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The elements the view reads from.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance in `data` between element (i, j) and element (i + 1, j).
    pub row_stride: usize,
    /// Distance in `data` between element (i, j) and element (i, j + 1).
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix stored contiguously in `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A column-major `rows × cols` matrix stored contiguously in `data`.
    pub fn col_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// The transpose of this view (no data is moved).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// The largest index of `data` the view reads, or `None` when the view is empty; `Err` when
    /// computing it overflows.
    fn max_index(&self) -> Result<Option<usize>, KernelError> {
        if self.rows == 0 || self.cols == 0 {
            return Ok(None);
        }
        (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|r| {
                (self.cols - 1)
                    .checked_mul(self.col_stride)
                    .and_then(|c| r.checked_add(c))
            })
            .map(Some)
            .ok_or(KernelError::OutOfBounds)
    }
}

/// Why [`sgemm`] refused to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// The operand shapes do not fit: `a.cols != b.rows`, or `c.len() != a.rows * b.cols`.
    ShapeMismatch {
        /// `(rows, cols)` of `a`.
        a: (usize, usize),
        /// `(rows, cols)` of `b`.
        b: (usize, usize),
        /// Length of `c`.
        c_len: usize,
    },
    /// A view would read past the end of its slice (or its index arithmetic overflows).
    OutOfBounds,
    /// This CPU has no fast path (see [`sgemm_available`]).
    Unsupported,
    /// The slices given to a row kernel (see [`rows`]) do not have the lengths its shape
    /// needs.
    LengthMismatch,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::ShapeMismatch { a, b, c_len } => write!(
                f,
                "sgemm shape mismatch: a is {}x{}, b is {}x{}, c has {} elements",
                a.0, a.1, b.0, b.1, c_len
            ),
            KernelError::OutOfBounds => write!(f, "sgemm: a matrix view reads outside its slice"),
            KernelError::Unsupported => {
                write!(f, "sgemm: this CPU has neither AVX-512F nor AVX2+FMA")
            }
            KernelError::LengthMismatch => {
                write!(f, "row kernel: the slice lengths do not fit the shape")
            }
        }
    }
}

impl std::error::Error for KernelError {}

/// Whether this CPU has a fast path (AVX-512F, or AVX2+FMA). Callers use their own matmul when
/// false. The answer is detected once and cached.
pub fn sgemm_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::isa() != x86::Isa::None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c = a · b`, or `c += a · b` when `accumulate`; `c` is row-major, contiguous, of length
/// `a.rows * b.cols`.
///
/// Returns an error (never panics) when the shapes do not fit, when a view would read outside
/// its slice, or when the CPU has no fast path. With `k == 0` (`a.cols == 0`), `c` is zeroed,
/// or left unchanged when `accumulate`. Large products run on rayon's global thread pool.
pub fn sgemm(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool) -> Result<(), KernelError> {
    check(&a, &b, c.len())?;
    if k_is_zero(&a, &b) {
        if !accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: checked above; `c` is initialised, so it may be read when accumulating.
    unsafe { run(a, b, c.as_mut_ptr(), b.cols, accumulate) }
}

/// `c = a · b` into memory that need not be initialised (a fresh `Vec::with_capacity`'s spare
/// capacity): every element is written when this returns `Ok`. Saves the zeroing pass, and the
/// page faults of zeroed memory, that [`sgemm`] into a `vec![0.0; m * n]` costs.
pub fn sgemm_uninit(a: MatRef, b: MatRef, c: &mut [MaybeUninit<f32>]) -> Result<(), KernelError> {
    check(&a, &b, c.len())?;
    if k_is_zero(&a, &b) {
        c.fill(MaybeUninit::new(0.0));
        return Ok(());
    }
    // SAFETY: checked above; without accumulation the kernels only write C.
    unsafe { run(a, b, c.as_mut_ptr().cast(), b.cols, false) }
}

/// `c = a · b`, or `c += a · b` when `accumulate`, where C is a row-major matrix of row stride
/// `ldc`: element (i, j) of C is `c[i * ldc + j]`. This lets a product write straight into its
/// rows of a larger matrix (one head's columns of a `[seq, heads · dim]` tensor), from several
/// threads at once when their rows and columns do not overlap.
///
/// Returns an error (never panics) when the shapes do not fit (`a.cols != b.rows` or
/// `ldc < b.cols`), when a view would read outside its slice, or when the CPU has no fast path;
/// nothing is written then. With `k == 0`, C is zeroed, or left unchanged when `accumulate`.
/// Without `accumulate`, C is only written, so it may point into uninitialised memory.
///
/// # Safety
/// `c` must be valid for writes (and, when `accumulate`, reads of initialised floats) of
/// element (i, j) at `c.add(i * ldc + j)` for every `i < a.rows`, `j < b.cols`, and no other
/// thread may read or write those elements during the call.
pub unsafe fn sgemm_strided(
    a: MatRef,
    b: MatRef,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) -> Result<(), KernelError> {
    let (m, n) = (a.rows, b.cols);
    if ldc < n {
        return Err(KernelError::ShapeMismatch {
            a: (a.rows, a.cols),
            b: (b.rows, b.cols),
            c_len: ldc,
        });
    }
    // The shape check of `check`, against the length a contiguous C would have.
    check(&a, &b, m.checked_mul(n).ok_or(KernelError::OutOfBounds)?)?;
    if k_is_zero(&a, &b) {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of C is valid for n writes (the caller's contract).
                unsafe { std::ptr::write_bytes(c.add(i * ldc), 0, n) };
            }
        }
        return Ok(());
    }
    // SAFETY: checked above; C's elements are valid as the caller promises.
    unsafe { run(a, b, c, ldc, accumulate) }
}

/// Validates shapes, views and the CPU for a product into `c_len` floats.
fn check(a: &MatRef, b: &MatRef, c_len: usize) -> Result<(), KernelError> {
    let mismatch = || KernelError::ShapeMismatch {
        a: (a.rows, a.cols),
        b: (b.rows, b.cols),
        c_len,
    };
    if b.rows != a.cols {
        return Err(mismatch());
    }
    match a.rows.checked_mul(b.cols) {
        Some(len) if len == c_len => {}
        _ => return Err(mismatch()),
    }
    for view in [a, b] {
        if let Some(max) = view.max_index()?
            && max >= view.data.len()
        {
            return Err(KernelError::OutOfBounds);
        }
    }
    if !sgemm_available() {
        return Err(KernelError::Unsupported);
    }
    Ok(())
}

/// Whether the product has an empty inner dimension (and a non-empty C).
fn k_is_zero(a: &MatRef, b: &MatRef) -> bool {
    a.cols == 0 && a.rows > 0 && b.cols > 0
}

/// Runs a checked product with `k > 0` (nothing to do when C is empty).
///
/// # Safety
/// [`check`] passed for these operands and `c` points to an `a.rows × b.cols` matrix of
/// writable floats with row stride `ldc >= b.cols`, initialised when `accumulate`.
unsafe fn run(
    a: MatRef,
    b: MatRef,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) -> Result<(), KernelError> {
    if a.rows == 0 || b.cols == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the views lie inside their slices, `c` holds m * n floats, and the ISA the
        // kernels need was detected at run time (all by the caller's contract).
        unsafe { x86::sgemm(a, b, c, ldc, accumulate) };
        Ok(())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (c, ldc, accumulate);
        Err(KernelError::Unsupported)
    }
}
