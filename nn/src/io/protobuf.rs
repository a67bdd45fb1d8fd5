//! A minimal reader of the protocol-buffer wire format (for ONNX and, later,
//! Caffe files): fields are read lazily from a byte slice, and every length
//! is checked against the bytes present.

use crate::error::{NnError, Result};

/// A field's value as stored on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    /// A varint (ints, bools, enums).
    Varint(u64),
    /// 8 bytes (double, fixed64).
    Fixed64(u64),
    /// Length-delimited bytes (strings, messages, packed repeated fields).
    Bytes(&'a [u8]),
    /// 4 bytes (float, fixed32).
    Fixed32(u32),
}

pub(crate) fn bad(what: impl Into<String>) -> NnError {
    NnError::Invalid {
        layer: "protobuf".into(),
        what: what.into(),
    }
}

/// Iterates over the `(field number, value)` pairs of one message.
pub(crate) struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Fields<'a> {
        Fields { b, at: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .b
                .get(self.at)
                .ok_or_else(|| bad(format!("truncated varint at byte {}", self.at)))?;
            self.at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("a varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                bad(format!(
                    "a field of {n} bytes at byte {} overruns the message",
                    self.at
                ))
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next field, `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.at >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| bad("field number out of range"))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length out of range"))?;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            w => return Err(bad(format!("unsupported wire type {w}"))),
        };
        Ok(Some((field, value)))
    }
}

/// Calls `f(field, value)` for every field of `msg`.
pub(crate) fn each_field<'a>(
    msg: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<()>,
) -> Result<()> {
    let mut it = Fields::new(msg);
    while let Some((n, v)) = it.next_field()? {
        f(n, v)?;
    }
    Ok(())
}

impl<'a> Value<'a> {
    pub(crate) fn bytes(self) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            v => Err(bad(format!("expected bytes, got {v:?}"))),
        }
    }

    pub(crate) fn string(self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("a string that is not UTF-8"))
    }

    pub(crate) fn int(self) -> Result<i64> {
        match self {
            Value::Varint(v) => Ok(v as i64),
            v => Err(bad(format!("expected an integer, got {v:?}"))),
        }
    }

    pub(crate) fn float(self) -> Result<f32> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            v => Err(bad(format!("expected a float, got {v:?}"))),
        }
    }

    /// Repeated varints, packed or one per field occurrence (appended to `out`).
    pub(crate) fn ints_into(self, out: &mut Vec<i64>) -> Result<()> {
        match self {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(b) => {
                let mut f = Fields::new(b);
                while f.at < b.len() {
                    out.push(f.varint()? as i64);
                }
            }
            v => return Err(bad(format!("expected integers, got {v:?}"))),
        }
        Ok(())
    }

    /// Repeated floats, packed or one per field occurrence (appended to `out`).
    pub(crate) fn floats_into(self, out: &mut Vec<f32>) -> Result<()> {
        match self {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Bytes(b) if b.len().is_multiple_of(4) => out.extend(
                b.chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
            ),
            v => return Err(bad(format!("expected floats, got {v:?}"))),
        }
        Ok(())
    }
}
