//! Reductions: along one dimension (kept, with size 1, as Torch7 does) or over
//! all elements. Float sums accumulate in `f64`.

use crate::element::{DType, Element, Float};
use crate::error::{Result, invalid};
use crate::shape::{check_dim, walk};
use crate::tensor::Tensor;

/// Sum of `values`: exact wrapping sum for `i64`, `f64` accumulation for floats.
fn sum_of<T: Element>(values: impl Iterator<Item = T>) -> T {
    if T::DTYPE == DType::I64 {
        values.fold(T::ZERO, |a, x| a.add(x))
    } else {
        T::from_f64(values.map(|x| x.to_f64()).sum())
    }
}

/// Index and value of the extreme element: the first NaN if any, else the first
/// element for which `better(candidate, best)` never held.
fn extreme<T: Element>(
    values: impl Iterator<Item = T>,
    better: impl Fn(T, T) -> bool,
) -> Option<(usize, T)> {
    let mut best: Option<(usize, T)> = None;
    for (i, x) in values.enumerate() {
        match best {
            None => best = Some((i, x)),
            Some((_, b)) if b.is_nan() => {}
            Some(_) if x.is_nan() => best = Some((i, x)),
            Some((_, b)) if better(x, b) => best = Some((i, x)),
            _ => {}
        }
    }
    best
}

impl<T: Element> Tensor<T> {
    /// For each position of the other dimensions, `f` of the values along `dim`;
    /// the result keeps `dim` with size 1.
    fn along<U: Element>(
        &self,
        op: &'static str,
        dim: usize,
        mut f: impl FnMut(&mut dyn Iterator<Item = T>) -> Result<U>,
    ) -> Result<Tensor<U>> {
        check_dim(op, dim, self.dim())?;
        let mut out_sizes = self.sizes.clone();
        out_sizes[dim] = 1;
        let (len, stride) = (self.sizes[dim], self.strides[dim]);
        let data = self.read();
        let mut out = Vec::new();
        let mut err = None;
        walk(&out_sizes, [&self.strides], [self.offset], |[o]| {
            if err.is_none() {
                let mut it = (0..len).map(|i| data[o + i * stride]);
                match f(&mut it) {
                    Ok(v) => out.push(v),
                    Err(e) => err = Some(e),
                }
            }
        });
        drop(data);
        match err {
            Some(e) => Err(e),
            None => Tensor::from_vec(out, &out_sizes),
        }
    }

    /// Sum along `dim`.
    pub fn sum(&self, dim: usize) -> Result<Tensor<T>> {
        self.along("sum", dim, |it| Ok(sum_of(it)))
    }

    /// Maximum along `dim` and its index (the first NaN if any; ties: the first).
    pub fn max(&self, dim: usize) -> Result<(Tensor<T>, Tensor<i64>)> {
        self.extreme_along("max", dim, |a, b| a > b)
    }

    /// Minimum along `dim` and its index (the first NaN if any; ties: the first).
    pub fn min(&self, dim: usize) -> Result<(Tensor<T>, Tensor<i64>)> {
        self.extreme_along("min", dim, |a, b| a < b)
    }

    /// Index of the maximum along `dim`.
    pub fn argmax(&self, dim: usize) -> Result<Tensor<i64>> {
        Ok(self.max(dim)?.1)
    }

    fn extreme_along(
        &self,
        op: &'static str,
        dim: usize,
        better: impl Fn(T, T) -> bool + Copy,
    ) -> Result<(Tensor<T>, Tensor<i64>)> {
        let empty = || invalid(op, format!("dimension {dim} is empty"));
        // Two passes: values and indices have different element types.
        let values = self.along(op, dim, |it| Ok(extreme(it, better).ok_or_else(empty)?.1))?;
        let indices = self.along(op, dim, |it| {
            Ok(extreme(it, better).ok_or_else(empty)?.0 as i64)
        })?;
        Ok((values, indices))
    }

    /// Sum of all elements.
    pub fn sum_all(&self) -> T {
        sum_of(self.to_vec().into_iter())
    }

    /// Largest element (the first NaN if any); an error if empty.
    pub fn max_all(&self) -> Result<T> {
        extreme(self.to_vec().into_iter(), |a, b| a > b)
            .map(|(_, v)| v)
            .ok_or_else(|| invalid("max_all", "empty tensor"))
    }

    /// Smallest element (the first NaN if any); an error if empty.
    pub fn min_all(&self) -> Result<T> {
        extreme(self.to_vec().into_iter(), |a, b| a < b)
            .map(|(_, v)| v)
            .ok_or_else(|| invalid("min_all", "empty tensor"))
    }
}

impl<T: Float> Tensor<T> {
    /// Mean along `dim` (NaN for an empty dimension).
    pub fn mean(&self, dim: usize) -> Result<Tensor<T>> {
        let n = self.size(dim)? as f64;
        self.along("mean", dim, |it| {
            Ok(T::from_f64(it.map(|x| x.to_f64()).sum::<f64>() / n))
        })
    }

    /// Mean of all elements (NaN if empty).
    pub fn mean_all(&self) -> T {
        T::from_f64(self.sum_all().to_f64() / self.numel() as f64)
    }
}
