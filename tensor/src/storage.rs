//! What a tensor's elements live in: a vector of its own, or a region of a
//! read-only memory-mapped file, copied into a vector of its own the first
//! time anything writes to it (copy-on-write).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

pub use bigdl_kernels::memory::Mapping;

use crate::element::Element;

/// The elements behind a tensor's lock.
pub(crate) enum Storage<T> {
    /// Elements in memory of their own.
    Owned(Vec<T>),
    /// `len` elements of `map` from byte `offset` (little-endian, aligned:
    /// checked by [`crate::Tensor::from_mapping`]).
    Mapped {
        map: Arc<Mapping>,
        offset: usize,
        len: usize,
    },
    /// Elements also held elsewhere (see [`crate::Tensor::from_shared`]).
    Shared(Arc<Vec<T>>),
}

impl<T: Element> Deref for Storage<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Storage::Owned(v) => v,
            Storage::Shared(v) => v,
            Storage::Mapped { map, offset, len } => map
                .slice(*offset, *len)
                .expect("from_mapping checked the region"),
        }
    }
}

impl<T: Element> DerefMut for Storage<T> {
    /// Writing to mapped elements first copies them into memory of their
    /// own; shared elements are taken over when no one else holds them any
    /// more, else copied.
    fn deref_mut(&mut self) -> &mut [T] {
        if !matches!(self, Storage::Owned(_)) {
            let own = match std::mem::replace(self, Storage::Owned(Vec::new())) {
                Storage::Shared(v) => Arc::try_unwrap(v).unwrap_or_else(|v| v.to_vec()),
                other => other.to_vec(),
            };
            *self = Storage::Owned(own);
        }
        match self {
            Storage::Owned(v) => v,
            _ => unreachable!("just made owned"),
        }
    }
}
