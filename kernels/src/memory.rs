//! Process-wide memory settings, and read-only file mappings.
//!
//! Layers allocate fresh output buffers, often of tens of megabytes. glibc's
//! `malloc` serves blocks above 128 KiB-32 MiB with `mmap` and returns them
//! with `munmap` when freed, so every such buffer is faulted in and cleared
//! by the kernel page by page, on every forward pass: a third of ResNet-50
//! inference time at batch 32 here. [`keep_freed_memory`] makes `malloc`
//! serve every block from its heap and keep freed memory for reuse.

/// Tells glibc's `malloc` never to use `mmap` for large blocks and never to
/// give freed memory back to the system (`M_MMAP_MAX = 0`,
/// `M_TRIM_THRESHOLD = max`). Peak memory stays what the program used, and
/// repeated large allocations no longer fault in fresh pages. Returns
/// whether the settings took effect (not on other C libraries or systems).
/// Call it early, before other threads allocate.
pub fn keep_freed_memory() -> bool {
    imp::keep_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::c_int;

    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_MAX: c_int = -4;

    pub fn keep_freed_memory() -> bool {
        // SAFETY: mallopt only changes malloc's tuning parameters; these two
        // are documented in mallopt(3) and valid at any time.
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory() -> bool {
        false
    }
}

/// Starts fetching the cache lines of `data` (a hint: it reads nothing
/// architecturally and never faults), for streams the hardware's
/// prefetcher does not follow.
#[inline]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: prefetching never faults; the address is inside `data`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Plain numbers: every bit pattern is a valid value, with no padding, so a
/// region of file bytes can be read as a slice of them.
///
/// # Safety
/// Implement only for types where that holds.
pub unsafe trait Plain: Copy + 'static {}
// SAFETY: IEEE floats and two's-complement integers: every bit pattern is a value.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for f64 {}
// SAFETY: as above.
unsafe impl Plain for i64 {}
// SAFETY: as above.
unsafe impl Plain for u8 {}

/// The little-endian numbers in `bytes` as a vector: one copy of the bytes
/// on a little-endian machine (no per-element conversion, no zero-fill
/// first). `None` when the length is not a multiple of the size of `T`.
pub fn le_values<T: Plain + LeBytes>(bytes: &[u8]) -> Option<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    let n = bytes.len() / size;
    if cfg!(target_endian = "big") {
        return Some(bytes.chunks_exact(size).map(T::from_le).collect());
    }
    let mut v = Vec::<T>::with_capacity(n);
    huge_pages(v.as_mut_ptr().cast::<u8>(), bytes.len());
    // SAFETY: the vector has room for `n` values, which are exactly
    // `bytes.len()` bytes; every bit pattern is a `T` (`Plain`) and this
    // machine is little-endian, so the copied bytes are the values.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
        v.set_len(n);
    }
    Some(v)
}

/// The system allocator, asking the kernel for transparent huge pages
/// (2 MiB) behind every block of 2 MiB or more: where its pages are new
/// (not yet touched), one TLB entry then covers 2 MiB of the activations
/// and scratch buffers that layers stream through, and one page fault
/// clears 2 MiB. Memory the heap hands out again keeps the pages it has.
/// Where the system's THP setting is `madvise` (Debian, Ubuntu), ResNet-50
/// inference at batch 32 runs 1-2% faster and ResNet-20 training 4-5%;
/// with `always` or `never` it changes nothing. The `bigdl` command uses
/// it; programs opt in with
///
/// ```
/// #[global_allocator]
/// static ALLOC: bigdl_kernels::memory::HugePageAlloc = bigdl_kernels::memory::HugePageAlloc;
///
/// fn main() {
///     let big = vec![0.0f32; 1 << 22]; // 16 MiB, on huge pages where new
///     assert_eq!(big.len(), 1 << 22);
/// }
/// ```
pub struct HugePageAlloc;

