//! Intel MKL, statically linked (LP64 interface, sequential threading layer; see
//! `build.rs`).

use std::ffi::{c_char, c_int};

use super::cblas::SgemmFn;

unsafe extern "C" {
    fn cblas_sgemm(
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
    fn mkl_get_version_string(buf: *mut c_char, len: c_int);
}

/// MKL's `cblas_sgemm`.
pub(crate) const SGEMM: SgemmFn = cblas_sgemm;

/// MKL's own version string, e.g. "Intel(R) oneAPI Math Kernel Library Version ...".
pub(crate) fn version() -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: MKL writes at most `len` bytes, NUL-terminated, into `buf`.
    unsafe { mkl_get_version_string(buf.as_mut_ptr(), buf.len() as c_int) };
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}
