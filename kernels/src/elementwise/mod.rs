//! Vectorised element-wise kernels on `f32` slices: unary functions (`exp`,
//! `log`, `tanh`, `sigmoid`, `relu`, ...), binary arithmetic, `axpy`, scaling,
//! sums and maxima, and row-wise `softmax` / `log_softmax`.
//!
//! Each kernel dispatches on [`crate::cpu::isa`] (AVX-512F, AVX2+FMA, portable;
//! capped by `BIGDL_MAX_ISA`) and runs on the engine's pool above
//! [`PARALLEL_THRESHOLD`] elements. Errors of the transcendental functions are
//! documented in the table of the `math` module and checked by the tests:
//! `exp`, `log` within 2 ulp; `tanh`, `sigmoid` within 3 ulp.

mod math;
pub(crate) mod simd;

use rayon::prelude::*;

use crate::cpu::{self, Isa};
use crate::error::{KernelError, Result};
use crate::pool;
use math::Op;
#[cfg(target_arch = "x86_64")]
use simd::{Avx2, Avx512};
use simd::{Scalar, Simd};

/// Slices at least this long are split over the pool's threads: below it (50 us of
/// `exp` on one core) waking a second thread costs more than it saves (measured:
/// at 65536 elements two threads ran slower than one).
pub const PARALLEL_THRESHOLD: usize = 1 << 18;

/// Work unit of the parallel split (elements; a multiple of every vector width).
const CHUNK: usize = 1 << 15;

/// A unary element-wise function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// e^x (2 ulp; results below `f32::MIN_POSITIVE` may flush to 0).
    Exp,
    /// ln x (2 ulp).
    Log,
    /// tanh x (3 ulp).
    Tanh,
    /// 1 / (1 + e^-x) (3 ulp).
    Sigmoid,
    /// max(x, 0), NaN preserved.
    Relu,
    /// |x|.
    Abs,
    /// sqrt x, correctly rounded.
    Sqrt,
    /// -x.
    Neg,
    /// x * x.
    Square,
}

impl Unary {
    /// Every function, for tests and benchmarks.
    pub const ALL: [Unary; 9] = [
        Unary::Exp,
        Unary::Log,
        Unary::Tanh,
        Unary::Sigmoid,
        Unary::Relu,
        Unary::Abs,
        Unary::Sqrt,
        Unary::Neg,
        Unary::Square,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Relu => "relu",
            Unary::Abs => "abs",
            Unary::Sqrt => "sqrt",
            Unary::Neg => "neg",
            Unary::Square => "square",
        }
    }
}

fn check_len(op: &'static str, a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(KernelError::InvalidArgument {
            op,
            what: format!("input has {a} elements, output {b}"),
        })
    }
}

/// Runs `f(x_chunk, y_chunk)` over matching chunks, in parallel for long slices.
fn chunked(x: &[f32], y: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if x.len() < PARALLEL_THRESHOLD || pool::num_threads() == 1 || pool::in_worker() {
        f(x, y);
    } else {
        pool::install(|| {
            x.par_chunks(CHUNK)
                .zip(y.par_chunks_mut(CHUNK))
                .for_each(|(a, b)| f(a, b));
        });
    }
}

/// `y = op(x)`.
pub fn unary(op: Unary, x: &[f32], y: &mut [f32]) -> Result<()> {
    unary_isa(cpu::isa(), op, x, y)
}

/// `x = op(x)`.
pub fn unary_inplace(op: Unary, x: &mut [f32]) {
    let isa = cpu::isa();
    if x.len() < PARALLEL_THRESHOLD || pool::num_threads() == 1 || pool::in_worker() {
        let n = x.len();
        let p = x.as_mut_ptr();
        // SAFETY: in and out are the same valid slice of `n` floats (the loop
        // reads each vector before writing it); `isa` is the dispatch level.
        unsafe { run_unary(isa, op, p, p, n) };
    } else {
        pool::install(|| {
            x.par_chunks_mut(CHUNK).for_each(|c| {
                let (n, p) = (c.len(), c.as_mut_ptr());
                // SAFETY: as above, on a chunk.
                unsafe { run_unary(isa, op, p, p, n) };
            });
        });
    }
}

