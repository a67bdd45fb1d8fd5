//! # bigdl-benches
//!
//! Bench-only crate: measures bigdl-rs kernels side by side with peer libraries
//! (MKL, OpenBLAS, the `gemm` crate, `matrixmultiply`) in the same process.
//! See `benches/gemm_peers.rs` and `BENCHMARKS.md`.
#![deny(missing_docs)]
