//! Calling a CBLAS `cblas_sgemm` (MKL, OpenBLAS) with a [`Problem`].

use std::ffi::c_int;

use super::{OP, Problem};
use crate::error::{KernelError, Result};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Rows and columns of `C` per thread are multiples of these.
pub(crate) const GRAIN: (usize, usize) = (8, 16);

/// `cblas_sgemm` with 32-bit integers (MKL LP64, OpenBLAS without ILP64).
pub(crate) type SgemmFn = unsafe extern "C" fn(
    layout: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

/// `(trans, ld)` of a `rows x cols` operand with strides `(rs, cs)`, if CBLAS can
/// express it. CBLAS checks `ld >= max(1, line length)` even where the stride is
/// never used (a single row or column), so such an `ld` is replaced by the
/// smallest valid one; the tests found MKL rejecting `ld = 1` for a 1 x k operand.
fn operand(rs: isize, cs: isize, rows: usize, cols: usize) -> Option<(c_int, c_int)> {
    let (trans, ld) = if cs == 1 && (rows <= 1 || rs >= cols as isize) {
        (NO_TRANS, if rows <= 1 { cols.max(1) as isize } else { rs })
    } else if rs == 1 && (cols <= 1 || cs >= rows as isize) {
        (TRANS, if cols <= 1 { rows.max(1) as isize } else { cs })
    } else {
        return None;
    };
    Some((trans, c_int::try_from(ld).ok()?))
}

/// `Ok` if CBLAS with 32-bit integers can run `p` (after orienting `C` row-major).
pub(crate) fn check(p: &Problem) -> Result<()> {
    let p = p.c_row_major();
    let ok = [p.m, p.n, p.k].iter().all(|&d| c_int::try_from(d).is_ok())
        && operand(p.rsa, p.csa, p.m, p.k).is_some()
        && operand(p.rsb, p.csb, p.k, p.n).is_some()
        && operand(p.rsc, p.csc, p.m, p.n).is_some_and(|(t, _)| t == NO_TRANS);
    if ok {
        Ok(())
    } else {
        Err(KernelError::InvalidArgument {
            op: OP,
            what: format!(
                "m={}, n={}, k={} with these leading dimensions exceed the 32-bit \
                 integers of the CBLAS interface; use the native backend",
                p.m, p.n, p.k
            ),
        })
    }
}

/// Runs `p` through `sgemm`.
///
/// # Safety
/// `p` must describe valid matrices and have passed [`check`]; `sgemm` must be a
/// real `cblas_sgemm`.
pub(crate) unsafe fn call(sgemm: SgemmFn, p: &Problem) {
    let p = p.c_row_major();
    let (Some((ta, lda)), Some((tb, ldb)), Some((_, ldc))) = (
        operand(p.rsa, p.csa, p.m, p.k),
        operand(p.rsb, p.csb, p.k, p.n),
        operand(p.rsc, p.csc, p.m, p.n),
    ) else {
        unreachable!("cblas::check accepted this problem");
    };
    // SAFETY: dimensions fit c_int (checked); pointers and leading dimensions
    // describe the validated matrices (caller's contract).
    unsafe {
        sgemm(
            ROW_MAJOR,
            ta,
            tb,
            p.m as c_int,
            p.n as c_int,
            p.k as c_int,
            p.alpha,
            p.a,
            lda,
            p.b,
            ldb,
            p.beta,
            p.c,
            ldc,
        );
    }
}
