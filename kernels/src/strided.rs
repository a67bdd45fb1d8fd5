//! AVX-512 loads of lanes one or two floats apart (the windows of a stride-1
//! or stride-2 convolution or pooling), shared by im2col and max pooling.
//! A stride-2 vector is the even elements of two loads, gathered with one
//! `vpermt2ps`.

use std::arch::x86_64::*;

/// Lanes `from..to` (of 16) set.
pub(crate) fn lanes(from: usize, to: usize) -> __mmask16 {
    debug_assert!(from <= to && to <= 16);
    (((1u32 << to) - 1) & !((1u32 << from) - 1)) as __mmask16
}

/// `v[l] = p[s * l]` for lanes `from..to` (`to <= 16`), 0 in the others;
/// `s` is 1 or 2. Reads only the elements of those lanes.
///
/// # Safety
/// The CPU supports AVX-512F; `p.wrapping_add(s * l)` is readable for every
/// lane `l` in `from..to` (`p` itself need not be).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn load(p: *const f32, s: usize, from: usize, to: usize) -> __m512 {
    debug_assert!(s == 1 || s == 2);
    // SAFETY: masked-off elements are not accessed (caller's contract for
    // the others).
    unsafe {
        if s == 1 {
            return _mm512_maskz_loadu_ps(lanes(from, to), p);
        }
        if from >= to {
            return _mm512_setzero_ps();
        }
        // Elements 2 from ..= 2 (to - 1) of the 32 from p (2 to - 1 <= 31).
        let m = ((1u32 << (2 * to - 1)) - 1) & !((1u32 << (2 * from)) - 1);
        let a = _mm512_maskz_loadu_ps(m as __mmask16, p);
        let b = _mm512_maskz_loadu_ps((m >> 16) as __mmask16, p.wrapping_add(16));
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        _mm512_permutex2var_ps(a, evens, b)
    }
}
