//! What a tensor's elements live in: a vector of its own, or a region of a
//! read-only memory-mapped file, copied into a vector of its own the first
//! time anything writes to it (copy-on-write).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

pub use bigdl_kernels::memory::Mapping;

use crate::element::Element;

/// The elements behind a tensor's lock, with a count of write accesses.
pub(crate) struct Storage<T> {
    elements: Elements<T>,
    /// Incremented by every mutable access ([`DerefMut`]): the only way
    /// anything writes to the elements.
    version: u64,
}

/// Where a storage's elements are.
pub(crate) enum Elements<T> {
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

impl<T> Storage<T> {
    pub(crate) fn new(elements: Elements<T>) -> Storage<T> {
        Storage {
            elements,
            version: 0,
        }
    }

    pub(crate) fn elements(&self) -> &Elements<T> {
        &self.elements
    }

    pub(crate) fn into_elements(self) -> Elements<T> {
        self.elements
    }

    /// How many times the elements were accessed mutably (wrapping).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }
}

impl<T: Element> Deref for Storage<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.elements {
            Elements::Owned(v) => v,
            Elements::Shared(v) => v,
            Elements::Mapped { map, offset, len } => map
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
        self.version = self.version.wrapping_add(1);
        if !matches!(self.elements, Elements::Owned(_)) {
            let own = match std::mem::replace(&mut self.elements, Elements::Owned(Vec::new())) {
                Elements::Shared(v) => Arc::try_unwrap(v).unwrap_or_else(|v| v.to_vec()),
                Elements::Mapped { map, offset, len } => map
                    .slice(offset, len)
                    .expect("from_mapping checked the region")
                    .to_vec(),
                Elements::Owned(v) => v,
            };
            self.elements = Elements::Owned(own);
        }
        match &mut self.elements {
            Elements::Owned(v) => v,
            _ => unreachable!("just made owned"),
        }
    }
}
