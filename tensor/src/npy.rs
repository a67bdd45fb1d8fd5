//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), the CLI's format for
//! inputs and predictions.
//!
//! Reading treats the file as hostile: the header is bounded (1 MiB), parsed
//! without evaluation, and the element count is checked against the bytes
//! actually present before anything is allocated for the data. Writing goes to a
//! temporary file that is renamed into place, so a crash never leaves half a file.

use std::io::Write;
use std::path::Path;

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::shape::numel;
use crate::tensor::Tensor;

const MAGIC: &[u8] = b"\x93NUMPY";
const MAX_HEADER: usize = 1 << 20;
const MAX_DIMS: usize = 64;

fn format(what: impl Into<String>) -> TensorError {
    TensorError::Format {
        op: "read_npy",
        what: what.into(),
    }
}

/// The `descr` NumPy uses for `T`, without the byte-order character.
fn type_code<T: Element>() -> &'static str {
    match T::DTYPE {
        crate::element::DType::F32 => "f4",
        crate::element::DType::F64 => "f8",
        crate::element::DType::I64 => "i8",
    }
}

/// The parsed header dictionary.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> Result<Header> {
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| format("header is not a dictionary"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = quoted(rest).ok_or_else(|| format("expected a quoted key"))?;
        let after = after
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| format("expected ':'"))?
            .trim_start();
        rest = if let Some(inner) = after.strip_prefix('(') {
            let end = inner
                .find(')')
                .ok_or_else(|| format("unterminated tuple"))?;
            let dims = inner[..end]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<usize>()
                        .map_err(|_| format(format!("bad dimension {s:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            if dims.len() > MAX_DIMS {
                return Err(format(format!("{} dimensions", dims.len())));
            }
            if key == "shape" {
                shape = Some(dims);
            }
            &inner[end + 1..]
        } else if let Some((value, after)) = quoted(after) {
            if key == "descr" {
                descr = Some(value.to_string());
            }
            after
        } else if let Some(after) = after.strip_prefix("True") {
            if key == "fortran_order" {
                fortran = Some(true);
            }
            after
        } else if let Some(after) = after.strip_prefix("False") {
            if key == "fortran_order" {
                fortran = Some(false);
            }
            after
        } else {
            return Err(format(format!("unsupported value for {key:?}")));
        };
        rest = rest.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(Header {
        descr: descr.ok_or_else(|| format("no 'descr'"))?,
        fortran_order: fortran.ok_or_else(|| format("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| format("no 'shape'"))?,
    })
}

/// A `'...'` or `"..."` string at the start of `s`, and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let end = s[1..].find(q)? + 1;
    Some((&s[1..end], &s[end + 1..]))
}

impl<T: Element> Tensor<T> {
    /// Reads a `.npy` file holding `T` values.
    pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor<T>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TensorError::Io {
            op: "read_npy",
            what: format!("{}: {e}", path.display()),
        })?;
        Tensor::from_npy_bytes(&bytes).map_err(|e| match e {
            TensorError::Format { op, what } => TensorError::Format {
                op,
                what: format!("{}: {what}", path.display()),
            },
            other => other,
        })
    }

    /// Decodes the bytes of a `.npy` file.
    pub fn from_npy_bytes(bytes: &[u8]) -> Result<Tensor<T>> {
        if bytes.len() < 10 || &bytes[..6] != MAGIC {
            return Err(format("not a .npy file (bad magic)"));
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            v => return Err(format(format!("unsupported format version {v}"))),
        };
        if header_len > MAX_HEADER || start + header_len > bytes.len() {
            return Err(format(format!(
                "header of {header_len} bytes does not fit the file"
            )));
        }
        let text = std::str::from_utf8(&bytes[start..start + header_len])
            .map_err(|_| format("header is not text"))?;
        let header = parse_header(text)?;
        let code = type_code::<T>();
        let order = header.descr.chars().next().map_or(0, char::len_utf8);
        let swap = match header.descr.split_at(order) {
            ("<" | "=", c) if c == code => false,
            (">", c) if c == code => true,
            _ => {
                return Err(format(format!(
                    "element type {:?} is not {:?} (<{code})",
                    header.descr,
                    T::DTYPE
                )));
            }
        };
        let n = numel("read_npy", &header.shape)?;
        let data = &bytes[start + header_len..];
        let width = T::DTYPE.size();
        if n.checked_mul(width) != Some(data.len()) {
            return Err(format(format!(
                "shape {:?} needs {} data bytes, the file has {}",
                header.shape,
                n.saturating_mul(width),
                data.len()
            )));
        }
        let values: Vec<T> = data
            .chunks_exact(width)
            .map(|c| {
                if swap {
                    let mut b = c.to_vec();
                    b.reverse();
                    T::from_le_slice(&b)
                } else {
                    T::from_le_slice(c)
                }
            })
            .collect();
        if header.fortran_order {
            // Column-major: the data is the transpose's row-major layout.
            let rev: Vec<usize> = header.shape.iter().rev().copied().collect();
            let t = Tensor::from_vec(values, &rev)?;
            let dims: Vec<usize> = (0..rev.len()).rev().collect();
            Ok(t.permute(&dims)?.contiguous())
        } else {
            Tensor::from_vec(values, &header.shape)
        }
    }

    /// Encodes as a version 1.0 `.npy` (row-major, little-endian).
    pub fn to_npy_bytes(&self) -> Vec<u8> {
        let shape = match self.sizes.len() {
            1 => format!("({},)", self.sizes[0]),
            _ => format!(
                "({})",
                self.sizes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header = format!(
            "{{'descr': '<{}', 'fortran_order': False, 'shape': {shape}, }}",
            type_code::<T>()
        );
        // Pad with spaces so the data starts at a multiple of 64 bytes.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.numel() * T::DTYPE.size());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        self.for_each(|x| x.to_le_bytes_vec(&mut out));
        out
    }

    /// Writes a `.npy` file atomically (temporary file, fsync, rename).
    pub fn write_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |e: std::io::Error| TensorError::Io {
            op: "write_npy",
            what: format!("{}: {e}", path.display()),
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.to_npy_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}
