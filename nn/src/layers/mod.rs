//! Layers.

mod activation;
mod conv;
mod linear;
mod pooling;
mod reshape;

pub use activation::{LogSoftMax, ReLU, Sigmoid, SoftMax, Tanh};
pub use conv::SpatialConvolution;
pub use linear::Linear;
pub use pooling::{SpatialAveragePooling, SpatialMaxPooling};
pub use reshape::Reshape;