/// `y = op(x)` at a chosen ISA level (tests and benchmarks compare levels).
/// Errors if the lengths differ or the CPU lacks `isa`.
pub fn unary_isa(isa: Isa, op: Unary, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len(op.name(), x.len(), y.len())?;
    if !isa.is_supported() {
        return Err(KernelError::Unsupported {
            op: op.name(),
            backend: isa.name(),
            reason: "this CPU does not support it".into(),
        });
    }
    chunked(x, y, |a, b| {
        // SAFETY: `a` and `b` are valid and of equal length; `isa` is supported.
        unsafe { run_unary(isa, op, a.as_ptr(), b.as_mut_ptr(), a.len()) };
    });
    Ok(())
}

/// A kernel body, generic over the SIMD implementation; [`dispatch`] runs it
/// inside a `#[target_feature]` function of the chosen ISA so everything inlines.
pub(crate) trait Kernel {
    type Out;
    /// # Safety
    /// The CPU must support `S`; the kernel's pointers must be valid.
    unsafe fn run<S: Simd>(self) -> Self::Out;
}

/// # Safety
/// The CPU supports `isa`; the kernel's pointers are valid.
pub(crate) unsafe fn dispatch<K: Kernel>(isa: Isa, k: K) -> K::Out {
    // SAFETY: forwarded; each arm runs only for its ISA.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => run_avx512(k),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => run_avx2(k),
            _ => k.run::<Scalar>(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<K: Kernel>(k: K) -> K::Out {
    // SAFETY: forwarded; AVX-512F is enabled here.
    unsafe { k.run::<Avx512>() }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(k: K) -> K::Out {
    // SAFETY: forwarded; AVX2 and FMA are enabled here.
    unsafe { k.run::<Avx2>() }
}

/// `y = O(x)` over `n` floats (`x == y` allowed).
struct Map<O> {
    x: *const f32,
    y: *mut f32,
    n: usize,
    op: std::marker::PhantomData<O>,
}

impl<O: Op> Kernel for Map<O> {
    type Out = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let (x, y, n) = (self.x, self.y, self.n);
        let full = n / S::LANES * S::LANES;
        // SAFETY: i + LANES <= n in the vector loop; the tail goes through a
        // padded buffer so it gets exactly the vector code's results.
        unsafe {
            for i in (0..full).step_by(S::LANES) {
                S::store(y.add(i), O::apply::<S>(S::load(x.add(i))));
            }
            if full < n {
                let mut buf = [1.0f32; 16];
                std::ptr::copy_nonoverlapping(x.add(full), buf.as_mut_ptr(), n - full);
                S::store(buf.as_mut_ptr(), O::apply::<S>(S::load(buf.as_ptr())));
                std::ptr::copy_nonoverlapping(buf.as_ptr(), y.add(full), n - full);
            }
        }
    }
}

/// # Safety
/// `x` readable and `y` writable for `n` floats (equal or not overlapping); the
/// CPU supports `isa`.
unsafe fn run_unary(isa: Isa, op: Unary, x: *const f32, y: *mut f32, n: usize) {
    fn map<O: Op>(x: *const f32, y: *mut f32, n: usize) -> Map<O> {
        Map {
            x,
            y,
            n,
            op: std::marker::PhantomData,
        }
    }
    // SAFETY: forwarded contract.
    unsafe {
        match op {
            Unary::Exp => dispatch(isa, map::<math::ExpOp>(x, y, n)),
            Unary::Log => dispatch(isa, map::<math::LogOp>(x, y, n)),
            Unary::Tanh => dispatch(isa, map::<math::TanhOp>(x, y, n)),
            Unary::Sigmoid => dispatch(isa, map::<math::SigmoidOp>(x, y, n)),
            Unary::Relu => dispatch(isa, map::<math::ReluOp>(x, y, n)),
            Unary::Abs => dispatch(isa, map::<math::AbsOp>(x, y, n)),
            Unary::Sqrt => dispatch(isa, map::<math::SqrtOp>(x, y, n)),
            Unary::Neg => dispatch(isa, map::<math::NegOp>(x, y, n)),
            Unary::Square => dispatch(isa, map::<math::SquareOp>(x, y, n)),
        }
    }
}

/// A binary element-wise operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
}

/// `out = a op b`, or with `alpha`: `out = alpha * a + b` (axpy) when
/// `op == None`.
struct Zip {
    op: Option<Binary>,
    alpha: f32,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    n: usize,
}

impl Zip {
    #[inline(always)]
    unsafe fn apply<S: Simd>(&self, a: S::V, b: S::V) -> S::V {
        // SAFETY: the caller checked the CPU for `S`.
        unsafe {
            match self.op {
                Some(Binary::Add) => S::add(a, b),
                Some(Binary::Sub) => S::sub(a, b),
                Some(Binary::Mul) => S::mul(a, b),
                Some(Binary::Div) => S::div(a, b),
                None => S::fma(S::splat(self.alpha), a, b),
            }
        }
    }
}

impl Kernel for Zip {
    type Out = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let full = self.n / S::LANES * S::LANES;
        // SAFETY: as in `Map`.
        unsafe {
            for i in (0..full).step_by(S::LANES) {
                let v = self.apply::<S>(S::load(self.a.add(i)), S::load(self.b.add(i)));
                S::store(self.out.add(i), v);
            }
            if full < self.n {
                let t = self.n - full;
                let (mut ba, mut bb) = ([1.0f32; 16], [1.0f32; 16]);
                std::ptr::copy_nonoverlapping(self.a.add(full), ba.as_mut_ptr(), t);
                std::ptr::copy_nonoverlapping(self.b.add(full), bb.as_mut_ptr(), t);
                let v = self.apply::<S>(S::load(ba.as_ptr()), S::load(bb.as_ptr()));
                S::store(ba.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(ba.as_ptr(), self.out.add(full), t);
            }
        }
    }
}

/// Runs a [`Zip`] over `n` elements, split over the pool for long inputs.
///
/// # Safety
/// `a` and `b` readable and `out` writable for `n` floats; `out` may equal `b`
/// (read before written, element by element) but not otherwise overlap.
unsafe fn zip(
    op: Option<Binary>,
    alpha: f32,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    n: usize,
) {
    let isa = cpu::isa();
    let (a, b, out) = (SendPtr(a.cast_mut()), SendPtr(b.cast_mut()), SendPtr(out));
    let k = move |start: usize, len: usize| {
        let z = Zip {
            op,
            alpha,
            a: a.at(start),
            b: b.at(start),
            out: out.at(start),
            n: len,
        };
        // SAFETY: `start + len <= n` (callers' contract covers the range);
        // `isa` is the dispatch level.
        unsafe { dispatch(isa, z) }
    };
    if n < PARALLEL_THRESHOLD || pool::num_threads() == 1 || pool::in_worker() {
        k(0, n);
    } else {
        pool::install(|| {
            (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
                let start = c * CHUNK;
                k(start, CHUNK.min(n - start));
            });
        });
    }
}

