//! Matrix products: `mm`, `addmm`, `mv`, `addmv`, `bmm`. `f32` runs on the
//! kernels' SGEMM (any backend, the engine's threads); `f64` on a plain loop.

use bigdl_kernels::gemm::{Gemm, Transpose};

use crate::element::Float;
use crate::error::{Result, TensorError, invalid};
use crate::math::lock_first;
use crate::tensor::Tensor;

/// One operand of a product: a 2-d row-major-or-transposed view of a slice.
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    /// `false`: element (i, j) at `i * ld + j`; `true`: at `i + j * ld`.
    trans: bool,
    ld: usize,
}

/// Elements that matrix products are defined for.
pub trait Linalg: Float {
    /// `c (m x n, row-major) = alpha * a * b + beta * c` (`beta = 0`: `c` not read).
    #[doc(hidden)]
    fn gemm_into(
        alpha: Self,
        a: &MatRef<'_, Self>,
        b: &MatRef<'_, Self>,
        beta: Self,
        c: &mut [Self],
    ) -> Result<()>;
}

impl Linalg for f32 {
    fn gemm_into(
        alpha: f32,
        a: &MatRef<'_, f32>,
        b: &MatRef<'_, f32>,
        beta: f32,
        c: &mut [f32],
    ) -> Result<()> {
        Gemm::new(a.rows, b.cols, a.cols)
            .trans_a(Transpose::from_bool(a.trans))
            .trans_b(Transpose::from_bool(b.trans))
            .lda(a.ld)
            .ldb(b.ld)
            .alpha(alpha)
            .beta(beta)
            .run(a.data, b.data, c)?;
        Ok(())
    }
}

impl Linalg for f64 {
    fn gemm_into(
        alpha: f64,
        a: &MatRef<'_, f64>,
        b: &MatRef<'_, f64>,
        beta: f64,
        c: &mut [f64],
    ) -> Result<()> {
        let at = |m: &MatRef<'_, f64>, i: usize, j: usize| {
            if m.trans {
                m.data[i + j * m.ld]
            } else {
                m.data[i * m.ld + j]
            }
        };
        let (m, n, k) = (a.rows, b.cols, a.cols);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += at(a, i, p) * at(b, p, j);
                }
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta * c[i * n + j]
                };
                c[i * n + j] = alpha * s + old;
            }
        }
        Ok(())
    }
}

impl<T: Linalg> Tensor<T> {
    /// Runs `f` with a [`MatRef`] of this 2-d tensor (copied first if its strides
    /// are not row- or column-major).
    fn with_matrix<R>(&self, f: impl FnOnce(&MatRef<'_, T>) -> Result<R>) -> Result<R> {
        let (rows, cols) = (self.sizes[0], self.sizes[1]);
        let (rs, cs) = (self.strides[0], self.strides[1]);
        let layout = if cs == 1 && (rows <= 1 || rs >= cols) {
            Some((false, if rows <= 1 { cols.max(1) } else { rs }))
        } else if rs == 1 && (cols <= 1 || cs >= rows) {
            Some((true, if cols <= 1 { rows.max(1) } else { cs }))
        } else {
            None
        };
        match layout {
            Some((trans, ld)) => {
                let data = self.read();
                f(&MatRef {
                    data: &data[self.offset..],
                    rows,
                    cols,
                    trans,
                    ld,
                })
            }
            None => self.deep_clone().with_matrix(f),
        }
    }

    fn check_mm(op: &'static str, a: &Tensor<T>, b: &Tensor<T>) -> Result<(usize, usize, usize)> {
        if a.dim() != 2 || b.dim() != 2 || a.sizes[1] != b.sizes[0] {
            return Err(TensorError::ShapeMismatch {
                op,
                lhs: a.sizes.clone(),
                rhs: b.sizes.clone(),
            });
        }
        Ok((a.sizes[0], b.sizes[1], a.sizes[1]))
    }

    /// `alpha * a * b + beta * c0` into a new row-major `m x n` buffer.
    fn product(
        op: &'static str,
        a: &Tensor<T>,
        b: &Tensor<T>,
        alpha: T,
        beta: T,
        c0: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>> {
        let (m, n, _) = Self::check_mm(op, a, b)?;
        let mut c = match c0 {
            Some(c0) if beta != T::ZERO => c0.to_vec(),
            _ => vec![T::ZERO; m * n],
        };
        // One read lock per storage, taken in the global order (see `zip_inplace`).
        let copy;
        let b = if a.shares_storage(b) {
            copy = b.deep_clone();
            &copy
        } else {
            b
        };
        let mut run =
            |am: &MatRef<'_, T>, bm: &MatRef<'_, T>| T::gemm_into(alpha, am, bm, beta, &mut c);
        if lock_first(a, b) {
            a.with_matrix(|am| b.with_matrix(|bm| run(am, bm)))?;
        } else {
            b.with_matrix(|bm| a.with_matrix(|am| run(am, bm)))?;
        }
        Tensor::from_vec(c, &[m, n])
    }

    /// Matrix product of two 2-d tensors.
    pub fn mm(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        Self::product("mm", self, other, T::ONE, T::ZERO, None)
    }

    /// In place: `self = beta * self + alpha * a * b` (`self` is `m x n`).
    pub fn addmm_(&self, beta: T, alpha: T, a: &Tensor<T>, b: &Tensor<T>) -> Result<()> {
        let (m, n, _) = Self::check_mm("addmm_", a, b)?;
        if self.sizes != [m, n] {
            return Err(TensorError::ShapeMismatch {
                op: "addmm_",
                lhs: self.sizes.clone(),
                rhs: vec![m, n],
            });
        }
        // Computed into a fresh buffer, so `self` may alias `a` or `b`.
        let r = Self::product("addmm_", a, b, alpha, beta, Some(self))?;
        self.copy_from(&r)
    }

    /// Matrix-vector product: `self` (`m x k`) times `x` (`k`).
    pub fn mv(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        if x.dim() != 1 {
            return Err(invalid("mv", format!("x must be 1-d, got {:?}", x.sizes)));
        }
        let r = self.mm(&x.unsqueeze(1)?)?;
        r.select(1, 0)
    }

    /// In place: `self = beta * self + alpha * a * x` (`self` is `m`).
    pub fn addmv_(&self, beta: T, alpha: T, a: &Tensor<T>, x: &Tensor<T>) -> Result<()> {
        if x.dim() != 1 || self.dim() != 1 {
            return Err(TensorError::ShapeMismatch {
                op: "addmv_",
                lhs: self.sizes.clone(),
                rhs: x.sizes.clone(),
            });
        }
        self.unsqueeze(1)?.addmm_(beta, alpha, a, &x.unsqueeze(1)?)
    }

    /// Batched product: `self` (`b x m x k`) times `other` (`b x k x n`).
    pub fn bmm(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        if self.dim() != 3 || other.dim() != 3 || self.sizes[0] != other.sizes[0] {
            return Err(TensorError::ShapeMismatch {
                op: "bmm",
                lhs: self.sizes.clone(),
                rhs: other.sizes.clone(),
            });
        }
        let (batch, m, n) = (self.sizes[0], self.sizes[1], other.sizes[2]);
        let mut out = Vec::with_capacity(batch * m * n);
        for i in 0..batch {
            out.extend(self.select(0, i)?.mm(&other.select(0, i)?)?.to_vec());
        }
        Tensor::from_vec(out, &[batch, m, n])
    }
}
