//! Element-wise math: binary operations with broadcasting, scalar operations,
//! and unary functions, each out of place (a new contiguous tensor) and in place
//! (methods ending in `_`).

use std::sync::Arc;

use crate::element::{Element, Float};
use crate::error::{Result, TensorError};
use crate::shape::{broadcast_shapes, broadcast_strides, numel, walk};
use crate::tensor::Tensor;

/// Whether `a`'s storage comes first in the global lock order.
pub(crate) fn lock_first<T: Element, U: Element>(a: &Tensor<T>, b: &Tensor<U>) -> bool {
    (Arc::as_ptr(&a.storage) as *const u8) < (Arc::as_ptr(&b.storage) as *const u8)
}

impl<T: Element> Tensor<T> {
    /// `f(a, b)` over the broadcast shape of `self` and `other`.
    pub(crate) fn zip_map<U: Element>(
        &self,
        op: &'static str,
        other: &Tensor<T>,
        mut f: impl FnMut(T, T) -> U,
    ) -> Result<Tensor<U>> {
        let shape = broadcast_shapes(op, &self.sizes, &other.sizes)?;
        let n = numel(op, &shape)?;
        let sa = broadcast_strides(&self.sizes, &self.strides, &shape);
        let sb = broadcast_strides(&other.sizes, &other.strides, &shape);
        let mut out = Vec::with_capacity(n);
        let offsets = [self.offset, other.offset];
        if self.shares_storage(other) {
            let d = self.read();
            walk(&shape, [&sa, &sb], offsets, |[i, j]| {
                out.push(f(d[i], d[j]))
            });
        } else {
            // Two read locks, taken in the global order (see `zip_inplace`).
            let (da, db) = if lock_first(self, other) {
                let da = self.read();
                (da, other.read())
            } else {
                let db = other.read();
                (self.read(), db)
            };
            walk(&shape, [&sa, &sb], offsets, |[i, j]| {
                out.push(f(da[i], db[j]))
            });
        }
        Tensor::from_vec(out, &shape)
    }

    /// `self[i] = f(self[i], other[i])`, `other` broadcast to `self`'s shape.
    ///
    /// Locking: a thread holds at most one write lock plus one read lock, taken in
    /// the order of the storages' addresses, so concurrent in-place operations
    /// cannot deadlock. If `other` shares `self`'s storage it is copied first.
    pub(crate) fn zip_inplace(
        &self,
        op: &'static str,
        other: &Tensor<T>,
        mut f: impl FnMut(T, T) -> T,
    ) -> Result<()> {
        let shape = broadcast_shapes(op, &self.sizes, &other.sizes)?;
        if shape != self.sizes {
            return Err(TensorError::ShapeMismatch {
                op,
                lhs: self.sizes.clone(),
                rhs: other.sizes.clone(),
            });
        }
        let copy;
        let other = if self.shares_storage(other) {
            copy = other.deep_clone();
            &copy
        } else {
            other
        };
        let sb = broadcast_strides(&other.sizes, &other.strides, &shape);
        let (mut da, db) = if lock_first(self, other) {
            let da = self.write();
            (da, other.read())
        } else {
            let db = other.read();
            (self.write(), db)
        };
        walk(
            &shape,
            [&self.strides, &sb],
            [self.offset, other.offset],
            |[i, j]| da[i] = f(da[i], db[j]),
        );
        Ok(())
    }
}

macro_rules! binary_ops {
    ($($name:ident, $name_:ident, $f:expr, $doc:literal;)*) => {
        impl<T: Element> Tensor<T> {
            $(
                #[doc = concat!("`", $doc, "` element-wise, with broadcasting.")]
                pub fn $name(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
                    self.zip_map(stringify!($name), other, $f)
                }
                #[doc = concat!("In place: `self = ", $doc, "`, `other` broadcast to `self`.")]
                pub fn $name_(&self, other: &Tensor<T>) -> Result<()> {
                    self.zip_inplace(stringify!($name_), other, $f)
                }
            )*
        }
    };
}

binary_ops! {
    add, add_, |a: T, b: T| a.add(b), "self + other";
    sub, sub_, |a: T, b: T| a.sub(b), "self - other";
    cmul, cmul_, |a: T, b: T| a.mul(b), "self * other";
    cdiv, cdiv_, |a: T, b: T| a.div(b), "self / other";
}

impl<T: Element> Tensor<T> {
    /// `self + v`.
    pub fn add_scalar(&self, v: T) -> Tensor<T> {
        self.map(|x| x.add(v))
    }
    /// In place: `self += v`.
    pub fn add_scalar_(&self, v: T) {
        self.map_inplace(|x| x.add(v))
    }
    /// `self * v`.
    pub fn mul_scalar(&self, v: T) -> Tensor<T> {
        self.map(|x| x.mul(v))
    }
    /// In place: `self *= v`.
    pub fn mul_scalar_(&self, v: T) {
        self.map_inplace(|x| x.mul(v))
    }
    /// `self / v`.
    pub fn div_scalar(&self, v: T) -> Tensor<T> {
        self.map(|x| x.div(v))
    }
    /// Every element limited to `[lo, hi]` (NaN stays NaN).
    pub fn clamp(&self, lo: T, hi: T) -> Tensor<T> {
        self.map(|x| clamp(x, lo, hi))
    }
    /// In place: [`Tensor::clamp`].
    pub fn clamp_(&self, lo: T, hi: T) {
        self.map_inplace(|x| clamp(x, lo, hi))
    }
}

fn clamp<T: Element>(x: T, lo: T, hi: T) -> T {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

macro_rules! unary_ops {
    ($($name:ident, $name_:ident, $f:expr, $doc:literal;)*) => {
        impl<T: Float> Tensor<T> {
            $(
                #[doc = concat!("`", $doc, "` of every element.")]
                pub fn $name(&self) -> Tensor<T> {
                    self.map($f)
                }
                #[doc = concat!("In place: `", $doc, "` of every element.")]
                pub fn $name_(&self) {
                    self.map_inplace($f)
                }
            )*
        }
    };
}

unary_ops! {
    abs, abs_, |x: T| x.abs(), "|x|";
    sqrt, sqrt_, |x: T| x.sqrt(), "sqrt(x)";
    exp, exp_, |x: T| x.exp(), "e^x";
    log, log_, |x: T| x.ln(), "ln(x)";
    tanh, tanh_, |x: T| x.tanh(), "tanh(x)";
    sigmoid, sigmoid_, |x: T| T::ONE.div(T::ONE.add((T::ZERO.sub(x)).exp())), "1 / (1 + e^-x)";
    neg, neg_, |x: T| T::ZERO.sub(x), "-x";
}

impl<T: Float> Tensor<T> {
    /// `x^e` of every element.
    pub fn pow(&self, e: T) -> Tensor<T> {
        self.map(|x| x.powf(e))
    }
    /// In place: `x^e` of every element.
    pub fn pow_(&self, e: T) {
        self.map_inplace(|x| x.powf(e))
    }
}
