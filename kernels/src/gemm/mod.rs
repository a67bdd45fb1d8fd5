//! Single-precision general matrix multiply: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! One entry point, [`Gemm`], with the BLAS conventions: row- or column-major
//! [`Layout`], [`Transpose`] per operand, any leading dimension at least the stored
//! row (or column) length. `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`.
//!
//! Contract shared by every backend:
//! - `beta == 0` never reads `C`: NaN or garbage in `C` is overwritten.
//! - `m`, `n` or `k` may be 0; `k == 0` or `alpha == 0` gives `C = beta * C`
//!   without touching `A` or `B`.
//! - Buffers are checked against shapes and leading dimensions before anything
//!   runs; a mismatch is an `Err`, never a panic or an out-of-bounds access.
//!
//! Backends ([`Backend`]) are chosen at run time among those compiled in:
//! `native` (always; the BLIS-style kernel in this module), `mkl` (cargo feature
//! `mkl`) and `openblas` (cargo feature `openblas`). `BIGDL_GEMM=native|mkl|openblas`
//! picks the default. All run on the engine's pool ([`crate::pool`]): the output is
//! split into independent blocks, one per thread; BLAS libraries are used in their
//! single-threaded mode so their threads never nest inside ours.

mod blocking;
#[cfg(any(feature = "mkl", feature = "openblas"))]
mod cblas;
mod dot;
mod microkernel;
mod native;
mod pack;
mod problem;

#[cfg(feature = "mkl")]
mod mkl;
#[cfg(feature = "openblas")]
mod openblas;

use std::fmt;
use std::sync::OnceLock;

use crate::cpu::{self, Isa};
use crate::error::{KernelError, Result};
use crate::pool::{self, SyncPtr};

pub use blocking::Blocking;
use blocking::micro_tile;
#[cfg(target_arch = "x86_64")]
pub(crate) use dot::sum_4x4;
pub(crate) use problem::{Epi, Problem, relu_f32};

const OP: &str = "sgemm";

/// Memory order of the matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Element `(i, j)` at `i * ld + j` (C, Rust, NumPy, Torch).
    RowMajor,
    /// Element `(i, j)` at `i + j * ld` (Fortran BLAS).
    ColMajor,
}

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transpose {
    /// `op(X) = X`.
    No,
    /// `op(X) = X^T`.
    Yes,
}

impl Transpose {
    /// `Yes` if `t`.
    pub fn from_bool(t: bool) -> Transpose {
        if t { Transpose::Yes } else { Transpose::No }
    }
}

/// How many threads one call may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Parallelism {
    /// All pool threads for large products, fewer for small ones, and one when
    /// called from inside a pool worker.
    #[default]
    Auto,
    /// At most this many threads (clamped to the pool size; 0 is taken as 1).
    Threads(usize),
}

/// A GEMM implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// This crate's BLIS-style kernel (always available).
    Native,
    /// Intel MKL, statically linked, LP64, sequential (feature `mkl`).
    Mkl,
    /// OpenBLAS, loaded from `libopenblas.so.0` (feature `openblas`).
    OpenBlas,
}

impl Backend {
    /// Every backend this crate knows, compiled in or not.
    pub const ALL: [Backend; 3] = [Backend::Native, Backend::Mkl, Backend::OpenBlas];

