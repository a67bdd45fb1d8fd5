//! The element types a tensor can hold.

use std::fmt::Debug;

use bigdl_kernels::elementwise::{self as ew, Binary, Unary};

/// Data type tag, as stored in files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 64-bit signed integer (indices, labels).
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
}

/// A tensor element: `f32`, `f64` or `i64`.
pub trait Element:
    Copy
    + Default
    + PartialEq
    + PartialOrd
    + Debug
    + Send
    + Sync
    + bigdl_kernels::memory::Plain
    + 'static
{
    /// The type's tag.
    const DTYPE: DType;
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Conversion from `f64` (rounds for floats, truncates toward zero for `i64`).
    fn from_f64(x: f64) -> Self;
    /// Conversion to `f64`.
    fn to_f64(self) -> f64;
    /// Little-endian bytes.
    fn to_le_bytes_vec(self, out: &mut Vec<u8>);
    /// From little-endian bytes (`bytes.len() == DTYPE.size()`).
    fn from_le_slice(bytes: &[u8]) -> Self;
    /// Whether the value is NaN (never for integers).
    fn is_nan(self) -> bool;
    /// `self + other` (wrapping for integers).
    fn add(self, other: Self) -> Self;
    /// `self - other` (wrapping for integers).
    fn sub(self, other: Self) -> Self;
    /// `self * other` (wrapping for integers).
    fn mul(self, other: Self) -> Self;
    /// `self / other` (for integers: 0 when dividing by 0, wrapping on overflow).
    fn div(self, other: Self) -> Self;

    /// `y = op(x)` with a vectorised kernel, if there is one for this type.
    #[doc(hidden)]
    fn kernel_unary(_op: Unary, _x: &[Self], _y: &mut [Self]) -> bool {
        false
    }
    /// `x = op(x)` with a vectorised kernel, if there is one for this type.
    #[doc(hidden)]
    fn kernel_unary_inplace(_op: Unary, _x: &mut [Self]) -> bool {
        false
    }
    /// `out = a op b` with a vectorised kernel, if there is one for this type.
    #[doc(hidden)]
    fn kernel_binary(_op: Binary, _a: &[Self], _b: &[Self], _out: &mut [Self]) -> bool {
        false
    }
    /// `a = a op b` with a vectorised kernel, if there is one for this type.
    #[doc(hidden)]
    fn kernel_binary_inplace(_op: Binary, _a: &mut [Self], _b: &[Self]) -> bool {
        false
    }
}

/// `Element` for a float type; `$hooks` are extra items (the vectorised-kernel
/// hooks for `f32`).
macro_rules! float_element {
    ($t:ty, $tag:ident, { $($hooks:item)* }) => {
        impl Element for $t {
            const DTYPE: DType = DType::$tag;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_le_bytes_vec(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn from_le_slice(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element width"))
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            $($hooks)*
        }
    };
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
        }
    };
}

float_element!(f32, F32, {
    fn kernel_unary(op: Unary, x: &[f32], y: &mut [f32]) -> bool {
        ew::unary(op, x, y).is_ok()
    }
    fn kernel_unary_inplace(op: Unary, x: &mut [f32]) -> bool {
        ew::unary_inplace(op, x);
        true
    }
    fn kernel_binary(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) -> bool {
        ew::binary(op, a, b, out).is_ok()
    }
    fn kernel_binary_inplace(op: Binary, a: &mut [f32], b: &[f32]) -> bool {
        ew::binary_inplace(op, a, b).is_ok()
    }
});

/// Floating-point elements: the math functions.
pub trait Float: Element {
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `self^e`.
    fn powf(self, e: Self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
}

float_element!(f64, F64, {});
float!(f32);
float!(f64);

impl Element for i64 {
    const DTYPE: DType = DType::I64;
    const ZERO: Self = 0;
    const ONE: Self = 1;
    fn from_f64(x: f64) -> Self {
        x as i64
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_le_bytes_vec(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_le_slice(bytes: &[u8]) -> Self {
        i64::from_le_bytes(bytes.try_into().expect("element width"))
    }
    fn is_nan(self) -> bool {
        false
    }
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn sub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    fn mul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    fn div(self, o: Self) -> Self {
        if o == 0 { 0 } else { self.wrapping_div(o) }
    }
}
