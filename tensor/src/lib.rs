//! # bigdl-tensor
//!
//! Will hold `Tensor<T>`: reference-counted storage plus offset, sizes and strides
//! with Torch7 semantics (0-based), views that share storage (`narrow`, `select`,
//! `transpose`, `view`, `unfold`, `expand`), and math that calls
//! [`bigdl_kernels`]. Nothing is implemented yet; see the project's tensor issue.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use bigdl_kernels as kernels;
