//! Micro-kernels: `C[0..m, 0..n] = alpha * (A_panel * B_panel) + beta * C`.
//!
//! Contract shared by every ISA (BLIS's, adapted):
//! - `a` is a packed `A` micro-panel: `k` steps of `MR` values (the ISA's full
//!   `mr`, even when the kernel variant computes fewer rows). `b` is a packed `B`
//!   micro-panel: `k` steps of `NR` values, 64-byte aligned, `b_ks == NR`. See
//!   [`super::pack`].
//! - AVX-512 only, for products where packing costs more than it saves:
//!   *direct A* kernels read `A` in place (`m` rows `a_rs` apart, unit column
//!   stride), and any AVX-512 kernel reads a *direct B* in place (`k` rows `b_ks`
//!   apart, unit column stride; only columns `< n` are touched).
//! - The kernel computes a tile of at least `m x n` (`m <= mr`, `n <= nr`) and
//!   writes exactly the elements `(i, j)`, `i < m`, `j < n`, of `C` at
//!   `c + i*rsc + j*csc`.
//! - `beta == 0` never reads `C`, so NaN in `C` is overwritten.
//! - `k` may be 0 (then `C = beta * C`).
//!
//! Each ISA module exposes `select(m, n) -> KernelFn`, the smallest variant that
//! covers an `m x n` tile, so edge tiles do not pay for a full one.

pub(crate) mod generic;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use crate::cpu::Isa;
use crate::gemm::Epi;

/// Arguments of one micro-kernel call (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: *const f32,
    /// Row stride of a direct `A` (unused for packed `A`).
    pub a_rs: isize,
    pub b: *const f32,
    /// Floats between consecutive `k` steps of `B` (`NR` when packed).
    pub b_ks: isize,
    pub c: *mut f32,
    pub rsc: isize,
    pub csc: isize,
    pub m: usize,
    pub n: usize,
    /// Epilogue applied while storing, by kernels that [`fuse_epilogue`]
    /// (`Epi::NONE` otherwise): its operands are offset to the tile, the
    /// bias one value per row (`bias_cs == 0`), and `csc == 1`.
    pub epi: Epi,
}

/// Whether `isa`'s kernels apply a tile's epilogue as they store it (for a
/// unit-stride `C` and a bias per row); for other kernels and layouts the
/// caller applies it after the kernel.
pub(crate) fn fuse_epilogue(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa == Isa::Avx512
}

/// A micro-kernel.
///
/// # Safety
/// The tile's pointers must satisfy the module's contract, and the CPU must
/// support the ISA the kernel was selected for.
pub(crate) type KernelFn = unsafe fn(&Tile);

/// Whether `isa`'s kernels can read `A` and `B` in place (see the module docs).
pub(crate) fn has_direct(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa == Isa::Avx512
}

/// The micro-kernel for `isa` covering an `m x n` tile, reading `A` in place if
/// `direct_a` (only where [`has_direct`]).
pub(crate) fn select(isa: Isa, m: usize, n: usize, direct_a: bool) -> KernelFn {
    debug_assert!(!direct_a || has_direct(isa));
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::select(m, n, direct_a),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::select(m, n),
        _ => generic::select(m, n),
    }
}

/// Writes `alpha * acc + beta * C` for the tile's `m x n` elements, from an
/// accumulator tile stored row-major with row length `ld`. Used for edge tiles and
/// strided `C`.
///
/// # Safety
/// `t.c`, `t.rsc`, `t.csc` must address a writable `t.m x t.n` matrix and `acc`
/// must hold at least `(t.m - 1) * ld + t.n` values.
pub(crate) unsafe fn store_scalar(t: &Tile, acc: &[f32], ld: usize) {
    for i in 0..t.m {
        for j in 0..t.n {
            let v = t.alpha * acc[i * ld + j];
            // SAFETY: (i, j) is inside the tile (caller's contract).
            unsafe {
                let c = t.c.offset(i as isize * t.rsc + j as isize * t.csc);
                *c = if t.beta == 0.0 { v } else { v + t.beta * *c };
            }
        }
    }
}
