//! Element-wise math: binary operations with broadcasting, scalar operations,
//! and unary functions, each out of place (a new contiguous tensor) and in place
//! (methods ending in `_`).

use std::sync::{Arc, RwLockReadGuard};

use bigdl_kernels::elementwise::{Binary, Unary};

use crate::element::{Element, Float};
use crate::error::{Result, TensorError};
use crate::shape::{broadcast_shapes, broadcast_strides, numel, walk};
use crate::storage::Storage;
use crate::tensor::Tensor;

/// Whether `a`'s storage comes first in the global lock order.
pub(crate) fn lock_first<T: Element, U: Element>(a: &Tensor<T>, b: &Tensor<U>) -> bool {
    (Arc::as_ptr(&a.storage) as *const u8) < (Arc::as_ptr(&b.storage) as *const u8)
}

/// Read locks on `a` and (unless it shares `a`'s storage) `b`, taken in the
/// global order (see [`Tensor::zip_inplace`]).
fn read_pair<'a, T: Element>(
    a: &'a Tensor<T>,
    b: &'a Tensor<T>,
) -> (
    RwLockReadGuard<'a, Storage<T>>,
    Option<RwLockReadGuard<'a, Storage<T>>>,
) {
    if a.shares_storage(b) {
        (a.read(), None)
    } else if lock_first(a, b) {
        let ga = a.read();
        (ga, Some(b.read()))
    } else {
        let gb = b.read();
        (a.read(), Some(gb))
    }
}

impl<T: Element> Tensor<T> {
    /// Vectorised `self op other` for contiguous tensors of one shape, if `T` has
    /// a kernel.
    fn zip_kernel(&self, op: Binary, other: &Tensor<T>) -> Option<Tensor<T>> {
        if self.sizes != other.sizes || !self.is_contiguous() || !other.is_contiguous() {
            return None;
        }
        let n = self.numel();
        let mut out = vec![T::ZERO; n];
        let done = {
            let (da, db) = read_pair(self, other);
            let a = &da[self.offset..self.offset + n];
            let b = match &db {
                Some(db) => &db[other.offset..other.offset + n],
                None => &da[other.offset..other.offset + n],
            };
            T::kernel_binary(op, a, b, &mut out)
        };
        done.then(|| Tensor::from_vec(out, &self.sizes).expect("same shape"))
    }

    /// Vectorised `self = self op other` for contiguous tensors of one shape in
    /// different storages, if `T` has a kernel. Returns whether it ran.
    fn zip_kernel_inplace(&self, op: Binary, other: &Tensor<T>) -> bool {
        if self.sizes != other.sizes
            || !self.is_contiguous()
            || !other.is_contiguous()
            || self.shares_storage(other)
        {
            return false;
        }
        let n = self.numel();
        let (mut da, db) = if lock_first(self, other) {
            let da = self.write();
            (da, other.read())
        } else {
            let db = other.read();
            (self.write(), db)
        };
        T::kernel_binary_inplace(
            op,
            &mut da[self.offset..self.offset + n],
            &db[other.offset..other.offset + n],
        )
    }

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
        let (da, db) = read_pair(self, other);
        let db = db.as_deref().unwrap_or(&da);
        walk(&shape, [&sa, &sb], offsets, |[i, j]| {
            out.push(f(da[i], db[j]))
        });
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
    ($($name:ident, $name_:ident, $kernel:ident, $f:expr, $doc:literal;)*) => {
        impl<T: Element> Tensor<T> {
            $(
                #[doc = concat!("`", $doc, "` element-wise, with broadcasting.")]
                pub fn $name(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
                    match self.zip_kernel(Binary::$kernel, other) {
                        Some(t) => Ok(t),
                        None => self.zip_map(stringify!($name), other, $f),
                    }
                }
                #[doc = concat!("In place: `self = ", $doc, "`, `other` broadcast to `self`.")]
                pub fn $name_(&self, other: &Tensor<T>) -> Result<()> {
                    if self.zip_kernel_inplace(Binary::$kernel, other) {
                        return Ok(());
                    }
                    self.zip_inplace(stringify!($name_), other, $f)
                }
            )*
        }
    };
}

binary_ops! {
    add, add_, Add, |a: T, b: T| a.add(b), "self + other";
    sub, sub_, Sub, |a: T, b: T| a.sub(b), "self - other";
    cmul, cmul_, Mul, |a: T, b: T| a.mul(b), "self * other";
    cdiv, cdiv_, Div, |a: T, b: T| a.div(b), "self / other";
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
    /// `self - v`.
    pub fn sub_scalar(&self, v: T) -> Tensor<T> {
        self.map(|x| x.sub(v))
    }
    /// In place: `self -= v`.
    pub fn sub_scalar_(&self, v: T) {
        self.map_inplace(|x| x.sub(v))
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
    /// In place: `self /= v`.
    pub fn div_scalar_(&self, v: T) {
        self.map_inplace(|x| x.div(v))
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

impl<T: Element> Tensor<T> {
    /// `f` of every element, through the vectorised kernel `op` when `T` has one
    /// and `self` is contiguous.
    fn unary(&self, op: Unary, f: impl FnMut(T) -> T) -> Tensor<T> {
        if self.is_contiguous() {
            let n = self.numel();
            let mut out = vec![T::ZERO; n];
            let done = T::kernel_unary(op, &self.read()[self.offset..self.offset + n], &mut out);
            if done {
                return Tensor::from_vec(out, &self.sizes).expect("same shape");
            }
        }
        self.map(f)
    }

    /// In place: as [`Tensor::unary`].
    fn unary_(&self, op: Unary, f: impl FnMut(T) -> T) {
        if self.is_contiguous() {
            let n = self.numel();
            if T::kernel_unary_inplace(op, &mut self.write()[self.offset..self.offset + n]) {
                return;
            }
        }
        self.map_inplace(f)
    }
}

macro_rules! unary_ops {
    ($($name:ident, $name_:ident, $kernel:ident, $f:expr, $doc:literal;)*) => {
        impl<T: Float> Tensor<T> {
            $(
                #[doc = concat!("`", $doc, "` of every element (vectorised for contiguous `f32`).")]
                pub fn $name(&self) -> Tensor<T> {
                    self.unary(Unary::$kernel, $f)
                }
                #[doc = concat!("In place: `", $doc, "` of every element.")]
                pub fn $name_(&self) {
                    self.unary_(Unary::$kernel, $f)
                }
            )*
        }
    };
}

unary_ops! {
    abs, abs_, Abs, |x: T| x.abs(), "|x|";
    sqrt, sqrt_, Sqrt, |x: T| x.sqrt(), "sqrt(x)";
    exp, exp_, Exp, |x: T| x.exp(), "e^x";
    log, log_, Log, |x: T| x.ln(), "ln(x)";
    tanh, tanh_, Tanh, |x: T| x.tanh(), "tanh(x)";
    sigmoid, sigmoid_, Sigmoid, |x: T| T::ONE.div(T::ONE.add((T::ZERO.sub(x)).exp())), "1 / (1 + e^-x)";
    relu, relu_, Relu, |x: T| if x < T::ZERO { T::ZERO } else { x }, "max(x, 0)";
    neg, neg_, Neg, |x: T| T::ZERO.sub(x), "-x";
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
