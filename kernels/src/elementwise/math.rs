//! The element-wise algorithms, written once over [`Simd`].
//!
//! `exp`, `log` and `tanh` follow Cephes' single-precision range reductions and
//! minimax polynomials (S. Moshier); `sigmoid` is built on `exp` in the form that
//! does not cancel. Guaranteed maximum errors against `f64`, and what the tests
//! measured (sweeping every 1/4096 over the range in brackets, plus tiny,
//! denormal and special arguments; the same at every ISA level):
//!
//! | function | bound (measured) | notes |
//! |---|---|---|
//! | `exp` | 2 ulp (1.00, [-104, 89]) | below `f32::MIN_POSITIVE` (x < -87.34): denormals on AVX-512, 0 elsewhere; `x > 88.72` gives +inf |
//! | `log` | 2 ulp (0.72, (0, 1000]) | denormal inputs handled; `log(0) = -inf`, `log(x < 0) = NaN` |
//! | `tanh` | 3 ulp (1.21, [-10, 10]) | |
//! | `sigmoid` | 3 ulp (2.18, [-104, 104]) | |
//!
//! NaN inputs give NaN outputs everywhere.

#![allow(clippy::excessive_precision)] // Cephes' coefficients, as published.

use super::simd::Simd;

/// `#[inline(always)]` bodies, applied one vector at a time.
pub(crate) trait Op {
    /// # Safety
    /// The CPU must support `S`.
    unsafe fn apply<S: Simd>(v: S::V) -> S::V;
}

macro_rules! ops {
    ($($name:ident => $f:ident;)*) => {
        $(
            pub(crate) struct $name;
            impl Op for $name {
                #[inline(always)]
                unsafe fn apply<S: Simd>(v: S::V) -> S::V {
                    // SAFETY: forwarded contract.
                    unsafe { $f::<S>(v) }
                }
            }
        )*
    };
}

ops! {
    ExpOp => exp;
    LogOp => log;
    TanhOp => tanh;
    SigmoidOp => sigmoid;
    ReluOp => relu;
    AbsOp => abs;
    SqrtOp => sqrt;
    NegOp => neg;
    SquareOp => square;
}

/// e^x.
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe {
        // Clamp so that n stays in [-150, 129] (`ldexp` then gives 0 or inf);
        // `min(hi, max(lo, x))` lets NaN through (x86 min/max return the second
        // operand on NaN), and NaN flows through everything below.
        let xc = S::min(S::splat(89.0), S::max(S::splat(-104.0), x));
        let n = S::round(S::mul(xc, S::splat(std::f32::consts::LOG2_E)));
        // r = x - n ln2, with ln2 split in two for accuracy.
        let r = S::fma(n, S::splat(-0.693_359_375), xc);
        let r = S::fma(n, S::splat(2.121_944_4e-4), r);
        let z = S::mul(r, r);
        let mut p = S::splat(1.987_569_15e-4);
        for c in [
            1.398_199_950_7e-3,
            8.333_451_907_3e-3,
            4.166_579_589_4e-2,
            1.666_666_545_9e-1,
            5.000_000_120_1e-1,
        ] {
            p = S::fma(p, r, S::splat(c));
        }
        let y = S::add(S::fma(p, z, r), S::splat(1.0));
        S::ldexp(y, n)
    }
}

