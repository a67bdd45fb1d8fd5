//! # bigdl-nn
//!
//! Torch7-style neural networks over [`bigdl_tensor`]: the [`Module`]
//! contract (`forward`, `backward` = `update_grad_input` +
//! `acc_grad_parameters`, parameters, training/evaluation mode), layers,
//! containers, criterions and optimizers.
//!
//! All parameters of a model can be moved into one weight buffer and one
//! gradient buffer ([`compact`]), so an optimizer (or an all-reduce) works on
//! one flat slice; [`replicate`] makes a copy for another thread that shares
//! the weights and has its own gradients (BigDL's model replica per core).
//!
//! ```
//! use bigdl_nn::layers::{Linear, LogSoftMax, Tanh};
//! use bigdl_nn::{Activity, ClassNLLCriterion, Criterion, Module, OptimMethod, Sequential, Sgd, compact};
//! use bigdl_tensor::Tensor;
//!
//! # fn main() -> Result<(), bigdl_nn::NnError> {
//! let mut model = Sequential::new()
//!     .add(Linear::new(4, 8)?)
//!     .add(Tanh::new())
//!     .add(Linear::new(8, 3)?)
//!     .add(LogSoftMax::new());
//! let flat = compact(&mut model)?;
//! let x: Activity = Tensor::<f32>::ones(&[2, 4])?.into();
//! let target: Activity = Tensor::from_vec(vec![0.0f32, 2.0], &[2])?.into();
//! let mut loss = ClassNLLCriterion::new();
//! let mut sgd = Sgd::new(0.1);
//!
//! model.zero_grad_parameters();
//! let y = model.forward(&x)?;
//! let before = loss.forward(&y, &target)?;
//! model.backward(&x, &loss.backward(&y, &target)?)?;
//! sgd.step(&mut flat.weight.as_slice_mut()?, &flat.grad.as_slice()?)?;
//! let after = loss.forward(&model.forward(&x)?, &target)?;
//! assert!(after < before);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// The README's examples (GEMM, tensors, nn), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

mod activity;
mod criterion;
pub mod data;
mod error;
mod graph;
pub mod io;
pub mod layers;
pub mod models;
mod module;
mod optim;
mod sequential;
mod table;
pub mod train;

pub use activity::Activity;
pub use criterion::{
    AbsCriterion, BCECriterion, ClassNLLCriterion, CosineEmbeddingCriterion, Criterion,
    CrossEntropyCriterion, MSECriterion, MarginCriterion, MultiCriterion, ParallelCriterion,
    SmoothL1Criterion, TimeDistributedCriterion,
};
pub use error::{NnError, Result};
pub use graph::{Graph, GraphBuilder, Node};
pub use module::{
    FlatParameters, FusionRole, Module, StateMut, compact, compact_onto, manual_seed, replicate,
};
pub use optim::{
    Adadelta, Adagrad, Adam, Adamax, OptimMethod, OptimState, RmsProp, Schedule, Sgd,
    clip_by_l2_norm, clip_by_value,
};
pub use sequential::Sequential;
pub use table::{
    CAddTable, CMaxTable, CMulTable, Concat, ConcatTable, Constant, Identity, JoinTable,
    ParallelTable, SelectTable, SplitTable,
};
