//! AVX2+FMA micro-kernel, 6 x 16: 12 ymm accumulators, two ymm of `B`, one
//! broadcast of `A` (15 of the 16 ymm registers).

use std::arch::x86_64::*;

use super::{KernelFn, Tile, store_scalar};
use crate::cpu::Isa;
use crate::gemm::blocking::micro_tile;

const MR: usize = micro_tile(Isa::Avx2).0;
const NR: usize = micro_tile(Isa::Avx2).1;
const LANES: usize = 8;

/// Rows: 2, 4 or 6; vectors: 1 (n <= 8) or 2.
pub(crate) fn select(m: usize, n: usize) -> KernelFn {
    match (m.div_ceil(2), n <= LANES) {
        (0 | 1, true) => tile::<2, 1>,
        (0 | 1, false) => tile::<2, 2>,
        (2, true) => tile::<4, 1>,
        (2, false) => tile::<4, 2>,
        (_, true) => tile::<6, 1>,
        (_, false) => tile::<6, 2>,
    }
}

/// # Safety
/// See the module contract in [`super`]; the CPU must support AVX2 and FMA.
unsafe fn tile<const R: usize, const V: usize>(t: &Tile) {
    // SAFETY: `select` is only reached for `Isa::Avx2` or better, which the
    // dispatcher checked against the CPU.
    unsafe { tile_avx2::<R, V>(t) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize, const V: usize>(t: &Tile) {
    const { assert!(R <= MR && V * LANES <= NR) };
    debug_assert_eq!(t.b_ks, NR as isize, "AVX2 kernels read packed B only");
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        // SAFETY: packed panels hold `k` steps of MR and NR values; B is 64-byte
        // aligned and NR is a multiple of 8, so every load is aligned.
        unsafe {
            let bv: [__m256; V] = std::array::from_fn(|v| _mm256_load_ps(b.add(v * LANES)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r));
                for v in 0..V {
                    acc_r[v] = _mm256_fmadd_ps(av, bv[v], acc_r[v]);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    if t.csc != 1 {
        let mut spill = [[0.0f32; NR]; R];
        for (row, acc_r) in spill.iter_mut().zip(&acc) {
            for (v, &x) in acc_r.iter().enumerate() {
                // SAFETY: each row of `spill` holds NR >= V * 8 floats.
                unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(v * LANES), x) };
            }
        }
        // SAFETY: C contract is the caller's; `spill` is R x NR with m <= R.
        unsafe { store_scalar(t, spill.as_flattened(), NR) };
        return;
    }
    let alpha = _mm256_set1_ps(t.alpha);
    let beta = _mm256_set1_ps(t.beta);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (r, acc_r) in acc.iter().enumerate() {
        if r >= t.m {
            break;
        }
        for (v, &acc_rv) in acc_r.iter().enumerate() {
            let cols = t.n.saturating_sub(v * LANES).min(LANES);
            if cols == 0 {
                break;
            }
            // SAFETY: row r < m of C, columns v*8 .. v*8 + cols <= n, unit stride;
            // masked-off lanes are neither read nor written.
            unsafe {
                let c = t.c.offset(r as isize * t.rsc).add(v * LANES);
                let mut x = _mm256_mul_ps(acc_rv, alpha);
                if cols == LANES {
                    if t.beta != 0.0 {
                        x = _mm256_fmadd_ps(_mm256_loadu_ps(c), beta, x);
                    }
                    _mm256_storeu_ps(c, x);
                } else {
                    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), lane);
                    if t.beta != 0.0 {
                        x = _mm256_fmadd_ps(_mm256_maskload_ps(c, mask), beta, x);
                    }
                    _mm256_maskstore_ps(c, mask, x);
                }
            }
        }
    }
}