/// Natural logarithm.
#[inline(always)]
pub(crate) unsafe fn log<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe {
        // Denormals: scale into the normal range first.
        let tiny = S::lt(x, S::splat(f32::MIN_POSITIVE));
        let xs = S::select(tiny, S::mul(x, S::splat(8_388_608.0)), x);
        let bits = S::bits(xs);
        let e = S::int_sub(
            S::int_and(S::int_shr23(bits), S::int_splat(0xff)),
            S::int_splat(126),
        );
        let e = S::add(
            S::int_to_float(e),
            S::select(tiny, S::splat(-23.0), S::splat(0.0)),
        );
        // Mantissa in [0.5, 1).
        let m = S::from_bits(S::int_or(
            S::int_and(bits, S::int_splat(0x007f_ffff)),
            S::int_splat(0x3f00_0000),
        ));
        let small = S::lt(m, S::splat(std::f32::consts::FRAC_1_SQRT_2));
        let e = S::select(small, S::sub(e, S::splat(1.0)), e);
        let m = S::sub(S::select(small, S::add(m, m), m), S::splat(1.0));
        let z = S::mul(m, m);
        let mut p = S::splat(7.037_683_629_2e-2);
        for c in [
            -1.151_461_031_0e-1,
            1.167_699_874_0e-1,
            -1.242_014_084_6e-1,
            1.424_932_278_7e-1,
            -1.666_805_766_5e-1,
            2.000_071_476_5e-1,
            -2.499_999_399_3e-1,
            3.333_333_117_4e-1,
        ] {
            p = S::fma(p, m, S::splat(c));
        }
        let y = S::mul(S::mul(p, m), z);
        let y = S::fma(e, S::splat(-2.121_944_4e-4), y);
        let y = S::fma(z, S::splat(-0.5), y);
        let r = S::fma(e, S::splat(0.693_359_375), S::add(m, y));
        // Special values.
        let r = S::select(S::eq(x, S::splat(f32::INFINITY)), x, r);
        let r = S::select(S::lt(x, S::splat(0.0)), S::splat(f32::NAN), r);
        let r = S::select(S::eq(x, S::splat(0.0)), S::splat(f32::NEG_INFINITY), r);
        S::select(S::is_nan(x), x, r)
    }
}

/// Hyperbolic tangent.
#[inline(always)]
pub(crate) unsafe fn tanh<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe {
        let sign = S::int_and(S::bits(x), S::int_splat(i32::MIN));
        let a = S::from_bits(S::int_and(S::bits(x), S::int_splat(i32::MAX)));
        // |x| >= 0.625: 1 - 2 / (e^2|x| + 1), with the sign of x.
        // e = inf for |x| > 44: 2 / inf = 0, so tanh = +-1 exactly.
        let e = exp::<S>(S::add(a, a));
        let big = S::sub(
            S::splat(1.0),
            S::div(S::splat(2.0), S::add(e, S::splat(1.0))),
        );
        let big = S::from_bits(S::int_or(S::bits(big), sign));
        // |x| < 0.625: x + x z P(z), z = x^2.
        let z = S::mul(x, x);
        let mut p = S::splat(-5.704_988_727_45e-3);
        for c in [
            2.063_908_879_54e-2,
            -5.373_971_555_31e-2,
            1.333_144_220_36e-1,
            -3.333_328_194_22e-1,
        ] {
            p = S::fma(p, z, S::splat(c));
        }
        let small = S::fma(S::mul(p, z), x, x);
        S::select(S::lt(a, S::splat(0.625)), small, big)
    }
}

/// 1 / (1 + e^-x). No cancellation anywhere: for x < 0 the denominator is
/// large and its reciprocal accurate; e^-x = inf gives exactly 0.
#[inline(always)]
pub(crate) unsafe fn sigmoid<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe {
        let e = exp::<S>(S::from_bits(S::int_xor(S::bits(x), S::int_splat(i32::MIN))));
        S::div(S::splat(1.0), S::add(S::splat(1.0), e))
    }
}

/// max(x, 0); NaN stays NaN.
#[inline(always)]
pub(crate) unsafe fn relu<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`. `max` returns its second
    // operand when either is NaN, so NaN passes through.
    unsafe { S::max(S::splat(0.0), x) }
}

/// |x|.
#[inline(always)]
pub(crate) unsafe fn abs<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe { S::from_bits(S::int_and(S::bits(x), S::int_splat(i32::MAX))) }
}

/// Correctly rounded square root.
#[inline(always)]
pub(crate) unsafe fn sqrt<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe { S::sqrt(x) }
}

/// -x.
#[inline(always)]
pub(crate) unsafe fn neg<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe { S::from_bits(S::int_xor(S::bits(x), S::int_splat(i32::MIN))) }
}

/// x * x.
#[inline(always)]
pub(crate) unsafe fn square<S: Simd>(x: S::V) -> S::V {
    // SAFETY: the caller checked the CPU for `S`.
    unsafe { S::mul(x, x) }
}
