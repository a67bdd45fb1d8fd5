//! Portable micro-kernel, 4 x 8, plain Rust (the compiler vectorises it with the
//! baseline SIMD of the target, SSE2 on x86-64).

use super::{KernelFn, Tile, store_scalar};
use crate::cpu::Isa;
use crate::gemm::blocking::micro_tile;

const MR: usize = micro_tile(Isa::Scalar).0;
const NR: usize = micro_tile(Isa::Scalar).1;

pub(crate) fn select(_m: usize, _n: usize) -> KernelFn {
    tile
}

/// # Safety
/// See the module contract in [`super`].
unsafe fn tile(t: &Tile) {
    debug_assert_eq!(t.b_ks, NR as isize, "portable kernels read packed B only");
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..t.k {
        // SAFETY: the packed panels hold `k` steps of MR (A) and NR (B) values.
        let (a, b) = unsafe {
            (
                &*(t.a.add(p * MR) as *const [f32; MR]),
                &*(t.b.add(p * NR) as *const [f32; NR]),
            )
        };
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += a[r] * b[j];
            }
        }
    }
    // SAFETY: the tile's C contract is the caller's; `acc` is MR x NR, m <= MR, n <= NR.
    unsafe { store_scalar(t, acc.as_flattened(), NR) }
}
