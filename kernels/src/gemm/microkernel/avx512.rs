//! AVX-512F micro-kernel, 12 x 32: 24 zmm accumulators, two zmm of `B` per `k`
//! step, `A` broadcast from memory into each FMA. On Zen 4 (two 256-bit FMA pipes)
//! this issues one 512-bit FMA per cycle; on Intel parts with two 512-bit pipes,
//! two.

use std::arch::x86_64::*;

use super::{KernelFn, Tile, store_scalar};
use crate::cpu::Isa;
use crate::gemm::blocking::micro_tile;

const MR: usize = micro_tile(Isa::Avx512).0;
const NR: usize = micro_tile(Isa::Avx512).1;
const LANES: usize = 16;

/// Rows: 4, 8 or 12; vectors: 1 (n <= 16) or 2.
pub(crate) fn select(m: usize, n: usize) -> KernelFn {
    match (m.div_ceil(4), n <= LANES) {
        (0 | 1, true) => tile::<4, 1>,
        (0 | 1, false) => tile::<4, 2>,
        (2, true) => tile::<8, 1>,
        (2, false) => tile::<8, 2>,
        (_, true) => tile::<12, 1>,
        (_, false) => tile::<12, 2>,
    }
}

/// # Safety
/// See the module contract in [`super`]; the CPU must support AVX-512F.
unsafe fn tile<const R: usize, const V: usize>(t: &Tile) {
    // SAFETY: `select` is only reached for `Isa::Avx512`, which the dispatcher
    // checked against the CPU.
    unsafe { tile_avx512::<R, V>(t) }
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize, const V: usize>(t: &Tile) {
    const { assert!(R <= MR && V * LANES <= NR) };
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        // SAFETY: packed panels hold `k` steps of MR and NR values; B is 64-byte
        // aligned and NR is a multiple of 16, so every load is aligned.
        unsafe {
            let bv: [__m512; V] = std::array::from_fn(|v| _mm512_load_ps(b.add(v * LANES)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                for v in 0..V {
                    acc_r[v] = _mm512_fmadd_ps(av, bv[v], acc_r[v]);
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
                // SAFETY: each row of `spill` holds NR >= V * 16 floats.
                unsafe { _mm512_storeu_ps(row.as_mut_ptr().add(v * LANES), x) };
            }
        }
        // SAFETY: C contract is the caller's; `spill` is R x NR with m <= R.
        unsafe { store_scalar(t, spill.as_flattened(), NR) };
        return;
    }
    let alpha = _mm512_set1_ps(t.alpha);
    let beta = _mm512_set1_ps(t.beta);
    for (r, acc_r) in acc.iter().enumerate() {
        if r >= t.m {
            break;
        }
        for (v, &acc_rv) in acc_r.iter().enumerate() {
            let cols = t.n.saturating_sub(v * LANES).min(LANES);
            if cols == 0 {
                break;
            }
            let mask: __mmask16 = if cols == LANES {
                !0
            } else {
                (1u16 << cols) - 1
            };
            // SAFETY: row r < m of C, columns v*16 .. v*16 + cols <= n, unit stride;
            // masked-off lanes are neither read nor written.
            unsafe {
                let c = t.c.offset(r as isize * t.rsc).add(v * LANES);
                let mut x = _mm512_mul_ps(acc_rv, alpha);
                if t.beta != 0.0 {
                    x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, c), beta, x);
                }
                _mm512_mask_storeu_ps(c, mask, x);
            }
        }
    }
}