/// A pointer that may cross to pool threads: each task touches its own chunk.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    /// The pointer `i` elements on (a method, so closures capture the wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}
// SAFETY: used only to hand disjoint chunks of caller-validated buffers to pool
// tasks, which the caller's borrow outlives.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// `out = a op b`.
pub fn binary(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    check_len("binary", a.len(), b.len())?;
    check_len("binary", a.len(), out.len())?;
    // SAFETY: three valid slices of equal length; `out` is exclusive.
    unsafe {
        zip(
            Some(op),
            0.0,
            a.as_ptr(),
            b.as_ptr(),
            out.as_mut_ptr(),
            a.len(),
        )
    };
    Ok(())
}

/// `a = a op b`.
pub fn binary_inplace(op: Binary, a: &mut [f32], b: &[f32]) -> Result<()> {
    check_len("binary_inplace", a.len(), b.len())?;
    let a = a.as_mut_ptr();
    // SAFETY: `a` and `b` are valid for the same length; `a` is both the first
    // input and the output, read before written element by element.
    unsafe { zip(Some(op), 0.0, a, b.as_ptr(), a, b.len()) };
    Ok(())
}

/// `y = alpha * x + y`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("axpy", x.len(), y.len())?;
    let y = y.as_mut_ptr();
    // SAFETY: `x` and `y` are valid for the same length; `y` is both the second
    // input and the output, read before written element by element.
    unsafe { zip(None, alpha, x.as_ptr(), y, y, x.len()) };
    Ok(())
}

/// `x = alpha * x`.
pub fn scale(alpha: f32, x: &mut [f32]) {
    for v in x.iter_mut() {
        *v *= alpha;
    }
}

