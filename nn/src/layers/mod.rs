//! Layers.

mod activation;
mod conv;
mod embedding;
mod full_conv;
mod learnable;
mod linear;
mod norm;
mod pointwise;
mod pooling;
mod recurrent;
mod reshape;
mod shape;

pub use activation::{LogSoftMax, ReLU, Sigmoid, SoftMax, SoftMin, Tanh};
pub use conv::SpatialConvolution;
pub use embedding::LookupTable;
pub use full_conv::SpatialFullConvolution;
pub use learnable::{CAdd, CMul, PReLU, Scale};
pub use linear::Linear;
pub use norm::{BatchNormalization, Dropout, SpatialCrossMapLRN};
pub use pointwise::{
    Abs, AddConstant, ELU, Exp, HardTanh, LeakyReLU, Log, MulConstant, Power, ReLU6, SoftPlus,
    Sqrt, Square, Threshold,
};
pub use pooling::{SpatialAveragePooling, SpatialMaxPooling};
pub use recurrent::{BiRecurrent, Cell, CellKind, Recurrent, TimeDistributed};
pub use reshape::Reshape;
pub use shape::{
    Contiguous, Flatten, Max, Mean, Narrow, Padding, Reverse, SamePadding, Select,
    SpatialZeroPadding, Squeeze, Sum, Transpose, Unsqueeze, View,
};
