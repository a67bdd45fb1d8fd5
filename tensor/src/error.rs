//! The tensor crate's error type.

use thiserror::Error;

/// Why a tensor operation refused to run. Every variant names the operation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TensorError {
    /// Shapes that do not fit together.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// First shape.
        lhs: Vec<usize>,
        /// Second shape.
        rhs: Vec<usize>,
    },
    /// A dimension index past the tensor's rank.
    #[error("{op}: dimension {dim} out of range for a {rank}-d tensor")]
    DimOutOfRange {
        /// The operation.
        op: &'static str,
        /// The dimension asked for.
        dim: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index or range past a dimension's size.
    #[error("{op}: index {index} out of range for dimension {dim} of size {size}")]
    IndexOutOfRange {
        /// The operation.
        op: &'static str,
        /// The dimension.
        dim: usize,
        /// The index (or range end).
        index: usize,
        /// The dimension's size.
        size: usize,
    },
    /// Any other invalid argument, with the values involved.
    #[error("{op}: {what}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A file that is not what it claims to be.
    #[error("{op}: malformed input: {what}")]
    Format {
        /// The operation (e.g. `read_npy`).
        op: &'static str,
        /// What is wrong.
        what: String,
    },
    /// An I/O failure.
    #[error("{op}: {what}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The OS error, with the path.
        what: String,
    },
    /// The storage is locked by a live slice guard of a tensor sharing it
    /// (e.g. an output that aliases an input).
    #[error("{op}: the tensor's storage is in use by another slice guard (aliased tensors?)")]
    Busy {
        /// The operation.
        op: &'static str,
    },
    /// A kernel refused the call.
    #[error(transparent)]
    Kernel(#[from] bigdl_kernels::KernelError),
}

/// Result alias for tensor operations.
pub type Result<T, E = TensorError> = std::result::Result<T, E>;

pub(crate) fn invalid(op: &'static str, what: impl Into<String>) -> TensorError {
    TensorError::Invalid {
        op,
        what: what.into(),
    }
}
