//! `Tensor<T>`: shared storage, offset, sizes, strides.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::element::Element;
use crate::error::{Result, TensorError, invalid};
use crate::shape::{contiguous_strides, numel, walk};
use crate::storage::{Elements, Mapping, Storage};

/// A strided view of shared storage, with Torch7 semantics (0-based indices).
///
/// Views (`narrow`, `select`, `transpose`, `view`, ...) share the storage of the
/// tensor they come from: writing through one is seen through all. `Clone` is
/// such a view of the whole tensor (cheap); [`Tensor::deep_clone`] copies.
/// Element access and in-place operations take `&self`: the storage is behind a
/// lock, so tensors can be shared between threads.
pub struct Tensor<T: Element> {
    pub(crate) storage: Arc<RwLock<Storage<T>>>,
    pub(crate) offset: usize,
    pub(crate) sizes: Vec<usize>,
    pub(crate) strides: Vec<usize>,
}

impl<T: Element> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor {
            storage: Arc::clone(&self.storage),
            offset: self.offset,
            sizes: self.sizes.clone(),
            strides: self.strides.clone(),
        }
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.to_vec();
        let shown = &data[..data.len().min(16)];
        write!(f, "Tensor<{:?}>{:?} {:?}", T::DTYPE, self.sizes, shown)?;
        if data.len() > shown.len() {
            write!(f, " ... ({} elements)", data.len())?;
        }
        Ok(())
    }
}

impl<T: Element> Tensor<T> {
    /// A contiguous tensor of `sizes` holding `data` in row-major order.
    pub fn from_vec(data: Vec<T>, sizes: &[usize]) -> Result<Tensor<T>> {
        Tensor::whole("from_vec", data.len(), Elements::Owned(data), sizes)
    }

    /// A contiguous tensor of `sizes` over `data` without copying it, while
    /// others may hold it too: the first write to the tensor (or any view of
    /// it) takes the values over if no one else holds them by then, and
    /// copies them otherwise, so writes never show through `data`. Model
    /// importers hand the values they parsed to the layers this way.
    pub fn from_shared(data: Arc<Vec<T>>, sizes: &[usize]) -> Result<Tensor<T>> {
        Tensor::whole("from_shared", data.len(), Elements::Shared(data), sizes)
    }

    /// A contiguous tensor of `sizes` over all `len` elements of `storage`.
    fn whole(
        op: &'static str,
        len: usize,
        elements: Elements<T>,
        sizes: &[usize],
    ) -> Result<Tensor<T>> {
        let n = numel(op, sizes)?;
        if len != n {
            return Err(invalid(
                op,
                format!("{len} values for shape {sizes:?} ({n} elements)"),
            ));
        }
        Ok(Tensor {
            storage: Arc::new(RwLock::new(Storage::new(elements))),
            offset: 0,
            sizes: sizes.to_vec(),
            strides: contiguous_strides(sizes),
        })
    }

    /// The elements as a vector, without copying, when this tensor alone
    /// holds its storage (no views or clones), owns it in memory (not mapped
    /// or shared) and covers all of it contiguously; `None` otherwise (the
    /// tensor is then dropped).
    pub fn into_sole_vec(self) -> Option<Vec<T>> {
        if self.offset != 0 || !self.is_contiguous() {
            return None;
        }
        let n = self.numel();
        match Arc::try_unwrap(self.storage)
            .ok()?
            .into_inner()
            .ok()?
            .into_elements()
        {
            Elements::Owned(v) if v.len() == n => Some(v),
            _ => None,
        }
    }

    /// A tensor of `sizes` filled with `value`.
    pub fn full(sizes: &[usize], value: T) -> Result<Tensor<T>> {
        let n = numel("full", sizes)?;
        Tensor::from_vec(vec![value; n], sizes)
    }

    /// Zeros.
    pub fn zeros(sizes: &[usize]) -> Result<Tensor<T>> {
        Tensor::full(sizes, T::ZERO)
    }

    /// Ones.
    pub fn ones(sizes: &[usize]) -> Result<Tensor<T>> {
        Tensor::full(sizes, T::ONE)
    }

