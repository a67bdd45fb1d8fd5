//! # bigdl-tensor
//!
//! `Tensor<T>` for `f32`, `f64` and `i64`: reference-counted storage plus an
//! offset, sizes and strides, with Torch7's semantics (0-based indices).
//!
//! - Views share storage: [`Tensor::narrow`], [`Tensor::select`],
//!   [`Tensor::transpose`], [`Tensor::permute`], [`Tensor::view`],
//!   [`Tensor::unfold`], [`Tensor::expand`], [`Tensor::squeeze`],
//!   [`Tensor::unsqueeze`]. [`Tensor::reshape`] views when it can and copies when
//!   it must, and says which. [`Tensor::contiguous`] copies only when needed.
//! - Math: element-wise operations with broadcasting (`add`, `sub`, `cmul`,
//!   `cdiv`), scalar operations, unary functions, each with an in-place form
//!   ending in `_`; reductions along a dimension (kept with size 1, as Torch7
//!   does); matrix products through the kernels' SGEMM ([`Tensor::mm`]).
//! - Random tensors from a seeded, counter-based [`Generator`]: the same seed
//!   gives the same values on every run and thread count.
//! - `.npy` files in and out ([`Tensor::read_npy`], [`Tensor::write_npy`]), and
//!   a compact, versioned, checksummed binary encoding ([`Tensor::encode`],
//!   [`Tensor::decode`]) for model files.
//!
//! Layout: strides count elements; a contiguous tensor is row-major (C order).
//! Every user-reachable error is a [`TensorError`] naming the operation and the
//! shapes; nothing panics on bad input.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod codec;
mod element;
mod error;
mod linalg;
mod math;
mod npy;
mod random;
mod reduce;
mod shape;
mod storage;
mod tensor;
mod view;

pub use bigdl_kernels as kernels;
pub use codec::crc32;
pub use element::{DType, Element, Float};
pub use error::{Result, TensorError};
pub use linalg::{Linalg, MatRef};
pub use random::Generator;
pub use storage::Mapping;
pub use tensor::{SliceMut, SliceRef, Tensor};
