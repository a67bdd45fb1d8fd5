//! A compact, versioned binary encoding of one tensor, for the model format and
//! checkpoints to build on.
//!
//! ```text
//! offset  size        field
//! 0       4           magic "BDLT"
//! 4       2           format version, little-endian (this is version 1)
//! 6       1           element type: 0 = f32, 1 = f64, 2 = i64
//! 7       1           rank r (at most 32)
//! 8       8 r         sizes, u64 little-endian, outermost first
//! 8+8r    4           CRC-32 (IEEE) of the data bytes
//! 12+8r   n * width   elements, row-major, little-endian
//! ```
//!
//! Decoding checks the header (magic, version, type, rank, that the element
//! count fits and that the data is present) before it allocates anything, and
//! the checksum before it returns. Round trips are bitwise, NaN payloads included.

use std::sync::Arc;

use crate::element::{DType, Element};
use crate::error::{Result, TensorError};
use crate::storage::Mapping;
use crate::tensor::Tensor;

const MAGIC: &[u8; 4] = b"BDLT";
const VERSION: u16 = 1;
const MAX_RANK: usize = 32;

pub use bigdl_kernels::checksum::crc32;

fn code(d: DType) -> u8 {
    match d {
        DType::F32 => 0,
        DType::F64 => 1,
        DType::I64 => 2,
    }
}

fn bad(what: impl Into<String>) -> TensorError {
    TensorError::Format {
        op: "decode",
        what: what.into(),
    }
}

impl<T: Element> Tensor<T> {
    /// Appends the encoding of `self` (its elements in row-major order) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(code(T::DTYPE));
        out.push(self.dim() as u8);
        for &s in &self.sizes {
            out.extend_from_slice(&(s as u64).to_le_bytes());
        }
        let crc_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let data_at = out.len();
        self.for_each(|x| x.to_le_bytes_vec(out));
        let crc = crc32(&out[data_at..]);
        out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes one tensor from the start of `bytes`; returns it and the number
    /// of bytes it used.
    pub fn decode(bytes: &[u8]) -> Result<(Tensor<T>, usize)> {
        let (sizes, data, used) = Self::checked(bytes)?;
        let values = data
            .chunks_exact(T::DTYPE.size())
            .map(T::from_le_slice)
            .collect();
        Ok((Tensor::from_vec(values, &sizes)?, used))
    }

    /// [`Tensor::decode`] of the tensor at byte `at` of a mapped file, its
    /// checksum verified, without copying its elements where they are
    /// aligned (see [`Tensor::from_mapping`]); copied where not.
    pub fn decode_mapped(map: &Arc<Mapping>, at: usize) -> Result<(Tensor<T>, usize)> {
        let bytes = map
            .bytes()
            .get(at..)
            .ok_or_else(|| bad("offset past the end of the file"))?;
        let (sizes, data, used) = Self::checked(bytes)?;
        let data_at = at + (used - data.len());
        match Tensor::from_mapping(Arc::clone(map), data_at, &sizes) {
            Ok(t) => Ok((t, used)),
            Err(_) => Self::decode(bytes),
        }
    }

    /// The header's sizes and the data bytes (checksum verified) of the
    /// encoded tensor at the start of `bytes`, and the bytes it spans.
    fn checked(bytes: &[u8]) -> Result<(Vec<usize>, &[u8], usize)> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(bad("not an encoded tensor (bad magic)"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}, this build reads {VERSION}"
            )));
        }
        if bytes[6] != code(T::DTYPE) {
            return Err(bad(format!(
                "element type code {} is not {:?}",
                bytes[6],
                T::DTYPE
            )));
        }
        let rank = bytes[7] as usize;
        if rank > MAX_RANK {
            return Err(bad(format!("rank {rank} exceeds {MAX_RANK}")));
        }
        let header = 8 + 8 * rank + 4;
        if bytes.len() < header {
            return Err(bad("truncated header"));
        }
        let sizes = (0..rank)
            .map(|d| {
                let s =
                    u64::from_le_bytes(bytes[8 + 8 * d..16 + 8 * d].try_into().expect("8 bytes"));
                usize::try_from(s).map_err(|_| bad(format!("size {s} does not fit this machine")))
            })
            .collect::<Result<Vec<usize>>>()?;
        let width = T::DTYPE.size();
        let data_len = sizes
            .iter()
            .try_fold(width, |acc, &s| acc.checked_mul(s))
            .filter(|&n| n <= bytes.len() - header)
            .ok_or_else(|| {
                bad(format!(
                    "shape {sizes:?} needs more data than the {} bytes present",
                    bytes.len() - header
                ))
            })?;
        let data = &bytes[header..header + data_len];
        let want = u32::from_le_bytes(bytes[header - 4..header].try_into().expect("4 bytes"));
        let got = crc32(data);
        if got != want {
            return Err(bad(format!(
                "checksum mismatch (stored {want:08x}, data {got:08x}): corrupt data"
            )));
        }
        Ok((sizes, data, header + data_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