    /// A 0-d tensor.
    pub fn scalar(value: T) -> Tensor<T> {
        Tensor::from_vec(vec![value], &[]).expect("one element for a 0-d shape")
    }

    /// `[0, 1, ..., n-1]`.
    pub fn arange(n: usize) -> Result<Tensor<T>> {
        Tensor::from_vec((0..n).map(|i| T::from_f64(i as f64)).collect(), &[n])
    }

    /// Sizes, outermost first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Strides in elements (0 along expanded dimensions).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// A contiguous tensor of `sizes` over the little-endian elements of
    /// `map` from byte `offset`, without copying them: the first write to
    /// the tensor (or any view of it) copies them into memory of its own, so
    /// the file is never modified. Errors if the region is not inside the
    /// file or not aligned for `T`, or this machine is not little-endian.
    pub fn from_mapping(map: Arc<Mapping>, offset: usize, sizes: &[usize]) -> Result<Tensor<T>> {
        let len = numel("from_mapping", sizes)?;
        if map.slice::<T>(offset, len).is_none() {
            return Err(invalid(
                "from_mapping",
                format!(
                    "{len} {:?} elements at byte {offset} of a {}-byte file: outside it, misaligned or on a big-endian machine",
                    T::DTYPE,
                    map.bytes().len()
                ),
            ));
        }
        Ok(Tensor {
            storage: Arc::new(RwLock::new(Storage::new(Elements::Mapped {
                map,
                offset,
                len,
            }))),
            offset: 0,
            sizes: sizes.to_vec(),
            strides: contiguous_strides(sizes),
        })
    }

    /// Whether the elements are still read from a mapped file (not yet
    /// written, see [`Tensor::from_mapping`]).
    pub fn is_mapped(&self) -> bool {
        matches!(self.read().elements(), Elements::Mapped { .. })
    }

    /// A count of write accesses to this tensor's storage (through this
    /// tensor or any view or clone sharing it), or `None` while one is in
    /// progress: equal values from the same storage mean equal elements.
    /// Caches derived from a tensor's values (a layer's packed weight)
    /// check it, together with [`Tensor::shares_storage`].
    pub fn version(&self) -> Option<u64> {
        self.storage.try_read().ok().map(|s| s.version())
    }

