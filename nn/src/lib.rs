//! # bigdl-nn
//!
//! Will hold the Torch7-style `Module` contract (`forward`, `backward`,
//! `parameters`), layers, criterions, containers, optimizers over flat parameter
//! buffers, data pipelines, the local and distributed optimizers, and model I/O
//! (native format, Caffe, Torch7, ONNX). Nothing is implemented yet; see the
//! project's nn, training and model-file issues.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
