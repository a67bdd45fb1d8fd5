//! The kernels' error type.

use thiserror::Error;

/// Why a kernel refused to run. Every variant names the operation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// An argument is out of range (a leading dimension smaller than a row, a size
    /// that overflows, an unknown name).
    #[error("{op}: invalid argument: {what}")]
    InvalidArgument {
        /// The operation, e.g. `sgemm`.
        op: &'static str,
        /// What is wrong, with the values involved.
        what: String,
    },
    /// A buffer is shorter than its shape and leading dimension require.
    #[error("{op}: buffer `{name}` has {len} elements, but its shape needs {needed}")]
    BufferTooSmall {
        /// The operation, e.g. `sgemm`.
        op: &'static str,
        /// The argument, e.g. `a`.
        name: &'static str,
        /// Elements given.
        len: usize,
        /// Elements needed.
        needed: usize,
    },
    /// A backend that was not compiled in, or whose library cannot be loaded.
    #[error("{op}: backend `{backend}` is unavailable: {reason}")]
    Unsupported {
        /// The operation, e.g. `sgemm`.
        op: &'static str,
        /// The backend's name.
        backend: &'static str,
        /// Why, and how to get it.
        reason: String,
    },
}

/// Result alias for kernels.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// `Err(BufferTooSmall)` for the first `(name, len, needed)` whose length is not
/// exactly `needed`.
pub(crate) fn check_lens(op: &'static str, bufs: &[(&'static str, usize, usize)]) -> Result<()> {
    for &(name, len, needed) in bufs {
        if len != needed {
            return Err(KernelError::BufferTooSmall {
                op,
                name,
                len,
                needed,
            });
        }
    }
    Ok(())
}
