//! Errors of the collectives.

use std::time::Duration;

/// What can go wrong in a collective.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// Peers did not deliver within the deadline (dead, stalled, or not
    /// calling the same collective).
    #[error(
        "rank {rank}: {op} timed out after {:.1} s waiting for rank(s) {missing:?}",
        timeout.as_secs_f64()
    )]
    Timeout {
        /// This rank.
        rank: usize,
        /// The collective.
        op: String,
        /// The deadline that passed.
        timeout: Duration,
        /// The ranks whose messages never came.
        missing: Vec<usize>,
    },
    /// A peer's end of the connection closed (its process or thread ended).
    #[error("rank {rank}: {op} failed: rank {peer} is gone")]
    PeerGone {
        /// This rank.
        rank: usize,
        /// The collective.
        op: String,
        /// The peer that left.
        peer: usize,
    },
    /// A peer sent something else than this collective expected (the ranks
    /// called different collectives, or with different lengths).
    #[error("rank {rank}: {op}: {what}")]
    Protocol {
        /// This rank.
        rank: usize,
        /// The collective.
        op: String,
        /// What was wrong.
        what: String,
    },
    /// Bad arguments (lengths, ranks).
    #[error("{0}")]
    Invalid(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// The result of a collective.
pub type Result<T> = std::result::Result<T, Error>;
