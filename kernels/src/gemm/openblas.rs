//! OpenBLAS, loaded at run time from `libopenblas.so.0` (or the path in
//! `BIGDL_OPENBLAS_LIB`).
//!
//! Loading instead of linking keeps OpenBLAS's `cblas_sgemm` from colliding with
//! MKL's when both backends are compiled in: each backend calls its own library's
//! symbol, which the tests check through each library's version string.

use std::ffi::{CStr, c_char, c_int};
use std::sync::OnceLock;

use libloading::Library;

use super::OP;
use super::cblas::SgemmFn;
use crate::error::{KernelError, Result};

/// A loaded OpenBLAS.
pub(crate) struct OpenBlas {
    _lib: Library,
    pub sgemm: SgemmFn,
    get_config: unsafe extern "C" fn() -> *const c_char,
}

impl OpenBlas {
    /// OpenBLAS's build configuration string (version, target core, threading).
    pub fn config(&self) -> String {
        // SAFETY: openblas_get_config returns a static NUL-terminated string.
        let s = unsafe { CStr::from_ptr((self.get_config)()) };
        format!("OpenBLAS {}", s.to_string_lossy().trim())
    }
}

/// The process's OpenBLAS, loaded on first use.
pub(crate) fn library() -> Result<&'static OpenBlas> {
    static LIB: OnceLock<std::result::Result<OpenBlas, String>> = OnceLock::new();
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|reason| KernelError::Unsupported {
            op: OP,
            backend: "openblas",
            reason: reason.clone(),
        })
}

fn load() -> std::result::Result<OpenBlas, String> {
    let candidates: Vec<String> = match std::env::var("BIGDL_OPENBLAS_LIB") {
        Ok(path) if !path.is_empty() => vec![path],
        _ => vec!["libopenblas.so.0".into(), "libopenblas.so".into()],
    };
    let mut errors = Vec::new();
    for name in &candidates {
        // SAFETY: loading OpenBLAS runs its initialisers, which only set up its
        // own state (CPU detection, thread server).
        match unsafe { Library::new(name) } {
            Ok(lib) => return symbols(lib).map_err(|e| format!("{name}: {e}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(format!(
        "cannot load OpenBLAS ({}); install it (Debian: apt-get install libopenblas-dev, \
         or run ci/setup.sh) or set BIGDL_OPENBLAS_LIB",
        errors.join("; ")
    ))
}

fn symbols(lib: Library) -> std::result::Result<OpenBlas, libloading::Error> {
    // SAFETY: the symbols are looked up in OpenBLAS itself and typed as its
    // cblas.h declares them (32-bit `blasint`, which Debian's build uses).
    unsafe {
        let sgemm = *lib.get::<SgemmFn>(b"cblas_sgemm\0")?;
        let set_threads = *lib.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0")?;
        let get_config =
            *lib.get::<unsafe extern "C" fn() -> *const c_char>(b"openblas_get_config\0")?;
        // Our pool does the threading; OpenBLAS's own threads would nest inside it.
        set_threads(1);
        Ok(OpenBlas {
            _lib: lib,
            sgemm,
            get_config,
        })
    }
}
