//! # bigdl-kernels
//!
//! The raw numeric kernels of bigdl-rs: plain functions over slices with explicit
//! shapes and strides. No tensor type lives here, and no other workspace crate is
//! a dependency.
//!
//! - [`cpu`]: instruction-set detection, once per process, and cache sizes.
//! - [`pool`]: the one process-wide thread pool every parallel kernel runs on.
//! - [`gemm`]: single-precision matrix multiply (BLIS-style native kernel, plus
//!   optional MKL and OpenBLAS backends chosen at run time).
//! - [`elementwise`]: vectorised `exp`, `log`, `tanh`, `sigmoid`, ... on slices.
//! - [`conv`]: 2-D convolution (im2col + SGEMM, direct 1x1, Winograd F(4x4, 3x3)),
//!   forward and backward.
//! - [`pool2d`]: max and average pooling, forward and backward.
//! - [`norm`]: batch normalisation, local response normalisation, dropout.
//!
//! ## Conventions
//! Matrices are described BLAS-style: row-major or column-major, a leading
//! dimension per matrix, an optional transpose per operand. Images are NCHW,
//! contiguous. Indices start at 0.
//!
//! ## Cargo features
//! - `mkl`: Intel MKL as a GEMM backend, linked statically (LP64, sequential).
//!   Needs the MKL archives at build time: `MKLROOT`, or the prefix that
//!   `ci/setup.sh` installs (`/opt/bigdl-deps/mkl`).
//! - `openblas`: OpenBLAS as a GEMM backend, loaded from `libopenblas.so.0` at
//!   run time (Debian: `libopenblas-dev`).
//!
//! ## Environment
//! - `BIGDL_MAX_ISA=avx512|avx2|scalar`: cap the SIMD level kernels dispatch on.
//! - `BIGDL_NUM_THREADS=N`, `BIGDL_PIN_THREADS=0|1`: the thread pool ([`pool`]).
//! - `BIGDL_GEMM=native|mkl|openblas`: the default GEMM backend.
//! - `BIGDL_GEMM_MC|KC|NC`: override the native GEMM's cache blocking (tuning).
//! - `BIGDL_OPENBLAS_LIB=path`: the OpenBLAS shared library to load.
#![deny(missing_docs)]

pub mod checksum;
pub mod conv;
pub mod cpu;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod memory;
pub mod norm;
pub mod pool;
pub mod pool2d;
#[cfg(target_arch = "x86_64")]
mod strided;
mod winograd;

pub use error::{KernelError, Result};
