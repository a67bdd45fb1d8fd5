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

/// Rows: 2, 4, ..., 12 (the fewest covering `m`); vectors: 1 (n <= 16) or 2;
/// `A` packed or direct.
pub(crate) fn select(m: usize, n: usize, direct_a: bool) -> KernelFn {
    macro_rules! pick {
        ($da:literal, $v:literal) => {
            match m.div_ceil(2) {
                0 | 1 => tile::<2, $v, $da>,
                2 => tile::<4, $v, $da>,
                3 => tile::<6, $v, $da>,
                4 => tile::<8, $v, $da>,
                5 => tile::<10, $v, $da>,
                _ => tile::<12, $v, $da>,
            }
        };
    }
    match (direct_a, n <= LANES) {
        (true, true) => pick!(true, 1),
        (true, false) => pick!(true, 2),
        (false, true) => pick!(false, 1),
        (false, false) => pick!(false, 2),
    }
}

/// # Safety
/// See the module contract in [`super`]; the CPU must support AVX-512F.
unsafe fn tile<const R: usize, const V: usize, const DIRECT_A: bool>(t: &Tile) {
    // SAFETY: `select` is only reached for `Isa::Avx512`, which the dispatcher
    // checked against the CPU.
    unsafe { tile_avx512::<R, V, DIRECT_A>(t) }
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize, const V: usize, const DIRECT_A: bool>(t: &Tile) {
    const { assert!(R <= MR && V * LANES <= NR) };
    debug_assert!(t.m >= 1 && t.m <= R && t.n >= 1 && t.n <= V * LANES);
    // Lanes past `n` are never loaded: direct B may end right after column n.
    let mask: [__mmask16; V] = std::array::from_fn(|v| lane_mask(t.n, v));
    // Direct A: offset of row r, rows past `m` re-read row 0 (results discarded).
    let row: [isize; R] = std::array::from_fn(|r| if r < t.m { r as isize * t.a_rs } else { 0 });
    if t.csc == 1 {
        // Start fetching the C tile, the next tile along its rows (for
        // writing) and the residual the epilogue adds (stored like C) for
        // both; the k steps below hide the latency. A product with few k
        // steps otherwise waits on memory: ResNet-50's 64 -> 256 1x1 layer
        // at batch 32 (2 threads, Zen 5) 9.8 -> 7.9 ms, with the residual
        // 16.3 -> 11.0 ms.
        for r in 0..t.m.min(R) {
            let at = r as isize * t.rsc;
            let row = t.c.wrapping_offset(at) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(V * LANES * 4 - 1));
            for line in V * LANES * 4 / 64..2 * V * LANES * 4 / 64 {
                _mm_prefetch::<_MM_HINT_ET0>(row.wrapping_add(64 * line));
            }
            if !t.epi.res.is_null() {
                // This tile's and the next one's along the row.
                let row = t.epi.res.wrapping_offset(at) as *const i8;
                for line in 0..2 * V * LANES * 4 / 64 {
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64 * line));
                }
            }
        }
    }
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        // SAFETY: A: packed panels hold `k` steps of MR values; direct A has rows
        // 0..m with `k` unit-stride columns. B: `k` steps, `b_ks` apart, of at
        // least `n` values; masked-off lanes are not accessed.
        unsafe {
            let bv: [__m512; V] =
                std::array::from_fn(|v| _mm512_maskz_loadu_ps(mask[v], b.add(v * LANES)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let x = if DIRECT_A {
                    *a.offset(row[r])
                } else {
                    *a.add(r)
                };
                let av = _mm512_set1_ps(x);
                for v in 0..V {
                    acc_r[v] = _mm512_fmadd_ps(av, bv[v], acc_r[v]);
                }
            }
            a = a.add(if DIRECT_A { 1 } else { MR });
            b = b.offset(t.b_ks);
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
    let e = &t.epi;
    for (r, acc_r) in acc.iter().enumerate() {
        if r >= t.m {
            break;
        }
        // SAFETY: the epilogue's operands cover the tile (module contract).
        let bias = (!e.bias.is_null())
            .then(|| _mm512_set1_ps(unsafe { *e.bias.offset(r as isize * e.bias_rs) }));
        for (v, &acc_rv) in acc_r.iter().enumerate() {
            let mask = mask[v];
            if mask == 0 {
                break;
            }
            // SAFETY: row r < m of C, the columns of vector v below n, unit stride;
            // masked-off lanes are neither read nor written. The residual is
            // stored like C.
            unsafe {
                let at = r as isize * t.rsc + (v * LANES) as isize;
                let c = t.c.offset(at);
                let mut x = _mm512_mul_ps(acc_rv, alpha);
                if t.beta != 0.0 {
                    x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, c), beta, x);
                }
                // The epilogue in the order of separate passes: bias, residual,
                // then max(0, x), which keeps NaN and -0 as the ReLU kernels.
                if let Some(b) = bias {
                    x = _mm512_add_ps(x, b);
                }
                if !e.res.is_null() {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, e.res.offset(at)));
                }
                if e.relu {
                    x = _mm512_max_ps(_mm512_setzero_ps(), x);
                }
                _mm512_mask_storeu_ps(c, mask, x);
            }
        }
    }
}

/// Lanes of vector `v` that hold columns `< n`.
fn lane_mask(n: usize, v: usize) -> __mmask16 {
    let cols = n.saturating_sub(v * LANES).min(LANES);
    if cols == LANES {
        !0
    } else {
        (1u16 << cols) - 1
    }
}