    /// Offset of the first element in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        self.sizes.len()
    }

    /// Size of dimension `d`.
    pub fn size(&self, d: usize) -> Result<usize> {
        crate::shape::check_dim("size", d, self.dim())?;
        Ok(self.sizes[d])
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }

    /// Whether the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        if self.numel() == 0 {
            return true;
        }
        let mut expected = 1;
        for d in (0..self.dim()).rev() {
            if self.sizes[d] != 1 && self.strides[d] != expected {
                return false;
            }
            expected *= self.sizes[d];
        }
        true
    }

    /// Whether `self` and `other` are views of the same storage.
    pub fn shares_storage<U: Element>(&self, other: &Tensor<U>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.storage), Arc::as_ptr(&other.storage))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Storage<T>> {
        // A panic while the lock was held cannot leave the numbers invalid.
        self.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Storage<T>> {
        self.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    fn offset_of(&self, op: &'static str, index: &[usize]) -> Result<usize> {
        if index.len() != self.dim() {
            return Err(invalid(
                op,
                format!("{} indices for a {}-d tensor", index.len(), self.dim()),
            ));
        }
        let mut off = self.offset;
        for (d, (&i, (&size, &stride))) in index
            .iter()
            .zip(self.sizes.iter().zip(&self.strides))
            .enumerate()
        {
            if i >= size {
                return Err(TensorError::IndexOutOfRange {
                    op,
                    dim: d,
                    index: i,
                    size,
                });
            }
            off += i * stride;
        }
        Ok(off)
    }

    /// Read access to the elements of a contiguous tensor, as a slice.
    ///
    /// Errors if the tensor is not contiguous (call [`Tensor::contiguous`]
    /// first) or its storage is write-locked (a [`SliceMut`] of a tensor
    /// sharing it is alive): an error, never a deadlock.
    pub fn as_slice(&self) -> Result<SliceRef<'_, T>> {
        const OP: &str = "as_slice";
        self.check_contiguous(OP)?;
        let guard = self
            .storage
            .try_read()
            .map_err(|_| TensorError::Busy { op: OP })?;
        Ok(SliceRef {
            guard,
            range: self.offset..self.offset + self.numel(),
        })
    }

    /// Write access to the elements of a contiguous tensor, as a slice.
    ///
    /// Errors if the tensor is not contiguous or its storage is locked (a
    /// [`SliceRef`] or [`SliceMut`] of a tensor sharing it is alive, e.g. when
    /// an input and an output alias): an error, never a deadlock.
    pub fn as_slice_mut(&self) -> Result<SliceMut<'_, T>> {
        const OP: &str = "as_slice_mut";
        self.check_contiguous(OP)?;
        let guard = self
            .storage
            .try_write()
            .map_err(|_| TensorError::Busy { op: OP })?;
        Ok(SliceMut {
            guard,
            range: self.offset..self.offset + self.numel(),
        })
    }

    /// Calls `f` with write access to the elements of several contiguous
    /// tensors at once, in the order given, even when they are views of one
    /// storage (e.g. a weight and a bias in a model's flat buffer): each
    /// storage is locked once. Errors if a tensor is not contiguous, two of
    /// them overlap, or a storage is locked elsewhere.
    pub fn with_disjoint_mut<R>(
        tensors: &[&Tensor<T>],
        f: impl FnOnce(&mut [&mut [T]]) -> R,
    ) -> Result<R> {
        const OP: &str = "with_disjoint_mut";
        for t in tensors {
            t.check_contiguous(OP)?;
        }
        // One lock per distinct storage, in order of first appearance.
        let mut owners: Vec<usize> = Vec::with_capacity(tensors.len());
        let mut guards: Vec<RwLockWriteGuard<'_, Storage<T>>> = Vec::new();
        let mut firsts: Vec<usize> = Vec::new();
        for (i, t) in tensors.iter().enumerate() {
            match firsts
                .iter()
                .position(|&j| Arc::ptr_eq(&tensors[j].storage, &t.storage))
            {
                Some(k) => owners.push(k),
                None => {
                    let g = t
                        .storage
                        .try_write()
                        .map_err(|_| TensorError::Busy { op: OP })?;
                    owners.push(guards.len());
                    guards.push(g);
                    firsts.push(i);
                }
            }
        }
        let mut slices: Vec<Option<&mut [T]>> = (0..tensors.len()).map(|_| None).collect();
        for (k, guard) in guards.iter_mut().enumerate() {
            // This storage's tensors by offset; split its vector between them.
            let mut mine: Vec<usize> = (0..tensors.len()).filter(|&i| owners[i] == k).collect();
            mine.sort_by_key(|&i| tensors[i].offset);
            let mut rest: &mut [T] = &mut guard[..];
            let mut at = 0;
            for i in mine {
                let (off, n) = (tensors[i].offset, tensors[i].numel());
                if off < at && n > 0 {
                    return Err(invalid(OP, "two of the tensors overlap"));
                }
                let skip = off.max(at) - at;
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
                let (mine, tail) = tail.split_at_mut(n);
                slices[i] = Some(mine);
                rest = tail;
                at = off.max(at) + n;
            }
        }
        let mut slices: Vec<&mut [T]> = slices
            .into_iter()
            .map(|s| s.expect("every tensor has a slice"))
            .collect();
        Ok(f(&mut slices))
    }

    fn check_contiguous(&self, op: &'static str) -> Result<()> {
        if self.is_contiguous() {
            Ok(())
        } else {
            Err(invalid(
                op,
                format!(
                    "tensor of shape {:?} with strides {:?} is not contiguous",
                    self.sizes, self.strides
                ),
            ))
        }
    }

    /// The element at `index` (one index per dimension).
    pub fn get(&self, index: &[usize]) -> Result<T> {
        let off = self.offset_of("get", index)?;
        Ok(self.read()[off])
    }

    /// Sets the element at `index`.
    pub fn set(&self, index: &[usize], value: T) -> Result<()> {
        let off = self.offset_of("set", index)?;
        self.write()[off] = value;
        Ok(())
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(invalid(
                "item",
                format!("shape {:?} is not one element", self.sizes),
            ));
        }
        let mut out = T::ZERO;
        self.for_each(|x| out = x);
        Ok(out)
    }

    /// Calls `f` on every element in row-major order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(T)) {
        let data = self.read();
        if self.is_contiguous() {
            data[self.offset..self.offset + self.numel()]
                .iter()
                .for_each(|&x| f(x));
        } else {
            walk(
                &self.sizes,
                [&self.strides],
                [self.offset],
                |[o]| f(data[o]),
            );
        }
    }

    /// The elements in row-major order.
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.numel());
        self.for_each(|x| out.push(x));
        out
    }

    /// A contiguous copy with its own storage.
    pub fn deep_clone(&self) -> Tensor<T> {
        Tensor::from_vec(self.to_vec(), &self.sizes).expect("same shape")
    }

    /// `self` if already contiguous (sharing storage), else a contiguous copy.
    pub fn contiguous(&self) -> Tensor<T> {
        if self.is_contiguous() {
            self.clone()
        } else {
            self.deep_clone()
        }
    }

    /// Copies `src` into `self` element by element in row-major order; the two
    /// may have any layouts but must hold the same number of elements. Safe when
    /// they overlap (the source is read first).
    pub fn copy_from(&self, src: &Tensor<T>) -> Result<()> {
        if src.numel() != self.numel() {
            return Err(TensorError::ShapeMismatch {
                op: "copy_from",
                lhs: self.sizes.clone(),
                rhs: src.sizes.clone(),
            });
        }
        let values = src.to_vec();
        let mut it = values.into_iter();
        self.map_inplace(|_| it.next().expect("same number of elements"));
        Ok(())
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        self.map_inplace(|_| value);
    }

    /// Sets every element to zero.
    pub fn zero(&self) {
        self.fill(T::ZERO);
    }

    /// Replaces every element `x` (row-major order) by `f(x)`. Expanded
    /// dimensions (stride 0) see the same element several times.
    pub(crate) fn map_inplace(&self, mut f: impl FnMut(T) -> T) {
        let mut data = self.write();
        if self.is_contiguous() {
            let n = self.numel();
            data[self.offset..self.offset + n]
                .iter_mut()
                .for_each(|x| *x = f(*x));
        } else {
            walk(&self.sizes, [&self.strides], [self.offset], |[o]| {
                data[o] = f(data[o])
            });
        }
    }

    /// A new contiguous tensor of `f(x)` for every element.
    pub(crate) fn map<U: Element>(&self, mut f: impl FnMut(T) -> U) -> Tensor<U> {
        let mut out = Vec::with_capacity(self.numel());
        self.for_each(|x| out.push(f(x)));
        Tensor::from_vec(out, &self.sizes).expect("same shape")
    }

    /// A view with new geometry over the same storage (no checks: callers
    /// guarantee every reachable offset is inside the storage).
    pub(crate) fn restride(
        &self,
        offset: usize,
        sizes: Vec<usize>,
        strides: Vec<usize>,
    ) -> Tensor<T> {
        Tensor {
            storage: Arc::clone(&self.storage),
            offset,
            sizes,
            strides,
        }
    }
}

/// The elements of a contiguous tensor, read-locked ([`Tensor::as_slice`]).
pub struct SliceRef<'a, T> {
    guard: RwLockReadGuard<'a, Storage<T>>,
    range: std::ops::Range<usize>,
}

impl<T: Element> std::ops::Deref for SliceRef<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.guard[self.range.clone()]
    }
}

/// The elements of a contiguous tensor, write-locked ([`Tensor::as_slice_mut`]).
pub struct SliceMut<'a, T> {
    guard: RwLockWriteGuard<'a, Storage<T>>,
    range: std::ops::Range<usize>,
}

impl<T: Element> std::ops::Deref for SliceMut<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.guard[self.range.clone()]
    }
}

impl<T: Element> std::ops::DerefMut for SliceMut<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.guard[self.range.clone()]
    }
}
