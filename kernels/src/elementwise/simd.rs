//! A small SIMD abstraction: one trait, three implementations (AVX-512F,
//! AVX2+FMA, portable scalar), so each element-wise algorithm is written once.
//!
//! Every method is `unsafe` and carries its ISA's `#[target_feature]`: callers
//! must have checked the CPU (the dispatcher in `super` does). Algorithms are
//! `#[inline(always)]` generic functions, instantiated inside a
//! `#[target_feature]` loop per ISA so everything inlines into one body.

#![allow(clippy::missing_safety_doc)] // The trait's safety contract is stated once, here.

/// SIMD operations on `LANES` f32 values (`V`), i32 values (`I`) and lane masks
/// (`M`). Float compares are ordered (false when either side is NaN);
/// `min`/`max` return the *second* operand when either is NaN (x86 semantics).
pub(crate) trait Simd: Copy {
    type V: Copy;
    type I: Copy;
    type M: Copy;
    const LANES: usize;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused where the ISA has FMA).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sqrt(a: Self::V) -> Self::V;
    /// `y * 2^n` for an integral `n` in [-150, 130]: +inf on overflow; below the
    /// normal range 0 or the denormal result (AVX-512 keeps denormals, the
    /// others flush).
    unsafe fn ldexp(y: Self::V, n: Self::V) -> Self::V;
    /// Round to nearest, ties to even.
    unsafe fn round(a: Self::V) -> Self::V;
    unsafe fn int_to_float(a: Self::I) -> Self::V;
    unsafe fn bits(a: Self::V) -> Self::I;
    unsafe fn from_bits(a: Self::I) -> Self::V;
    unsafe fn int_splat(x: i32) -> Self::I;
    unsafe fn int_sub(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn int_and(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn int_or(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn int_xor(a: Self::I, b: Self::I) -> Self::I;
    /// Arithmetic shift right by 23.
    unsafe fn int_shr23(a: Self::I) -> Self::I;
    unsafe fn lt(a: Self::V, b: Self::V) -> Self::M;
    unsafe fn eq(a: Self::V, b: Self::V) -> Self::M;
    /// True where `a` is NaN.
    unsafe fn is_nan(a: Self::V) -> Self::M;
    /// `m ? a : b` per lane.
    unsafe fn select(m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    unsafe fn any(m: Self::M) -> bool;
    unsafe fn hsum(a: Self::V) -> f32;
    unsafe fn hmax(a: Self::V) -> f32;
}

/// Portable: one lane, plain `f32` arithmetic (no FMA: a software `fmaf` call
/// would be slower than the separate multiply and add).
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Simd for Scalar {
    type V = f32;
    type I = i32;
    type M = bool;
    const LANES: usize = 1;
    #[inline(always)]
    unsafe fn splat(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        // SAFETY: caller's contract: `p` is readable.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        // SAFETY: caller's contract: `p` is writable.
        unsafe { *p = v }
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    unsafe fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    unsafe fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    unsafe fn min(a: f32, b: f32) -> f32 {
        if a < b { a } else { b }
    }
    #[inline(always)]
    unsafe fn max(a: f32, b: f32) -> f32 {
        if a > b { a } else { b }
    }
    #[inline(always)]
    unsafe fn sqrt(a: f32) -> f32 {
        a.sqrt()
    }
    #[inline(always)]
    unsafe fn ldexp(y: f32, n: f32) -> f32 {
        if n > 128.0 {
            return f32::INFINITY * y;
        }
        if n < -126.0 {
            return 0.0 * y;
        }
        // Two factors, both normal for n in [-126, 128].
        let n1 = (n * 0.5).round_ties_even();
        let f = |k: f32| f32::from_bits(((k as i32 + 127) as u32) << 23);
        y * f(n1) * f(n - n1)
    }
    #[inline(always)]
    unsafe fn round(a: f32) -> f32 {
        a.round_ties_even()
    }
    #[inline(always)]
    unsafe fn int_to_float(a: i32) -> f32 {
        a as f32
    }
    #[inline(always)]
    unsafe fn bits(a: f32) -> i32 {
        a.to_bits() as i32
    }
    #[inline(always)]
    unsafe fn from_bits(a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    #[inline(always)]
    unsafe fn int_splat(x: i32) -> i32 {
        x
    }
    #[inline(always)]
    unsafe fn int_sub(a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    #[inline(always)]
    unsafe fn int_and(a: i32, b: i32) -> i32 {
        a & b
    }
    #[inline(always)]
    unsafe fn int_or(a: i32, b: i32) -> i32 {
        a | b
    }
    #[inline(always)]
    unsafe fn int_xor(a: i32, b: i32) -> i32 {
        a ^ b
    }
    #[inline(always)]
    unsafe fn int_shr23(a: i32) -> i32 {
        a >> 23
    }
    #[inline(always)]
    unsafe fn lt(a: f32, b: f32) -> bool {
        a < b
    }
    #[inline(always)]
    unsafe fn eq(a: f32, b: f32) -> bool {
        a == b
    }
    #[inline(always)]
    unsafe fn is_nan(a: f32) -> bool {
        a.is_nan()
    }
    #[inline(always)]
    unsafe fn select(m: bool, a: f32, b: f32) -> f32 {
        if m { a } else { b }
    }
    #[inline(always)]
    unsafe fn any(m: bool) -> bool {
        m
    }
    #[inline(always)]
    unsafe fn hsum(a: f32) -> f32 {
        a
    }
    #[inline(always)]
    unsafe fn hmax(a: f32) -> f32 {
        a
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;

    /// AVX-512F: 16 lanes, mask registers.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    macro_rules! avx512 {
        ($($name:ident($($a:ident: $t:ty),*) -> $r:ty $body:block)*) => {
            $(
                #[inline]
                #[target_feature(enable = "avx512f")]
                unsafe fn $name($($a: $t),*) -> $r {
                    // SAFETY: the trait's contract: the CPU supports AVX-512F and
                    // pointers are valid for 16 floats.
                    #[allow(unused_unsafe)]
                    unsafe { $body }
                }
            )*
        };
    }

    impl Simd for Avx512 {
        type V = __m512;
        type I = __m512i;
        type M = __mmask16;
        const LANES: usize = 16;
        avx512! {
            splat(x: f32) -> __m512 { _mm512_set1_ps(x) }
            load(p: *const f32) -> __m512 { _mm512_loadu_ps(p) }
            store(p: *mut f32, v: __m512) -> () { _mm512_storeu_ps(p, v) }
            add(a: __m512, b: __m512) -> __m512 { _mm512_add_ps(a, b) }
            sub(a: __m512, b: __m512) -> __m512 { _mm512_sub_ps(a, b) }
            mul(a: __m512, b: __m512) -> __m512 { _mm512_mul_ps(a, b) }
            div(a: __m512, b: __m512) -> __m512 { _mm512_div_ps(a, b) }
            fma(a: __m512, b: __m512, c: __m512) -> __m512 { _mm512_fmadd_ps(a, b, c) }
            min(a: __m512, b: __m512) -> __m512 { _mm512_min_ps(a, b) }
            max(a: __m512, b: __m512) -> __m512 { _mm512_max_ps(a, b) }
            sqrt(a: __m512) -> __m512 { _mm512_sqrt_ps(a) }
            ldexp(y: __m512, n: __m512) -> __m512 { _mm512_scalef_ps(y, n) }
            round(a: __m512) -> __m512 { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
            int_to_float(a: __m512i) -> __m512 { _mm512_cvtepi32_ps(a) }
            bits(a: __m512) -> __m512i { _mm512_castps_si512(a) }
            from_bits(a: __m512i) -> __m512 { _mm512_castsi512_ps(a) }
            int_splat(x: i32) -> __m512i { _mm512_set1_epi32(x) }
            int_sub(a: __m512i, b: __m512i) -> __m512i { _mm512_sub_epi32(a, b) }
            int_and(a: __m512i, b: __m512i) -> __m512i { _mm512_and_si512(a, b) }
            int_or(a: __m512i, b: __m512i) -> __m512i { _mm512_or_si512(a, b) }
            int_xor(a: __m512i, b: __m512i) -> __m512i { _mm512_xor_si512(a, b) }
            int_shr23(a: __m512i) -> __m512i { _mm512_srai_epi32::<23>(a) }
            lt(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
            eq(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b) }
            is_nan(a: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a) }
            select(m: __mmask16, a: __m512, b: __m512) -> __m512 { _mm512_mask_blend_ps(m, b, a) }
            any(m: __mmask16) -> bool { m != 0 }
            hsum(a: __m512) -> f32 { _mm512_reduce_add_ps(a) }
            hmax(a: __m512) -> f32 { _mm512_reduce_max_ps(a) }
        }
    }

    /// AVX2 + FMA: 8 lanes, masks as all-ones lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    macro_rules! avx2 {
        ($($name:ident($($a:ident: $t:ty),*) -> $r:ty $body:block)*) => {
            $(
                #[inline]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn $name($($a: $t),*) -> $r {
                    // SAFETY: the trait's contract: the CPU supports AVX2 and FMA
                    // and pointers are valid for 8 floats.
                    #[allow(unused_unsafe)]
                    unsafe { $body }
                }
            )*
        };
    }

    impl Simd for Avx2 {
        type V = __m256;
        type I = __m256i;
        type M = __m256;
        const LANES: usize = 8;
        avx2! {
            splat(x: f32) -> __m256 { _mm256_set1_ps(x) }
            load(p: *const f32) -> __m256 { _mm256_loadu_ps(p) }
            store(p: *mut f32, v: __m256) -> () { _mm256_storeu_ps(p, v) }
            add(a: __m256, b: __m256) -> __m256 { _mm256_add_ps(a, b) }
            sub(a: __m256, b: __m256) -> __m256 { _mm256_sub_ps(a, b) }
            mul(a: __m256, b: __m256) -> __m256 { _mm256_mul_ps(a, b) }
            div(a: __m256, b: __m256) -> __m256 { _mm256_div_ps(a, b) }
            fma(a: __m256, b: __m256, c: __m256) -> __m256 { _mm256_fmadd_ps(a, b, c) }
            min(a: __m256, b: __m256) -> __m256 { _mm256_min_ps(a, b) }
            max(a: __m256, b: __m256) -> __m256 { _mm256_max_ps(a, b) }
            sqrt(a: __m256) -> __m256 { _mm256_sqrt_ps(a) }
            ldexp(y: __m256, n: __m256) -> __m256 {
                // Two factors, both normal for n in [-126, 128]; outside, inf or 0.
                let nc = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-126.0)), _mm256_set1_ps(128.0));
                let n1 = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(nc, _mm256_set1_ps(0.5)));
                let f = |k: __m256| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127))));
                let r = _mm256_mul_ps(_mm256_mul_ps(y, f(n1)), f(_mm256_sub_ps(nc, n1)));
                let r = _mm256_blendv_ps(r, _mm256_set1_ps(f32::INFINITY), _mm256_cmp_ps::<_CMP_GT_OQ>(n, _mm256_set1_ps(128.0)));
                _mm256_blendv_ps(r, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LT_OQ>(n, _mm256_set1_ps(-126.0)))
            }
            round(a: __m256) -> __m256 { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
            int_to_float(a: __m256i) -> __m256 { _mm256_cvtepi32_ps(a) }
            bits(a: __m256) -> __m256i { _mm256_castps_si256(a) }
            from_bits(a: __m256i) -> __m256 { _mm256_castsi256_ps(a) }
            int_splat(x: i32) -> __m256i { _mm256_set1_epi32(x) }
            int_sub(a: __m256i, b: __m256i) -> __m256i { _mm256_sub_epi32(a, b) }
            int_and(a: __m256i, b: __m256i) -> __m256i { _mm256_and_si256(a, b) }
            int_or(a: __m256i, b: __m256i) -> __m256i { _mm256_or_si256(a, b) }
            int_xor(a: __m256i, b: __m256i) -> __m256i { _mm256_xor_si256(a, b) }
            int_shr23(a: __m256i) -> __m256i { _mm256_srai_epi32::<23>(a) }
            lt(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
            eq(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b) }
            is_nan(a: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a) }
            select(m: __m256, a: __m256, b: __m256) -> __m256 { _mm256_blendv_ps(b, a, m) }
            any(m: __m256) -> bool { _mm256_movemask_ps(m) != 0 }
            hsum(a: __m256) -> f32 {
                let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
            }
            hmax(a: __m256) -> f32 {
                let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
                _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps::<1>(s, s)))
            }
        }
    }
}