    /// The name used by `BIGDL_GEMM` and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::Mkl => "mkl",
            Backend::OpenBlas => "openblas",
        }
    }

    /// Parses a backend name.
    pub fn parse(s: &str) -> Result<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "native" | "bigdl" => Ok(Backend::Native),
            "mkl" => Ok(Backend::Mkl),
            "openblas" => Ok(Backend::OpenBlas),
            other => Err(KernelError::InvalidArgument {
                op: OP,
                what: format!("unknown GEMM backend {other:?} (expected native, mkl or openblas)"),
            }),
        }
    }

    /// Whether the backend was compiled into this build.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Native => true,
            Backend::Mkl => cfg!(feature = "mkl"),
            Backend::OpenBlas => cfg!(feature = "openblas"),
        }
    }

    /// `Ok` if the backend can run here: compiled in and, for OpenBLAS, loadable.
    pub fn check(self) -> Result<()> {
        match self {
            Backend::Native => Ok(()),
            #[cfg(feature = "mkl")]
            Backend::Mkl => Ok(()),
            #[cfg(feature = "openblas")]
            Backend::OpenBlas => openblas::library().map(|_| ()),
            #[allow(unreachable_patterns)]
            _ => Err(KernelError::Unsupported {
                op: OP,
                backend: self.name(),
                reason: format!(
                    "this build has no `{0}` backend; rebuild with `--features bigdl-kernels/{0}`",
                    self.name()
                ),
            }),
        }
    }

    /// The backends that can run here, `Native` first.
    pub fn available() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.check().is_ok())
            .collect()
    }

    /// The default backend: `BIGDL_GEMM` if set, else `Native`. Errors if the
    /// variable names an unknown or unavailable backend.
    pub fn from_env() -> Result<Backend> {
        static CHOICE: OnceLock<Result<Backend>> = OnceLock::new();
        CHOICE
            .get_or_init(|| match std::env::var("BIGDL_GEMM") {
                Ok(v) if !v.trim().is_empty() => {
                    let b = Backend::parse(&v)?;
                    b.check()?;
                    Ok(b)
                }
                _ => Ok(Backend::Native),
            })
            .clone()
    }

    /// A one-line description of what runs: ISA and blocking for `native`, the
    /// library's own version string for the others (proof of which code is linked).
    pub fn describe(self) -> Result<String> {
        self.check()?;
        Ok(match self {
            Backend::Native => {
                let isa = cpu::isa();
                let b = Blocking::for_isa(isa);
                format!(
                    "bigdl native sgemm, {isa} micro-kernel {}x{}, mc={} kc={} nc={}",
                    b.mr, b.nr, b.mc, b.kc, b.nc
                )
            }
            #[cfg(feature = "mkl")]
            Backend::Mkl => mkl::version(),
            #[cfg(feature = "openblas")]
            Backend::OpenBlas => openblas::library()?.config(),
            #[allow(unreachable_patterns)]
            _ => unreachable!("check() rejected backends that are not compiled in"),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Element-wise work fused into a GEMM's output, done on each block of `C`
/// while it is in cache: `C = relu?(alpha op(A) op(B) + beta C + bias +
/// residual)`, the bias added before the residual, as separate passes
/// would (so the results are the same bit for bit). See [`Gemm::run_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// One value per row of `C` (`m` values), added to the row.
    pub row_bias: Option<&'a [f32]>,
    /// A matrix stored like `C` (same layout and leading dimension), added.
    pub residual: Option<&'a [f32]>,
    /// Then `max(·, 0)` (NaN and -0 pass through, as the ReLU kernels).
    pub relu: bool,
}

/// `op(A)` of a product packed into the native kernel's panels, in this
/// machine's blocking, by [`Gemm::pack_a`]: products that share `A` then
/// skip packing it ([`Gemm::run_packed_with`]).
#[derive(Clone)]
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
    /// `m` rounded up to the micro-tile's rows.
    rows: usize,
    isa: Isa,
    kc: usize,
}

impl fmt::Debug for PackedA {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PackedA({} x {}, {}, kc {})",
            self.m, self.k, self.isa, self.kc
        )
    }
}

/// A GEMM call: shapes, layout, transposes, scalars, leading dimensions.
///
/// ```
/// use bigdl_kernels::gemm::{Gemm, Transpose};
/// // C (2x2) = A (2x3) * B^T, B stored as 2x3 row-major.
/// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let b = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
/// let mut c = [f32::NAN; 4];
/// Gemm::new(2, 2, 3).trans_b(Transpose::Yes).run(&a, &b, &mut c)?;
/// assert_eq!(c, [4.0, 2.0, 10.0, 5.0]);
/// # Ok::<(), bigdl_kernels::KernelError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// Memory order of all three matrices.
    pub layout: Layout,
    /// `op(A)`.
    pub trans_a: Transpose,
    /// `op(B)`.
    pub trans_b: Transpose,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the old `C`; 0 means `C` is not read.
    pub beta: f32,
    /// Leading dimension of `A`; `None` = tightly packed.
    pub lda: Option<usize>,
    /// Leading dimension of `B`; `None` = tightly packed.
    pub ldb: Option<usize>,
    /// Leading dimension of `C`; `None` = tightly packed.
    pub ldc: Option<usize>,
    /// Threads to use.
    pub parallelism: Parallelism,
}

/// How one operand is stored: `lines` runs of `len` contiguous elements, `ld` apart.
struct Stored {
    lines: usize,
    len: usize,
    ld: usize,
    /// Whether consecutive lines are consecutive rows of the operand as used.
    lines_are_rows: bool,
}

