//! # bigdl-jni
//!
//! Will become a `cdylib` exporting a small C-ABI surface to the JVM (build or
//! load a model, run a training step on a direct `ByteBuffer`, expose gradient and
//! weight shards), with every entry point turning errors and panics into Java
//! exceptions. Nothing is implemented yet; see the Spark issue.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
