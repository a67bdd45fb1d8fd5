//! Checksums for files and messages.

/// CRC-32 (IEEE 802.3, reflected, as in zlib and PNG), with the carry-less
/// multiply instructions where the CPU has them (the `crc32fast` crate):
/// many GB/s, so that checking a message costs little next to moving it.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        assert_eq!(super::crc32(b""), 0);
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        // Against the bytewise table definition, on every length mod 64.
        let data: Vec<u8> = (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut table = [0u32; 256];
        for (i, e) in table.iter_mut().enumerate() {
            *e = (0..8).fold(i as u32, |c, _| {
                if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            });
        }
        for n in (0..64).chain([1000, 4099]) {
            let want = !data[..n].iter().fold(!0u32, |c, &b| {
                table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
            });
            assert_eq!(super::crc32(&data[..n]), want, "{n} bytes");
        }
    }
}
