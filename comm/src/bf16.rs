//! bfloat16 encoding for the wire: the top 16 bits of an `f32`, rounded to
//! nearest, ties to even (BigDL truncated, which biases every value towards
//! zero).
//!
//! Error bound: for a finite `x` whose rounded value is finite,
//! `|decode(encode(x)) - x| <= 2^-8 * |x|` (half a unit in the last of the 8
//! significand bits), and subnormals keep their absolute error below
//! `2^-134`. NaN stays NaN (quiet), infinities stay infinite; a value within
//! half a unit of `f32::MAX`'s bf16 neighbour rounds to infinity, as IEEE
//! rounding does.

/// `x` rounded to bfloat16 (round to nearest, ties to even).
pub fn encode(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Keep the sign, force a quiet NaN (rounding could carry into the
        // exponent and turn the NaN into an infinity).
        return ((bits >> 16) as u16) | 0x0040;
    }
    let lsb = (bits >> 16) & 1;
    ((bits + 0x7FFF + lsb) >> 16) as u16
}

/// The `f32` value of a bfloat16.
pub fn decode(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Appends the little-endian bfloat16 encodings of `xs` to `out`.
pub fn encode_into(xs: &[f32], out: &mut Vec<u8>) {
    out.reserve(xs.len() * 2);
    for &x in xs {
        out.extend_from_slice(&encode(x).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        // Exactly representable values survive.
        for x in [0.0f32, -0.0, 1.0, -2.5, 0.15625, 65536.0, f32::INFINITY] {
            assert_eq!(decode(encode(x)).to_bits(), x.to_bits(), "{x}");
        }
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
        assert_eq!(decode(encode(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to even.
        assert_eq!(
            decode(encode(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        // Just above halfway rounds up; truncation would not.
        let x = f32::from_bits(1.0f32.to_bits() + 0x8001);
        assert_eq!(decode(encode(x)), 1.0 + 2f32.powi(-7));
        assert!(decode(encode(f32::NAN)).is_nan());
        assert!(decode(encode(-f32::NAN)).is_nan());
        assert_eq!(decode(encode(f32::MAX)), f32::INFINITY);
    }

    #[test]
    fn error_bound_holds() {
        // A sweep of bit patterns across the whole finite range.
        let mut worst = 0.0f64;
        let mut bits = 0x0080_0000u32; // smallest normal
        while bits < 0x7F7F_0000 {
            let x = f32::from_bits(bits);
            let y = decode(encode(x));
            let rel = ((y as f64 - x as f64) / x as f64).abs();
            worst = worst.max(rel);
            assert!(rel <= 2f64.powi(-8), "{x}: {y} ({rel})");
            bits = bits.wrapping_add(0x1357);
        }
        assert!(worst > 2f64.powi(-9), "the sweep hit large errors: {worst}");
        for bits in (1u32..0x0080_0000).step_by(0x101) {
            let x = f32::from_bits(bits);
            assert!((decode(encode(x)) - x).abs() <= 2f32.powi(-134));
        }
    }
}