impl Stored {
    /// `(row stride, column stride)` of the operand as used.
    fn strides(&self) -> (isize, isize) {
        if self.lines_are_rows {
            (self.ld as isize, 1)
        } else {
            (1, self.ld as isize)
        }
    }
}

impl Gemm {
    /// `C (m x n) = A (m x k) * B (k x n)`, row-major, tightly packed, `alpha = 1`,
    /// `beta = 0`, automatic threading.
    pub fn new(m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            m,
            n,
            k,
            layout: Layout::RowMajor,
            trans_a: Transpose::No,
            trans_b: Transpose::No,
            alpha: 1.0,
            beta: 0.0,
            lda: None,
            ldb: None,
            ldc: None,
            parallelism: Parallelism::Auto,
        }
    }

    /// Sets the memory order.
    pub fn layout(mut self, layout: Layout) -> Gemm {
        self.layout = layout;
        self
    }
    /// Sets `op(A)`.
    pub fn trans_a(mut self, t: Transpose) -> Gemm {
        self.trans_a = t;
        self
    }
    /// Sets `op(B)`.
    pub fn trans_b(mut self, t: Transpose) -> Gemm {
        self.trans_b = t;
        self
    }
    /// Sets `alpha`.
    pub fn alpha(mut self, alpha: f32) -> Gemm {
        self.alpha = alpha;
        self
    }
    /// Sets `beta` (0 = overwrite `C` without reading it).
    pub fn beta(mut self, beta: f32) -> Gemm {
        self.beta = beta;
        self
    }
    /// Sets the leading dimension of `A`.
    pub fn lda(mut self, ld: usize) -> Gemm {
        self.lda = Some(ld);
        self
    }
    /// Sets the leading dimension of `B`.
    pub fn ldb(mut self, ld: usize) -> Gemm {
        self.ldb = Some(ld);
        self
    }
    /// Sets the leading dimension of `C`.
    pub fn ldc(mut self, ld: usize) -> Gemm {
        self.ldc = Some(ld);
        self
    }
    /// Sets the threading policy.
    pub fn parallelism(mut self, p: Parallelism) -> Gemm {
        self.parallelism = p;
        self
    }

    /// Floating-point operations of the product (`2 m n k`), for GFLOP/s.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Runs on the default backend ([`Backend::from_env`]).
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        self.run_on(Backend::from_env()?, a, b, c)
    }

    /// Runs on the default backend, with `epilogue` applied to `C`.
    pub fn run_with(
        &self,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        epilogue: &Epilogue<'_>,
    ) -> Result<()> {
        self.run_on_with(Backend::from_env()?, a, b, c, epilogue)
    }

    /// Runs on `backend`.
    pub fn run_on(&self, backend: Backend, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        self.run_on_with(backend, a, b, c, &Epilogue::default())
    }

    /// Runs on `backend`, with `epilogue` applied to `C`.
    pub fn run_on_with(
        &self,
        backend: Backend,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        epilogue: &Epilogue<'_>,
    ) -> Result<()> {
        backend.check()?;
        let problem = self.problem(Some(a), b, c.as_mut_ptr(), c.len(), epilogue)?;
        self.run_problem(backend, problem)
    }

    /// [`Gemm::run_with`] into a `C` given as `c_len` floats at `c`, for
    /// callers whose threads fill disjoint blocks of one matrix (which
    /// cannot be split into disjoint slices: a block of columns spans every
    /// row).
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of `c_len` floats; the
    /// elements of `C` this product addresses (`m` rows of `n` at the leading
    /// dimension) must not overlap `a`, `b` or the epilogue's operands, and
    /// no other thread may access them during the call.
    pub(crate) unsafe fn run_with_raw(
        &self,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        c_len: usize,
        epilogue: &Epilogue<'_>,
    ) -> Result<()> {
        let backend = Backend::from_env()?;
        backend.check()?;
        let problem = self.problem(Some(a), b, c, c_len, epilogue)?;
        self.run_problem(backend, problem)
    }

    /// Whether the native kernel packs `op(A)` for this (row-major) product
    /// rather than reading it in place: where it does, [`Gemm::pack_a`]
    /// lets several products share one packing.
    pub fn packs_a(&self) -> bool {
        let (_, csa) = self
            .stored(self.m, self.k, self.trans_a, self.lda)
            .strides();
        !native::reads_a_in_place(cpu::isa(), csa, self.n, self.k)
    }

    /// Packs `op(A)` (`m x k`, as this product reads it) into the native
    /// kernel's panels once, for several products that share it (a
    /// convolution's weight over the images of a batch), on the pool's
    /// threads. `None` where the default backend is a BLAS library (which
    /// packs its operands itself).
    pub fn pack_a(&self, a: &[f32]) -> Result<Option<PackedA>> {
        if Backend::from_env()? != Backend::Native {
            return Ok(None);
        }
        if self.layout != Layout::RowMajor {
            return Err(KernelError::InvalidArgument {
                op: OP,
                what: "a packed A serves row-major products only".into(),
            });
        }
        let sa = self.stored(self.m, self.k, self.trans_a, self.lda);
        self.check_operand("a", &sa, a.len())?;
        let (rsa, csa) = sa.strides();
        let isa = cpu::isa();
        let (mr, kc) = (Blocking::for_isa(isa).mr, Blocking::for_isa(isa).kc);
        let rows = self.m.next_multiple_of(mr);
        let mut data = vec![0.0f32; rows * self.k];
        // Tasks of micro-panels within each block of k.
        let panels = rows / mr;
        let per = panels.div_ceil(4 * pool::num_threads()).max(1);
        let chunks = panels.div_ceil(per);
        let blocks: Vec<usize> = (0..self.k).step_by(kc).collect();
        let out = SyncPtr(data.as_mut_ptr());
        pool::run_tasks(blocks.len() * chunks, |t| {
            let (pc, q0) = (blocks[t / chunks], (t % chunks) * per);
            let (kcb, i0) = (kc.min(self.k - pc), q0 * mr);
            let m = (per * mr).min(self.m - i0);
            // SAFETY: rows i0..i0+m and columns pc..pc+kcb are inside the
            // validated A; the panels written, q0.. of block pc, lie inside
            // `data` (rows * k floats) and no other task writes them.
            unsafe {
                let src = a.as_ptr().offset(i0 as isize * rsa + pc as isize * csa);
                let dst = out.get().add(rows * pc + i0 * kcb);
                match isa {
                    Isa::Avx512 => {
                        pack::pack_a::<{ micro_tile(Isa::Avx512).0 }>(m, kcb, src, rsa, csa, dst)
                    }
                    Isa::Avx2 => {
                        pack::pack_a::<{ micro_tile(Isa::Avx2).0 }>(m, kcb, src, rsa, csa, dst)
                    }
                    Isa::Scalar => {
                        pack::pack_a::<{ micro_tile(Isa::Scalar).0 }>(m, kcb, src, rsa, csa, dst)
                    }
                }
            }
        });
        Ok(Some(PackedA {
            data,
            m: self.m,
            k: self.k,
            rows,
            isa,
            kc,
        }))
    }

    /// [`Gemm::run_with`] with `op(A)` from [`Gemm::pack_a`] (of a product
    /// with the same `m` and `k`), on the native kernel; `C` row-major.
    pub fn run_packed_with(
        &self,
        a: &PackedA,
        b: &[f32],
        c: &mut [f32],
        epilogue: &Epilogue<'_>,
    ) -> Result<()> {
        // SAFETY: `c` is borrowed exclusively for the call.
        unsafe { self.run_packed_raw(a, b, c.as_mut_ptr(), c.len(), epilogue) }
    }

    /// [`Gemm::run_packed_with`] into a `C` given as in
    /// [`Gemm::run_with_raw`].
    ///
    /// # Safety
    /// As for [`Gemm::run_with_raw`].
    pub(crate) unsafe fn run_packed_raw(
        &self,
        a: &PackedA,
        b: &[f32],
        c: *mut f32,
        c_len: usize,
        epilogue: &Epilogue<'_>,
    ) -> Result<()> {
        let isa = cpu::isa();
        if (a.m, a.k) != (self.m, self.k)
            || a.isa != isa
            || a.kc != Blocking::for_isa(isa).kc
            || self.layout != Layout::RowMajor
        {
            return Err(KernelError::InvalidArgument {
                op: OP,
                what: format!(
                    "A packed as {} x {} for {} is used for a {} x {} product ({:?}) on {isa}",
                    a.m, a.k, a.isa, self.m, self.k, self.layout
                ),
            });
        }
        let mut problem = self.problem(None, b, c, c_len, epilogue)?;
        problem.pa = a.data.as_ptr();
        problem.pa_rows = a.rows;
        self.run_native(isa, problem)
    }

    fn run_problem(&self, backend: Backend, problem: Problem) -> Result<()> {
        match backend {
            Backend::Native => self.run_native(cpu::isa(), problem),
            #[cfg(feature = "mkl")]
            Backend::Mkl => {
                cblas::check(&problem)?;
                self.run_parallel(problem, cblas::GRAIN, &|p| {
                    // SAFETY: `problem` was validated against the slices above and
                    // checked to be expressible in CBLAS; blocks of it stay inside
                    // the slices and do not overlap.
                    unsafe {
                        cblas::call(mkl::SGEMM, p);
                        p.apply_epi(0, p.m, 0, p.n);
                    }
                })
            }
            #[cfg(feature = "openblas")]
            Backend::OpenBlas => {
                let sgemm = openblas::library()?.sgemm;
                cblas::check(&problem)?;
                self.run_parallel(problem, cblas::GRAIN, &|p| {
                    // SAFETY: as for MKL above.
                    unsafe {
                        cblas::call(sgemm, p);
                        p.apply_epi(0, p.m, 0, p.n);
                    }
                })
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("check() rejected backends that are not compiled in"),
        }
    }

    /// Runs the native kernel at a chosen ISA level (for tests and benchmarks that
    /// compare levels). Errors if this CPU cannot run `isa`.
    pub fn run_native_isa(&self, isa: Isa, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        self.run_native_isa_with(isa, a, b, c, &Epilogue::default())
    }

    /// [`Gemm::run_native_isa`] with `epilogue` applied to `C`.
    pub fn run_native_isa_with(
        &self,
        isa: Isa,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        epilogue: &Epilogue<'_>,
    ) -> Result<()> {
        if !isa.is_supported() {
            return Err(KernelError::Unsupported {
                op: OP,
                backend: "native",
                reason: format!("this CPU does not support {isa}"),
            });
        }
        let problem = self.problem(Some(a), b, c.as_mut_ptr(), c.len(), epilogue)?;
        self.run_native(isa, problem)
    }

    fn run_native(&self, isa: Isa, problem: Problem) -> Result<()> {
        let blocking = Blocking::for_isa(isa);
        self.run_parallel(problem, (blocking.mr, blocking.nr), &|p| {
            // SAFETY: `problem` was validated against the caller's slices; blocks of
            // it stay inside them and do not overlap; `isa` is supported (checked by
            // the callers: `cpu::isa()` or `run_native_isa`).
            unsafe {
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx512 && p.pa.is_null() && dot::suits(p) {
                    dot::gemm(p);
                    p.apply_epi(0, p.m, 0, p.n);
                    return;
                }
                native::gemm(isa, &blocking, p)
            }
        })
    }

    /// Handles the cases no backend needs to see, then splits `C` over threads.
    /// `grain`: rows and columns of `C` per thread are multiples of these.
    fn run_parallel(
        &self,
        p: Problem,
        grain: (usize, usize),
        block: &(dyn Fn(&Problem) + Sync),
    ) -> Result<()> {
        let p = p.c_row_major();
        if p.m == 0 || p.n == 0 {
            return Ok(());
        }
        if p.k == 0 || p.alpha == 0.0 {
            // SAFETY: `p.c` covers the validated `m x n` C, and the epilogue's
            // operands match it.
            unsafe {
                p.scale_c();
                p.apply_epi(0, p.m, 0, p.n);
            }
            return Ok(());
        }
        let max = match self.parallelism {
            Parallelism::Auto if pool::in_worker() => 1,
            Parallelism::Auto => pool::num_threads(),
            Parallelism::Threads(t) => t.clamp(1, pool::num_threads()),
        };
        let (tm, tn) = p.thread_grid(max, grain.0, grain.1);
        let blocks = p.blocks(tm, tn, grain.0, grain.1);
        pool::run_tasks(blocks.len(), |t| block(&blocks[t]));
        Ok(())
    }

    fn stored(&self, rows: usize, cols: usize, trans: Transpose, ld: Option<usize>) -> Stored {
        let lines_are_rows = (self.layout == Layout::RowMajor) == (trans == Transpose::No);
        let (lines, len) = if lines_are_rows {
            (rows, cols)
        } else {
            (cols, rows)
        };
        Stored {
            lines,
            len,
            ld: ld.unwrap_or(len.max(1)),
            lines_are_rows,
        }
    }

    /// `Ok` when `len` floats hold operand `name` stored as `s`.
    fn check_operand(&self, name: &'static str, s: &Stored, len: usize) -> Result<()> {
        if s.ld < s.len.max(1) {
            return Err(KernelError::InvalidArgument {
                op: OP,
                what: format!(
                    "ld{name} = {} is smaller than the stored line length {} \
                     (m={}, n={}, k={}, {:?}, trans_a={:?}, trans_b={:?})",
                    s.ld, s.len, self.m, self.n, self.k, self.layout, self.trans_a, self.trans_b
                ),
            });
        }
        let needed = if s.lines == 0 || s.len == 0 {
            0
        } else {
            (s.lines - 1)
                .checked_mul(s.ld)
                .and_then(|x| x.checked_add(s.len))
                .filter(|&x| x <= isize::MAX as usize / 4)
                .ok_or_else(|| KernelError::InvalidArgument {
                    op: OP,
                    what: format!("{name}: {} lines of ld {} overflow", s.lines, s.ld),
                })?
        };
        if len < needed {
            return Err(KernelError::BufferTooSmall {
                op: OP,
                name,
                len,
                needed,
            });
        }
        Ok(())
    }

    /// Validates shapes, leading dimensions and buffer lengths (the
    /// epilogue's too: a bias per row of `C`, a residual stored like `C`),
    /// and describes the call as strided matrices; `C` is `c_len` floats at
    /// `c`; no `A` when it comes packed (the caller sets `pa`).
    fn problem(
        &self,
        a: Option<&[f32]>,
        b: &[f32],
        c: *mut f32,
        c_len: usize,
        e: &Epilogue<'_>,
    ) -> Result<Problem> {
        let sa = self.stored(self.m, self.k, self.trans_a, self.lda);
        let sb = self.stored(self.k, self.n, self.trans_b, self.ldb);
        let sc = self.stored(self.m, self.n, Transpose::No, self.ldc);
        if let Some(bias) = e.row_bias.filter(|b| b.len() < self.m) {
            return Err(KernelError::BufferTooSmall {
                op: OP,
                name: "row_bias",
                len: bias.len(),
                needed: self.m,
            });
        }
        let residual = e.residual.map(|r| ("residual", &sc, r.len()));
        let a_op = a.map(|a| ("a", &sa, a.len()));
        for (name, s, len) in a_op
            .into_iter()
            .chain([("b", &sb, b.len()), ("c", &sc, c_len)])
            .chain(residual)
        {
            self.check_operand(name, s, len)?;
        }
        let (rsa, csa) = sa.strides();
        let (rsb, csb) = sb.strides();
        let (rsc, csc) = sc.strides();
        Ok(Problem {
            m: self.m,
            n: self.n,
            k: self.k,
            alpha: self.alpha,
            beta: self.beta,
            a: a.map_or(std::ptr::null(), <[f32]>::as_ptr),
            rsa,
            csa,
            b: b.as_ptr(),
            rsb,
            csb,
            c,
            rsc,
            csc,
            epi: Epi {
                bias: e.row_bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
                // One value per row of C, whatever the layout.
                bias_rs: 1,
                bias_cs: 0,
                res: e.residual.map_or(std::ptr::null(), <[f32]>::as_ptr),
                relu: e.relu,
            },
            pa: std::ptr::null(),
            pa_rows: 0,
            pa_row: 0,
        })
    }
}

/// A named GEMM shape from a real workload: `(name, m, n, k)`.
pub type Workload = (&'static str, usize, usize, usize);

/// The shapes GEMM benchmarks report: squares, and the GEMMs behind real layers
/// (convolutions as im2col: `m` = output channels, `n` = output pixels, `k` =
/// input channels x kernel area; fully connected: `m` = batch).
pub const WORKLOADS: &[Workload] = &[
    ("square", 128, 128, 128),
    ("square", 256, 256, 256),
    ("square", 512, 512, 512),
    ("square", 1024, 1024, 1024),
    ("square", 2048, 2048, 2048),
    ("resnet50 conv2 3x3", 64, 3136, 576),
    ("resnet50 conv5 3x3", 512, 49, 4608),
    ("3x3 conv 128ch", 128, 128, 1152),
    ("linear 784->1024 b32", 32, 1024, 784),
    ("lenet5 conv1 5x5", 6, 576, 25),
    ("lenet5 conv2 5x5", 12, 64, 150),
    ("lenet5 fc1 b128", 128, 100, 192),
    ("resnet50 1x1 64->256", 256, 3136, 64),
    ("resnet50 conv1 7x7", 64, 12544, 147),
];
