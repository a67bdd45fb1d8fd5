//! Views: new sizes and strides over the same storage, no copies.

use crate::element::Element;
use crate::error::{Result, TensorError, invalid};
use crate::shape::{check_dim, numel, view_strides};
use crate::tensor::Tensor;

impl<T: Element> Tensor<T> {
    /// Elements `start..start+len` of dimension `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor<T>> {
        check_dim("narrow", dim, self.dim())?;
        let end = start.checked_add(len).filter(|&e| e <= self.sizes[dim]);
        let Some(_) = end else {
            return Err(TensorError::IndexOutOfRange {
                op: "narrow",
                dim,
                index: start.saturating_add(len),
                size: self.sizes[dim],
            });
        };
        let mut sizes = self.sizes.clone();
        sizes[dim] = len;
        let offset = if len == 0 {
            self.offset
        } else {
            self.offset + start * self.strides[dim]
        };
        Ok(self.restride(offset, sizes, self.strides.clone()))
    }

    /// The slice at `index` of dimension `dim`, which is removed.
    pub fn select(&self, dim: usize, index: usize) -> Result<Tensor<T>> {
        check_dim("select", dim, self.dim())?;
        if index >= self.sizes[dim] {
            return Err(TensorError::IndexOutOfRange {
                op: "select",
                dim,
                index,
                size: self.sizes[dim],
            });
        }
        let mut sizes = self.sizes.clone();
        let mut strides = self.strides.clone();
        sizes.remove(dim);
        strides.remove(dim);
        Ok(self.restride(self.offset + index * self.strides[dim], sizes, strides))
    }

    /// Dimensions `d0` and `d1` swapped.
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor<T>> {
        check_dim("transpose", d0, self.dim())?;
        check_dim("transpose", d1, self.dim())?;
        let (mut sizes, mut strides) = (self.sizes.clone(), self.strides.clone());
        sizes.swap(d0, d1);
        strides.swap(d0, d1);
        Ok(self.restride(self.offset, sizes, strides))
    }

    /// The transpose of a 2-d tensor.
    pub fn t(&self) -> Result<Tensor<T>> {
        if self.dim() != 2 {
            return Err(invalid(
                "t",
                format!("needs a 2-d tensor, got {:?}", self.sizes),
            ));
        }
        self.transpose(0, 1)
    }

    /// Dimensions reordered: dimension `i` of the result is `dims[i]` of `self`.
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor<T>> {
        let mut seen = vec![false; self.dim()];
        if dims.len() != self.dim()
            || dims
                .iter()
                .any(|&d| d >= self.dim() || std::mem::replace(&mut seen[d], true))
        {
            return Err(invalid(
                "permute",
                format!(
                    "{dims:?} is not a permutation of the {} dimensions",
                    self.dim()
                ),
            ));
        }
        let sizes = dims.iter().map(|&d| self.sizes[d]).collect();
        let strides = dims.iter().map(|&d| self.strides[d]).collect();
        Ok(self.restride(self.offset, sizes, strides))
    }

    /// The same elements with new sizes, sharing storage. An error if the
    /// element counts differ or the layout cannot be viewed that way (then use
    /// [`Tensor::reshape`], which copies).
    pub fn view(&self, sizes: &[usize]) -> Result<Tensor<T>> {
        self.check_same_numel("view", sizes)?;
        let strides = view_strides(&self.sizes, &self.strides, sizes).ok_or_else(|| {
            invalid(
                "view",
                format!(
                    "sizes {:?} with strides {:?} cannot be viewed as {sizes:?} without a copy; \
                     use reshape or contiguous",
                    self.sizes, self.strides
                ),
            )
        })?;
        Ok(self.restride(self.offset, sizes.to_vec(), strides))
    }

    /// Like [`Tensor::view`] when the layout allows, else a contiguous copy. The
    /// returned flag says which: `true` = a view sharing storage, `false` = a copy.
    pub fn reshape(&self, sizes: &[usize]) -> Result<(Tensor<T>, bool)> {
        self.check_same_numel("reshape", sizes)?;
        match view_strides(&self.sizes, &self.strides, sizes) {
            Some(strides) => Ok((self.restride(self.offset, sizes.to_vec(), strides), true)),
            None => Ok((self.deep_clone().view(sizes)?, false)),
        }
    }

    fn check_same_numel(&self, op: &'static str, sizes: &[usize]) -> Result<()> {
        if numel(op, sizes)? != self.numel() {
            return Err(TensorError::ShapeMismatch {
                op,
                lhs: self.sizes.clone(),
                rhs: sizes.to_vec(),
            });
        }
        Ok(())
    }

    /// All windows of `size` elements, `step` apart, along `dim`: dimension `dim`
    /// becomes the window count and a new last dimension of `size` is added.
    pub fn unfold(&self, dim: usize, size: usize, step: usize) -> Result<Tensor<T>> {
        check_dim("unfold", dim, self.dim())?;
        if size > self.sizes[dim] || step == 0 {
            return Err(invalid(
                "unfold",
                format!(
                    "window {size} step {step} on dimension {dim} of size {}",
                    self.sizes[dim]
                ),
            ));
        }
        let (mut sizes, mut strides) = (self.sizes.clone(), self.strides.clone());
        sizes[dim] = (self.sizes[dim] - size) / step + 1;
        strides[dim] = self.strides[dim] * step;
        sizes.push(size);
        strides.push(self.strides[dim]);
        Ok(self.restride(self.offset, sizes, strides))
    }

    /// Size-1 dimensions repeated (stride 0) to `sizes`; new leading dimensions
    /// may be added. No copy: writes through the result hit shared elements.
    pub fn expand(&self, sizes: &[usize]) -> Result<Tensor<T>> {
        let lead =
            sizes
                .len()
                .checked_sub(self.dim())
                .ok_or_else(|| TensorError::ShapeMismatch {
                    op: "expand",
                    lhs: self.sizes.clone(),
                    rhs: sizes.to_vec(),
                })?;
        let mut strides = vec![0; sizes.len()];
        for d in 0..self.dim() {
            let (from, to) = (self.sizes[d], sizes[lead + d]);
            strides[lead + d] = if from == to {
                self.strides[d]
            } else if from == 1 {
                0
            } else {
                return Err(TensorError::ShapeMismatch {
                    op: "expand",
                    lhs: self.sizes.clone(),
                    rhs: sizes.to_vec(),
                });
            };
        }
        numel("expand", sizes)?;
        Ok(self.restride(self.offset, sizes.to_vec(), strides))
    }

    /// All size-1 dimensions removed.
    pub fn squeeze(&self) -> Tensor<T> {
        let keep: Vec<usize> = (0..self.dim()).filter(|&d| self.sizes[d] != 1).collect();
        self.restride(
            self.offset,
            keep.iter().map(|&d| self.sizes[d]).collect(),
            keep.iter().map(|&d| self.strides[d]).collect(),
        )
    }

    /// Dimension `dim` removed if its size is 1 (else unchanged).
    pub fn squeeze_dim(&self, dim: usize) -> Result<Tensor<T>> {
        check_dim("squeeze_dim", dim, self.dim())?;
        if self.sizes[dim] != 1 {
            return Ok(self.clone());
        }
        self.select(dim, 0)
    }

    /// A size-1 dimension inserted at `dim` (`0..=dim()`).
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor<T>> {
        check_dim("unsqueeze", dim, self.dim() + 1)?;
        let (mut sizes, mut strides) = (self.sizes.clone(), self.strides.clone());
        let stride = if dim < self.dim() {
            self.strides[dim] * self.sizes[dim]
        } else {
            1
        };
        sizes.insert(dim, 1);
        strides.insert(dim, stride);
        Ok(self.restride(self.offset, sizes, strides))
    }

    /// The tensors joined along `dim` (all other sizes equal) into a new
    /// contiguous tensor.
    pub fn cat(tensors: &[&Tensor<T>], dim: usize) -> Result<Tensor<T>> {
        const OP: &str = "cat";
        let first = tensors
            .first()
            .ok_or_else(|| invalid(OP, "no tensors to join"))?;
        check_dim(OP, dim, first.dim())?;
        let mut sizes = first.sizes.clone();
        sizes[dim] = 0;
        for t in tensors {
            let same_rank = t.dim() == first.dim();
            let others_equal =
                same_rank && (0..t.dim()).all(|d| d == dim || t.sizes[d] == first.sizes[d]);
            if !others_equal {
                return Err(TensorError::ShapeMismatch {
                    op: OP,
                    lhs: first.sizes.clone(),
                    rhs: t.sizes.clone(),
                });
            }
            sizes[dim] += t.sizes[dim];
        }
        let out = Tensor::zeros(&sizes)?;
        let mut at = 0;
        for t in tensors {
            out.narrow(dim, at, t.sizes[dim])?.copy_from(t)?;
            at += t.sizes[dim];
        }
        Ok(out)
    }
}
