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
#[inline(always)]
pub fn encode(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
    // NaN keeps its sign and becomes quiet (rounding could carry into the
    // exponent and turn it into an infinity). A select, not a branch, so
    // that the wire's slice loops vectorise.
    let nan = (bits & 0x7FFF_FFFF) > 0x7F80_0000;
    (if nan { (bits >> 16) | 0x0040 } else { rounded }) as u16
}

/// The `f32` value of a bfloat16.
#[inline(always)]
pub fn decode(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_add_bf16, decode_bf16, encode_bf16};

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
    fn slices_match_the_scalar_definition() {
        let mut xs: Vec<f32> = (0..4099u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .collect();
        xs.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::MAX,
            -0.0,
            1.0 + 2f32.powi(-8),
        ]);
        let mut bytes = vec![0u8; 2 * xs.len()];
        encode_bf16(&xs, &mut bytes);
        let mut back = vec![1.0f32; xs.len()];
        decode_bf16(&bytes, &mut back);
        let mut sum = vec![0.5f32; xs.len()];
        decode_add_bf16(&bytes, &mut sum);
        for (i, &x) in xs.iter().enumerate() {
            let h = encode(x);
            assert_eq!(
                u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]),
                h,
                "{x}"
            );
            assert_eq!(back[i].to_bits(), decode(h).to_bits(), "{x}");
            assert_eq!(sum[i].to_bits(), (0.5 + decode(h)).to_bits(), "{x}");
        }
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
