//! `Spec`: a module's type, hyperparameters and children, without weights,
//! and its compact binary encoding (checked against the bytes available
//! before anything is allocated).

use crate::error::{NnError, Result};

/// A module description: its kind (the layer's type name), its attributes
/// and its children (for containers). Weights travel separately.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The type, e.g. `SpatialConvolution`.
    pub kind: String,
    /// Named hyperparameters.
    pub attrs: Vec<(String, Attr)>,
    /// Child modules, in order.
    pub children: Vec<Spec>,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// A flag.
    Bool(bool),
    /// A string.
    Str(String),
    /// A list of integers.
    Ints(Vec<i64>),
}

impl Spec {
    /// A spec of `kind` with no attributes or children.
    pub fn new(kind: &str) -> Spec {
        Spec {
            kind: kind.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, name: &str, value: Attr) -> Spec {
        self.attrs.push((name.to_string(), value));
        self
    }

    /// Adds an integer attribute.
    pub fn int(self, name: &str, v: usize) -> Spec {
        self.attr(name, Attr::Int(v as i64))
    }

    /// Adds a float attribute.
    pub fn float(self, name: &str, v: f32) -> Spec {
        self.attr(name, Attr::Float(v as f64))
    }

    /// Adds a flag.
    pub fn flag(self, name: &str, v: bool) -> Spec {
        self.attr(name, Attr::Bool(v))
    }

    /// Adds a list of integers.
    pub fn ints(self, name: &str, v: &[usize]) -> Spec {
        self.attr(name, Attr::Ints(v.iter().map(|&x| x as i64).collect()))
    }

    /// Adds a child.
    pub fn child(mut self, c: Spec) -> Spec {
        self.children.push(c);
        self
    }

    fn find(&self, name: &str) -> Result<&Attr> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .ok_or_else(|| bad(format!("{}: missing attribute {name}", self.kind)))
    }

    /// Integer attribute `name`.
    pub fn get_i64(&self, name: &str) -> Result<i64> {
        match self.find(name)? {
            Attr::Int(v) => Ok(*v),
            a => Err(bad(format!(
                "{}: attribute {name} = {a:?} is not an integer",
                self.kind
            ))),
        }
    }

    /// Integer attribute `name` as a size (non-negative, at most 2^40).
    pub fn get_usize(&self, name: &str) -> Result<usize> {
        match self.find(name)? {
            Attr::Int(v) if (0..=1 << 40).contains(v) => Ok(*v as usize),
            a => Err(bad(format!(
                "{}: attribute {name} = {a:?} is not a size",
                self.kind
            ))),
        }
    }

    /// Float attribute `name`.
    pub fn get_f32(&self, name: &str) -> Result<f32> {
        match self.find(name)? {
            Attr::Float(v) if v.is_finite() => Ok(*v as f32),
            a => Err(bad(format!(
                "{}: attribute {name} = {a:?} is not a number",
                self.kind
            ))),
        }
    }

    /// Padding value `name`: a number or an infinity (max pooling pads
    /// with minus infinity), not NaN.
    pub fn get_pad_value(&self, name: &str) -> Result<f32> {
        match self.find(name)? {
            Attr::Float(v) if !v.is_nan() => Ok(*v as f32),
            a => Err(bad(format!(
                "{}: attribute {name} = {a:?} is not a padding value",
                self.kind
            ))),
        }
    }

    /// Flag `name`.
    pub fn get_bool(&self, name: &str) -> Result<bool> {
        match self.find(name)? {
            Attr::Bool(v) => Ok(*v),
            a => Err(bad(format!(
                "{}: attribute {name} = {a:?} is not a flag",
                self.kind
            ))),
        }
    }

    /// Flag `name`, or `default` where the spec does not have it (files from
    /// before the flag existed).
    pub fn get_bool_or(&self, name: &str, default: bool) -> Result<bool> {
        if self.attrs.iter().any(|(n, _)| n == name) {
            self.get_bool(name)
        } else {
            Ok(default)
        }
    }

    /// List attribute `name` as sizes.
    pub fn get_usizes(&self, name: &str) -> Result<Vec<usize>> {
        match self.find(name)? {
            Attr::Ints(v) if v.iter().all(|x| (0..=1 << 40).contains(x)) => {
                Ok(v.iter().map(|&x| x as usize).collect())
            }
            a => Err(bad(format!(
                "{}: attribute {name} = {a:?} is not a list of sizes",
                self.kind
            ))),
        }
    }

    /// Appends the encoding of this spec to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.kind);
        out.extend((self.attrs.len() as u32).to_le_bytes());
        for (name, a) in &self.attrs {
            put_str(out, name);
            match a {
                Attr::Int(v) => {
                    out.push(0);
                    out.extend(v.to_le_bytes());
                }
                Attr::Float(v) => {
                    out.push(1);
                    out.extend(v.to_le_bytes());
                }
                Attr::Bool(v) => {
                    out.push(2);
                    out.push(u8::from(*v));
                }
                Attr::Str(s) => {
                    out.push(3);
                    put_str(out, s);
                }
                Attr::Ints(v) => {
                    out.push(4);
                    out.extend((v.len() as u32).to_le_bytes());
                    v.iter().for_each(|x| out.extend(x.to_le_bytes()));
                }
            }
        }
        out.extend((self.children.len() as u32).to_le_bytes());
        self.children.iter().for_each(|c| c.encode(out));
    }

    /// Decodes a spec from `bytes`, returning it and the bytes used. Every
    /// count is checked against the bytes left before allocating; nesting
    /// deeper than 256 is refused.
    pub fn decode(bytes: &[u8]) -> Result<(Spec, usize)> {
        let mut r = Reader { b: bytes, at: 0 };
        let s = r.spec(0)?;
        Ok((s, r.at))
    }
}

fn bad(what: String) -> NnError {
    NnError::Invalid {
        layer: "model file".into(),
        what,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| bad(format!("truncated model description at byte {}", self.at)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A count of items of at least `min_bytes` each, checked against what is left.
    fn count(&mut self, min_bytes: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_bytes) > self.b.len() - self.at {
            return Err(bad(format!(
                "a count of {n} at byte {} exceeds the file",
                self.at - 4
            )));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<String> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| bad(format!("a name that is not UTF-8 at byte {}", self.at)))
    }

    fn spec(&mut self, depth: usize) -> Result<Spec> {
        if depth > 256 {
            return Err(bad("modules nested more than 256 deep".into()));
        }
        let kind = self.str()?;
        let na = self.count(6)?;
        let mut attrs = Vec::with_capacity(na);
        for _ in 0..na {
            let name = self.str()?;
            let tag = self.take(1)?[0];
            let a = match tag {
                0 => Attr::Int(self.u64()? as i64),
                1 => Attr::Float(f64::from_bits(self.u64()?)),
                2 => Attr::Bool(self.take(1)?[0] != 0),
                3 => Attr::Str(self.str()?),
                4 => {
                    let n = self.count(8)?;
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(self.u64()? as i64);
                    }
                    Attr::Ints(v)
                }
                t => return Err(bad(format!("unknown attribute tag {t} in {kind}"))),
            };
            attrs.push((name, a));
        }
        let nc = self.count(8)?;
        let mut children = Vec::with_capacity(nc);
        for _ in 0..nc {
            children.push(self.spec(depth + 1)?);
        }
        Ok(Spec {
            kind,
            attrs,
            children,
        })
    }
}
