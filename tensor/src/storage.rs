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
}

impl<T: Element> Deref for Storage<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped { map, offset, len } => map
                .slice(*offset, *len)
                .expect("from_mapping checked the region"),
        }
    }
}

impl<T: Element> DerefMut for Storage<T> {
    /// Writing to mapped elements first copies them into memory of their own.
    fn deref_mut(&mut self) -> &mut [T] {
        if let Storage::Mapped { .. } = self {
            *self = Storage::Owned(self.deref().to_vec());
        }
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped { .. } => unreachable!("just copied"),
        }
    }
}