// SAFETY: every call is forwarded to `System` unchanged; the advice only
// changes how the kernel backs the block's whole 2 MiB pages, never their
// contents or the block's address.
unsafe impl std::alloc::GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        advised(unsafe { std::alloc::System.alloc(layout) }, layout.size())
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        advised(
            unsafe { std::alloc::System.alloc_zeroed(layout) },
            layout.size(),
        )
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        advised(
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) },
            new_size,
        )
    }
}

/// `ptr` (a block of `len` bytes, or null), after [`huge_pages`] for large blocks.
fn advised(ptr: *mut u8, len: usize) -> *mut u8 {
    if !ptr.is_null() && len >= HUGE_PAGE {
        huge_pages(ptr, len);
    }
    ptr
}

const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel for transparent huge pages (2 MiB) over the whole pages of
/// `len` bytes from `ptr` that are not yet touched: one page fault per 2 MiB
/// instead of per 4 KiB. A hint; ignored where unsupported.
fn huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: madvise only changes how the kernel backs these
            // (whole, allocated) pages; MADV_HUGEPAGE never changes contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// Numbers read from their little-endian bytes (the fallback of
/// [`le_values`] on big-endian machines).
pub trait LeBytes: Sized {
    /// The value of `b` (exactly the size of `Self`).
    fn from_le(b: &[u8]) -> Self;
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl LeBytes for $t {
            fn from_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("chunks of the type's size"))
            }
        }
    )*};
}
le_bytes!(f32, f64, i64, u8);

/// A whole file mapped read-only into memory (`mmap`, private), unmapped on
/// drop. Model files are read through it without copying their weights. The
/// file must not be truncated while it is mapped (the model saver replaces
/// files by renaming, which keeps a mapped original intact).
pub struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and never remapped: shared references to
// its bytes are sound from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `path` (an error where the OS cannot map it: callers fall back to
    /// reading the file).
    #[cfg(unix)]
    pub fn open(path: &std::path::Path) -> std::io::Result<std::sync::Arc<Mapping>> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file larger than the address space"))?;
        if len == 0 {
            return Ok(std::sync::Arc::new(Mapping {
                ptr: std::ptr::NonNull::dangling().as_ptr(),
                len: 0,
            }));
        }
        // SAFETY: a fresh private read-only mapping of an open file; the
        // result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Model files are read whole: start reading all of it from disk now
        // rather than a little ahead of each page fault. A hint: its result
        // does not matter.
        // SAFETY: advice over exactly the mapping just made.
        unsafe { libc::madvise(ptr, len, libc::MADV_WILLNEED) };
        Ok(std::sync::Arc::new(Mapping {
            ptr: ptr as *const u8,
            len,
        }))
    }

    /// Maps `path` (not on this OS: always an error).
    #[cfg(not(unix))]
    pub fn open(_path: &std::path::Path) -> std::io::Result<std::sync::Arc<Mapping>> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes from `ptr` for the mapping's life (a
        // dangling, aligned pointer when empty).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// `len` little-endian numbers from byte `offset`, when they lie inside
    /// the file, are aligned for `T` and this machine is little-endian.
    pub fn slice<T: Plain>(&self, offset: usize, len: usize) -> Option<&[T]> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        let end = offset.checked_add(bytes)?;
        if end > self.len
            || !cfg!(target_endian = "little")
            || !(self.ptr as usize + offset).is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: inside the mapping, aligned, and every bit pattern is a
        // `T` (`Plain`); the bytes live as long as `self`.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(offset).cast::<T>(), len) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.len > 0 {
            // SAFETY: the region `mmap` returned; nothing borrows from it any
            // more (borrows are tied to `&self`).
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::le_values;

    #[test]
    fn le_values_reads_little_endian_numbers() {
        let bytes: Vec<u8> = [1.5f32, -2.0, f32::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(le_values::<f32>(&bytes), Some(vec![1.5, -2.0, f32::MAX]));
        // Unaligned input is fine.
        let mut shifted = vec![0u8];
        shifted.extend(7i64.to_le_bytes());
        assert_eq!(le_values::<i64>(&shifted[1..]), Some(vec![7]));
        assert_eq!(le_values::<f32>(&bytes[..5]), None);
        assert_eq!(le_values::<i64>(&[]), Some(vec![]));
    }
}
