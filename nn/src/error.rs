//! The nn crate's error type.

use bigdl_tensor::TensorError;
use bigdl_tensor::kernels::KernelError;
use thiserror::Error;

/// Why a module, criterion or optimizer refused to run. Every variant names
/// the layer (its [`crate::Module::name`]).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NnError {
    /// An input whose shape the layer cannot take.
    #[error("{layer}: expected input of shape {expected}, got {got:?}")]
    Shape {
        /// The layer's name.
        layer: String,
        /// The shapes the layer takes, e.g. `[N, 784] or [784]`.
        expected: String,
        /// The shape it was given.
        got: Vec<usize>,
    },
    /// A table where a tensor was expected, or the other way round.
    #[error("{layer}: expected {expected}, got {got}")]
    Activity {
        /// The layer's name.
        layer: String,
        /// What the layer takes.
        expected: &'static str,
        /// What it was given.
        got: &'static str,
    },
    /// Any other invalid argument or call, with the values involved.
    #[error("{layer}: {what}")]
    Invalid {
        /// The layer's name.
        layer: String,
        /// What is wrong.
        what: String,
    },
    /// A data file that is missing or not what it claims to be.
    #[error("{path}: {what}")]
    Data {
        /// The file.
        path: String,
        /// What is wrong (and, for a missing file, how to get it).
        what: String,
    },
    /// An I/O failure (checkpoints, summaries).
    #[error("{path}: {what}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        what: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A kernel refused the call.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A collective of distributed training failed.
    #[error(transparent)]
    Comm(#[from] bigdl_comm::Error),
}

/// Result alias for nn operations.
pub type Result<T, E = NnError> = std::result::Result<T, E>;

pub(crate) fn invalid(layer: &str, what: impl Into<String>) -> NnError {
    NnError::Invalid {
        layer: layer.to_string(),
        what: what.into(),
    }
}

pub(crate) fn shape(layer: &str, expected: impl Into<String>, got: &[usize]) -> NnError {
    NnError::Shape {
        layer: layer.to_string(),
        expected: expected.into(),
        got: got.to_vec(),
    }
}