/// Elements per block of [`sum`]: summed in `f32` vector lanes, then the block
/// sums in `f64`.
const SUM_BLOCK: usize = 4096;

struct Reduce {
    x: *const f32,
    n: usize,
    max: bool,
}

impl Kernel for Reduce {
    type Out = f64;
    #[inline(always)]
    unsafe fn run<S: Simd>(self) -> f64 {
        let (x, n, l) = (self.x, self.n, S::LANES);
        // SAFETY: every load is inside the `n` readable floats.
        unsafe {
            if self.max {
                let mut acc = S::splat(f32::NEG_INFINITY);
                let mut i = 0;
                while i + l <= n {
                    let v = S::load(x.add(i));
                    if S::any(S::is_nan(v)) {
                        return f64::NAN;
                    }
                    acc = S::max(acc, v);
                    i += l;
                }
                let mut m = S::hmax(acc);
                for j in i..n {
                    let v = *x.add(j);
                    if v.is_nan() {
                        return f64::NAN;
                    }
                    m = m.max(v);
                }
                return m as f64;
            }
            let mut total = 0.0f64;
            for start in (0..n).step_by(SUM_BLOCK) {
                let len = SUM_BLOCK.min(n - start);
                let p = x.add(start);
                let mut acc = [S::splat(0.0); 4];
                let mut i = 0;
                while i + 4 * l <= len {
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = S::add(*a, S::load(p.add(i + k * l)));
                    }
                    i += 4 * l;
                }
                while i + l <= len {
                    acc[0] = S::add(acc[0], S::load(p.add(i)));
                    i += l;
                }
                let mut s = S::hsum(S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3])));
                for j in i..len {
                    s += *p.add(j);
                }
                total += s as f64;
            }
            total
        }
    }
}

fn reduce(x: &[f32], max: bool) -> f64 {
    let isa = cpu::isa();
    let run = |c: &[f32]| {
        // SAFETY: `c` is a valid slice; `isa` is the dispatch level.
        unsafe {
            dispatch(
                isa,
                Reduce {
                    x: c.as_ptr(),
                    n: c.len(),
                    max,
                },
            )
        }
    };
    if x.len() < PARALLEL_THRESHOLD || pool::num_threads() == 1 || pool::in_worker() {
        run(x)
    } else {
        let parts: Vec<f64> = pool::install(|| x.par_chunks(CHUNK).map(run).collect());
        if max {
            parts.iter().fold(f64::NEG_INFINITY, |m, &v| {
                if v.is_nan() || m.is_nan() {
                    f64::NAN
                } else {
                    m.max(v)
                }
            })
        } else {
            parts.iter().sum()
        }
    }
}

/// Sum of `x`: `f32` lanes within blocks of 4096, `f64` across blocks. Error at
/// most `100 eps * sum |x|` (eps = `f32::EPSILON`); 0 for an empty slice.
pub fn sum(x: &[f32]) -> f32 {
    reduce(x, false) as f32
}

/// Largest element; NaN if any element is NaN; -inf for an empty slice.
pub fn max(x: &[f32]) -> f32 {
    reduce(x, true) as f32
}

/// `e^(x[i..] - max)` for one vector, stored to `y[i..]` when `store`.
///
/// # Safety
/// `x` and `y` hold `i + LANES` floats; the CPU supports `S`.
#[inline(always)]
unsafe fn softmax_exp<S: Simd>(
    x: *const f32,
    y: *mut f32,
    i: usize,
    max: S::V,
    store: bool,
) -> S::V {
    // SAFETY: caller's contract.
    unsafe {
        let e = math::exp::<S>(S::sub(S::load(x.add(i)), max));
        if store {
            S::store(y.add(i), e);
        }
        e
    }
}

/// `y = softmax(x)` (or `log_softmax` when `log`) over each row of `cols`.
struct Softmax {
    x: *const f32,
    y: *mut f32,
    cols: usize,
    log: bool,
}

