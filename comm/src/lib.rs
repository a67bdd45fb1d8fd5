//! # bigdl-comm
//!
//! Will hold the `Communicator` trait (rank, size, reduce-scatter, all-gather,
//! all-reduce, barrier over flat `f32` buffers) and its backends: `local` (ranks as
//! threads), `mpi` (cargo feature) and `block` (over a `BlockStore`, such as
//! Spark's BlockManager). Nothing is implemented yet; see the scale-out issues.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