impl Kernel for Softmax {
    type Out = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let (x, y, n, l) = (self.x, self.y, self.cols, S::LANES);
        // SAFETY: the row has `cols` readable (x) and writable (y) floats; the
        // tail goes through a padded buffer.
        unsafe {
            let m = Reduce { x, n, max: true }.run::<S>() as f32;
            let mv = S::splat(m);
            let full = n / l * l;
            // Compensated (Kahan) sums per lane, one compensated add per block
            // of up to 4 vectors (summed plainly, pairwise): the sum's error
            // stays a few ulps however long the row (a plain f32 sum over 1000
            // terms in one lane drifted by 9 ulps), for ~4% of the time (a
            // compensated add per vector cost 14%).
            let (mut acc, mut comp) = (S::splat(0.0), S::splat(0.0));
            let mut tail = 0.0f32;
            let store = !self.log;
            let mut i = 0;
            while i < full {
                let blk = if i + 4 * l <= full {
                    let (a, b) = (
                        softmax_exp::<S>(x, y, i, mv, store),
                        softmax_exp::<S>(x, y, i + l, mv, store),
                    );
                    let (c, d) = (
                        softmax_exp::<S>(x, y, i + 2 * l, mv, store),
                        softmax_exp::<S>(x, y, i + 3 * l, mv, store),
                    );
                    i += 4 * l;
                    S::add(S::add(a, b), S::add(c, d))
                } else {
                    i += l;
                    softmax_exp::<S>(x, y, i - l, mv, store)
                };
                let t = S::sub(blk, comp);
                let sum = S::add(acc, t);
                comp = S::sub(S::sub(sum, acc), t);
                acc = sum;
            }
            let mut buf = [0.0f32; 16];
            if full < n {
                buf[..n - full].copy_from_slice(std::slice::from_raw_parts(x.add(full), n - full));
                buf[n - full..].fill(f32::NEG_INFINITY);
                S::store(
                    buf.as_mut_ptr(),
                    math::exp::<S>(S::sub(S::load(buf.as_ptr()), mv)),
                );
                tail = buf[..n - full].iter().sum();
            }
            let s = (S::hsum(acc) - S::hsum(comp)) + tail;
            if self.log {
                // (x - max) - ln(sum), not x - (max + ln(sum)): for large
                // inputs max + ln(sum) rounds to max's ulp (0.001 at 1e4).
                let ls = math::log::<Scalar>(s);
                for i in 0..n {
                    *y.add(i) = (*x.add(i) - m) - ls;
                }
            } else {
                let inv = 1.0 / s;
                for i in (0..full).step_by(l) {
                    S::store(y.add(i), S::mul(S::load(y.add(i)), S::splat(inv)));
                }
                for j in full..n {
                    *y.add(j) = buf[j - full] * inv;
                }
            }
        }
    }
}

fn softmax_rows(x: &[f32], y: &mut [f32], cols: usize, log: bool) -> Result<()> {
    let op = if log { "log_softmax" } else { "softmax" };
    check_len(op, x.len(), y.len())?;
    if cols == 0 || !x.len().is_multiple_of(cols) {
        return Err(KernelError::InvalidArgument {
            op,
            what: format!("{} elements are not rows of {cols}", x.len()),
        });
    }
    let isa = cpu::isa();
    let row = |xr: &[f32], yr: &mut [f32]| {
        // SAFETY: one row of `cols` floats each; `isa` is the dispatch level.
        unsafe {
            dispatch(
                isa,
                Softmax {
                    x: xr.as_ptr(),
                    y: yr.as_mut_ptr(),
                    cols,
                    log,
                },
            )
        }
    };
    if x.len() < PARALLEL_THRESHOLD || pool::num_threads() == 1 || pool::in_worker() {
        x.chunks(cols)
            .zip(y.chunks_mut(cols))
            .for_each(|(a, b)| row(a, b));
    } else {
        pool::install(|| {
            x.par_chunks(cols)
                .zip(y.par_chunks_mut(cols))
                .for_each(|(a, b)| row(a, b));
        });
    }
    Ok(())
}

/// Softmax over each row of `cols` elements: `y = e^(x - max) / sum`. A row
/// containing NaN gives NaN.
pub fn softmax(x: &[f32], y: &mut [f32], cols: usize) -> Result<()> {
    softmax_rows(x, y, cols, false)
}

/// Log-softmax over each row of `cols`: `y = (x - max) - ln(sum e^(x - max))`.
pub fn log_softmax(x: &[f32], y: &mut [f32], cols: usize) -> Result<()> {
    softmax_rows(x, y, cols, true)
}
