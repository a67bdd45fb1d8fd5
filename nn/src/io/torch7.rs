//! Importing Torch7 models from `.t7` files (binary format, 8-byte longs, as
//! `torch.save` writes on 64-bit machines, and the ASCII variant). Only an allow-list of `nn`
//! classes is accepted; serialized Lua functions are rejected, never run.
//! Every length is checked against the bytes left before allocating.

use std::collections::HashMap;

use crate::error::{NnError, Result};
use crate::layers::*;
use crate::module::{Module, StateMut};
use crate::sequential::Sequential;
use crate::table::{CAddTable, Concat, ConcatTable, Identity};

fn bad(what: impl Into<String>) -> NnError {
    NnError::Invalid {
        layer: "Torch7 file".into(),
        what: what.into(),
    }
}

/// A deserialized Lua value.
#[derive(Clone, Debug)]
enum Obj {
    Nil,
    Number(f64),
    Bool(bool),
    Str(String),
    /// An index into the reader's arena (tables and torch objects are shared
    /// by reference in the file).
    Ref(usize),
}

#[derive(Clone, Debug)]
enum Heap {
    Table(Vec<(Obj, Obj)>),
    /// A torch class instance other than tensors and storages: its fields.
    Object(String, Obj),
    Tensor {
        sizes: Vec<usize>,
        strides: Vec<usize>,
        offset: usize,
        storage: Obj,
    },
    Storage(Vec<f32>),
    /// Being read (a reference to it from inside itself).
    Pending,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    heap: Vec<Heap>,
    ids: HashMap<i32, usize>,
    /// The ASCII variant (`torch.save(f, x, 'ascii')`): numbers as text,
    /// whitespace-separated; strings and byte storages raw.
    ascii: bool,
}

impl Reader<'_> {
    /// The next whitespace-separated word (ASCII files).
    fn token(&mut self) -> Result<&str> {
        while self.b.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        let start = self.at;
        while self
            .b
            .get(self.at)
            .is_some_and(|c| !c.is_ascii_whitespace())
        {
            self.at += 1;
        }
        if start == self.at {
            return Err(bad(format!("truncated at byte {start}")));
        }
        std::str::from_utf8(&self.b[start..self.at])
            .map_err(|_| bad(format!("a number that is not text at byte {start}")))
    }
    fn text_int(&mut self) -> Result<i64> {
        let t = self.token()?;
        t.parse()
            .map_err(|_| bad(format!("{t:?} is not an integer")))
    }
    fn text_num(&mut self) -> Result<f64> {
        let t = self.token()?;
        match t {
            "nan" | "-nan" => Ok(f64::NAN),
            _ => t.parse().map_err(|_| bad(format!("{t:?} is not a number"))),
        }
    }
    /// The newline an ASCII file writes after each item, before raw bytes.
    fn skip_newline(&mut self) {
        if self.ascii && self.b.get(self.at) == Some(&b'\n') {
            self.at += 1;
        }
    }
    fn number(&mut self) -> Result<f64> {
        if self.ascii {
            return self.text_num();
        }
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| bad(format!("truncated at byte {}", self.at)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn int(&mut self) -> Result<i32> {
        if self.ascii {
            let v = self.text_int()?;
            return i32::try_from(v).map_err(|_| bad(format!("integer {v}")));
        }
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn long(&mut self) -> Result<i64> {
        if self.ascii {
            return self.text_int();
        }
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn size(&mut self, what: &str) -> Result<usize> {
        let v = self.long()?;
        usize::try_from(v).map_err(|_| bad(format!("{what} {v}")))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.int()?;
        let n = usize::try_from(n).map_err(|_| bad(format!("string length {n}")))?;
        self.skip_newline();
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn obj(&mut self, depth: usize) -> Result<Obj> {
        if depth > 256 {
            return Err(bad("objects nested more than 256 deep"));
        }
        let ty = self.int()?;
        Ok(match ty {
            0 => Obj::Nil,
            1 => Obj::Number(self.number()?),
            2 => Obj::Str(self.string()?),
            5 => Obj::Bool(self.int()? == 1),
            3 | 4 => {
                let id = self.int()?;
                if let Some(&k) = self.ids.get(&id) {
                    return Ok(Obj::Ref(k));
                }
                let k = self.heap.len();
                self.heap.push(Heap::Pending);
                self.ids.insert(id, k);
                let h = if ty == 3 {
                    self.table(depth)?
                } else {
                    self.torch(depth)?
                };
                self.heap[k] = h;
                Obj::Ref(k)
            }
            6..=8 => return Err(bad("a serialized Lua function: rejected, never run")),
            t => {
                return Err(bad(format!(
                    "unknown object type {t} at byte {}",
                    self.at - 4
                )));
            }
        })
    }

    fn table(&mut self, depth: usize) -> Result<Heap> {
        let n = self.int()?;
        let n = usize::try_from(n).map_err(|_| bad(format!("table size {n}")))?;
        // Each entry takes at least 8 bytes (two type tags; 4 as text).
        let least = if self.ascii { 4 } else { 8 };
        if n.saturating_mul(least) > self.b.len() - self.at {
            return Err(bad(format!("a table of {n} entries exceeds the file")));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.obj(depth + 1)?;
            let val = self.obj(depth + 1)?;
            v.push((k, val));
        }
        Ok(Heap::Table(v))
    }

    fn torch(&mut self, depth: usize) -> Result<Heap> {
        let version = self.string()?;
        let class = if version.starts_with("V ") {
            self.string()?
        } else {
            version
        };
        if class.starts_with("torch.") && class.ends_with("Tensor") {
            let nd = self.int()?;
            let nd = usize::try_from(nd)
                .ok()
                .filter(|&d| d <= 16)
                .ok_or_else(|| bad(format!("{class} with {nd} dimensions")))?;
            let sizes = (0..nd)
                .map(|_| self.size("size"))
                .collect::<Result<Vec<_>>>()?;
            let strides = (0..nd)
                .map(|_| self.size("stride"))
                .collect::<Result<Vec<_>>>()?;
            let offset = self.size("offset")?.saturating_sub(1);
            let storage = self.obj(depth + 1)?;
            return Ok(Heap::Tensor {
                sizes,
                strides,
                offset,
                storage,
            });
        }
        if let Some(kind) = class
            .strip_prefix("torch.")
            .and_then(|c| c.strip_suffix("Storage"))
        {
            let n = self.size("storage size")?;
            let width = match kind {
                "Float" | "Int" => 4,
                "Double" | "Long" => 8,
                "Byte" | "Char" => 1,
                "Short" => 2,
                k => return Err(bad(format!("torch.{k}Storage is not supported"))),
            };
            if self.ascii && width > 1 {
                // At least a digit and a separator per number.
                if n.saturating_mul(2) > self.b.len() - self.at + 1 {
                    return Err(bad(format!("a storage of {n} numbers exceeds the file")));
                }
                let data = (0..n)
                    .map(|_| self.text_num().map(|v| v as f32))
                    .collect::<Result<Vec<f32>>>()?;
                return Ok(Heap::Storage(data));
            }
            self.skip_newline();
            let raw = self.take(
                n.checked_mul(width)
                    .ok_or_else(|| bad("storage size overflows"))?,
            )?;
            let data = match kind {
                "Float" => raw
                    .chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect(),
                "Double" => raw
                    .chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                    .collect(),
                "Int" => raw
                    .chunks(4)
                    .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as f32)
                    .collect(),
                "Long" => raw
                    .chunks(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f32)
                    .collect(),
                "Short" => raw
                    .chunks(2)
                    .map(|c| i16::from_le_bytes(c.try_into().expect("2")) as f32)
                    .collect(),
                "Char" => raw.iter().map(|&c| c as i8 as f32).collect(),
                _ => raw.iter().map(|&c| c as f32).collect(),
            };
            return Ok(Heap::Storage(data));
        }
        if !class.starts_with("nn.") {
            return Err(bad(format!("class {class} is not allowed")));
        }
        let fields = self.obj(depth + 1)?;
        Ok(Heap::Object(class, fields))
    }
}

/// A view of a torch object's fields.
struct Fields<'a> {
    r: &'a Reader<'a>,
    class: String,
    map: Vec<(String, Obj)>,
}

impl<'a> Fields<'a> {
    fn of(r: &'a Reader<'a>, o: &Obj) -> Result<Fields<'a>> {
        let Obj::Ref(k) = o else {
            return Err(bad(format!("expected a module, found {o:?}")));
        };
        let Heap::Object(class, fields) = &r.heap[*k] else {
            return Err(bad("expected a module"));
        };
        let Obj::Ref(t) = fields else {
            return Err(bad(format!("{class} without fields")));
        };
        let Heap::Table(entries) = &r.heap[*t] else {
            return Err(bad(format!("{class} without fields")));
        };
        let map = entries
            .iter()
            .filter_map(|(k, v)| match k {
                Obj::Str(s) => Some((s.clone(), v.clone())),
                _ => None,
            })
            .collect();
        Ok(Fields {
            r,
            class: class.clone(),
            map,
        })
    }
    fn get(&self, name: &str) -> Option<&Obj> {
        self.map
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Obj::Nil))
    }
    fn num(&self, name: &str) -> Result<f64> {
        match self.get(name) {
            Some(Obj::Number(x)) => Ok(*x),
            o => Err(bad(format!(
                "{}: field {name} = {o:?} is not a number",
                self.class
            ))),
        }
    }
    fn num_or(&self, name: &str, default: f64) -> Result<f64> {
        if self.get(name).is_some() {
            self.num(name)
        } else {
            Ok(default)
        }
    }
    fn usize(&self, name: &str) -> Result<usize> {
        let v = self.num(name)?;
        if v >= 0.0 && v.fract() == 0.0 && v < 1e12 {
            Ok(v as usize)
        } else {
            Err(bad(format!("{}: field {name} = {v}", self.class)))
        }
    }
    fn usize_or(&self, name: &str, default: usize) -> Result<usize> {
        if self.get(name).is_some() {
            self.usize(name)
        } else {
            Ok(default)
        }
    }
    fn bool_or(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            Some(Obj::Bool(b)) => *b,
            _ => default,
        }
    }
    /// A tensor field as (sizes, row-major values).
    fn tensor(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(Obj::Ref(k)) = self.get(name) else {
            return Ok(None);
        };
        tensor_values(self.r, *k).map(Some)
    }
    /// The modules of a container, in order.
    fn modules(&self) -> Result<Vec<Obj>> {
        let Some(Obj::Ref(k)) = self.get("modules") else {
            return Ok(Vec::new());
        };
        let Heap::Table(entries) = &self.r.heap[*k] else {
            return Err(bad(format!("{}: modules is not a table", self.class)));
        };
        let mut items: Vec<(f64, Obj)> = entries
            .iter()
            .filter_map(|(k, v)| match k {
                Obj::Number(i) => Some((*i, v.clone())),
                _ => None,
            })
            .collect();
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }
}

fn tensor_values(r: &Reader<'_>, k: usize) -> Result<(Vec<usize>, Vec<f32>)> {
    let Heap::Tensor {
        sizes,
        strides,
        offset,
        storage,
    } = &r.heap[k]
    else {
        return Err(bad("expected a tensor"));
    };
    let n = sizes
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("tensor size overflows"))?;
    if sizes.is_empty() || n == 0 {
        return Ok((sizes.clone(), Vec::new()));
    }
    let Obj::Ref(s) = storage else {
        return Err(bad("a tensor without storage"));
    };
    let Heap::Storage(data) = &r.heap[*s] else {
        return Err(bad("a tensor whose storage is not a storage"));
    };
    // No more numbers than the storage holds (stride-0 expansions could
    // otherwise ask for any amount of memory).
    if n > data.len() {
        return Err(bad(format!(
            "a tensor of sizes {sizes:?} holds more numbers than its storage of {}",
            data.len()
        )));
    }
    // The largest element index must lie inside the storage.
    let last = sizes.iter().zip(strides).try_fold(*offset, |a, (&d, &st)| {
        a.checked_add((d - 1).checked_mul(st)?)
    });
    if last.is_none_or(|l| l >= data.len()) {
        return Err(bad(format!(
            "a tensor of sizes {sizes:?} and strides {strides:?} overruns its storage of {}",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; sizes.len()];
    for _ in 0..n {
        let pos = offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        out.push(data[pos]);
        for d in (0..sizes.len()).rev() {
            idx[d] += 1;
            if idx[d] < sizes[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok((sizes.clone(), out))
}

fn set(layer: &str, m: &mut dyn Module, values: &[(Vec<usize>, Vec<f32>)]) -> Result<()> {
    let params = m.parameters();
    if params.len() != values.len() {
        return Err(bad(format!(
            "{layer}: {} tensors for {} parameters",
            values.len(),
            params.len()
        )));
    }
    for ((w, _), (shape, data)) in params.iter().zip(values) {
        if w.numel() != data.len() {
            return Err(bad(format!(
                "{layer}: a tensor of shape {shape:?} for a parameter of shape {:?}",
                w.sizes()
            )));
        }
        w.as_slice_mut()?.copy_from_slice(data);
    }
    Ok(())
}

fn build(r: &Reader<'_>, o: &Obj) -> Result<Box<dyn Module>> {
    let f = Fields::of(r, o)?;
    let c = f.class.as_str();
    let weight_bias = |f: &Fields<'_>| -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let mut v = vec![
            f.tensor("weight")?
                .ok_or_else(|| bad(format!("{c} without a weight")))?,
        ];
        if let Some(b) = f.tensor("bias")? {
            v.push(b);
        }
        Ok(v)
    };
    Ok(match c {
        "nn.Sequential" => {
            let mut s = Sequential::new();
            for m in f.modules()? {
                s.push(build(r, &m)?);
            }
            Box::new(s)
        }
        "nn.ConcatTable" => {
            Box::new(f.modules()?.iter().try_fold(ConcatTable::new(), |t, m| {
                Ok::<_, NnError>(t.add_boxed(build(r, m)?))
            })?)
        }
        "nn.Concat" => {
            let dim = f.usize("dimension")?;
            let dim = dim
                .checked_sub(1)
                .ok_or_else(|| bad("nn.Concat dimension 0"))?;
            Box::new(f.modules()?.iter().try_fold(Concat::new(dim), |t, m| {
                Ok::<_, NnError>(t.add_boxed(build(r, m)?))
            })?)
        }
        "nn.CAddTable" => Box::new(CAddTable::new()),
        "nn.Identity" => Box::new(Identity::new()),
        "nn.ReLU" => Box::new(ReLU::new()),
        "nn.Tanh" => Box::new(Tanh::new()),
        "nn.Sigmoid" => Box::new(Sigmoid::new()),
        "nn.SoftMax" => Box::new(SoftMax::new()),
        "nn.LogSoftMax" => Box::new(LogSoftMax::new()),
        "nn.Dropout" => Box::new(Identity::new()),
        "nn.Linear" => {
            let v = weight_bias(&f)?;
            let [out, inp] = v[0].0[..] else {
                return Err(bad(format!("nn.Linear weight of shape {:?}", v[0].0)));
            };
            if out == 0 || inp == 0 {
                return Err(bad(format!("nn.Linear weight of shape {:?}", v[0].0)));
            }
            let mut l = Linear::new(inp, out)?;
            if v.len() == 1 {
                l = l.without_bias();
            }
            set(c, &mut l, &v)?;
            Box::new(l)
        }
        "nn.SpatialConvolution" | "nn.SpatialConvolutionMM" => {
            let (cin, cout) = (f.usize("nInputPlane")?, f.usize("nOutputPlane")?);
            let (kw, kh) = (f.usize("kW")?, f.usize("kH")?);
            let (dw, dh) = (f.usize_or("dW", 1)?, f.usize_or("dH", 1)?);
            let pad = f.usize_or("padding", 0)?;
            let (pw, ph) = (f.usize_or("padW", pad)?, f.usize_or("padH", pad)?);
            let v = weight_bias(&f)?;
            // The layer's size must be the file's weight, before allocating.
            let want = [cin, cout, kh, kw]
                .iter()
                .try_fold(1usize, |a, &x| a.checked_mul(x));
            if want != Some(v[0].1.len()) {
                return Err(bad(format!(
                    "{c} {cin} -> {cout}, {kh}x{kw} with a weight of {} numbers",
                    v[0].1.len()
                )));
            }
            let mut conv = SpatialConvolution::new(cin, cout, (kh, kw))?
                .stride(dh, dw)
                .pad(ph, pw);
            if v.len() == 1 {
                conv = conv.without_bias();
            }
            set(c, &mut conv, &v)?;
            Box::new(conv)
        }
        "nn.SpatialMaxPooling" | "nn.SpatialAveragePooling" => {
            let k = (f.usize("kH")?, f.usize("kW")?);
            let s = (f.usize_or("dH", 1)?, f.usize_or("dW", 1)?);
            let (ph, pw) = (f.usize_or("padH", 0)?, f.usize_or("padW", 0)?);
            let ceil = f.bool_or("ceil_mode", false);
            if c == "nn.SpatialMaxPooling" {
                let p = SpatialMaxPooling::new(k, s).pad(ph, pw);
                Box::new(if ceil { p.ceil() } else { p })
            } else {
                let p = SpatialAveragePooling::new(k, s)
                    .pad(ph, pw)
                    .count_include_pad(f.bool_or("count_include_pad", true));
                Box::new(if ceil { p.ceil() } else { p })
            }
        }
        "nn.SpatialBatchNormalization" | "nn.BatchNormalization" => {
            let (mean, var) = (f.tensor("running_mean")?, f.tensor("running_var")?);
            let (Some(mean), Some(var)) = (mean, var) else {
                return Err(bad(format!("{c} without running statistics")));
            };
            let ch = mean.1.len();
            let bn = if c == "nn.SpatialBatchNormalization" {
                BatchNormalization::spatial(ch)?
            } else {
                BatchNormalization::new(ch)?
            }
            .eps(f.num_or("eps", 1e-5)? as f32)
            .momentum(f.num_or("momentum", 0.1)? as f32);
            let affine = f.tensor("weight")?.is_some();
            let mut bn = if affine { bn } else { bn.without_affine() };
            if affine {
                let v = weight_bias(&f)?;
                set(c, &mut bn, &v)?;
            }
            let mut stats = [mean.1, var.1].into_iter();
            bn.visit_state(&mut |s| {
                if let (StateMut::F32(v), Some(x)) = (s, stats.next()) {
                    *v = x;
                }
            });
            Box::new(bn)
        }
        "nn.View" | "nn.Reshape" => {
            let Some(Obj::Ref(k)) = f.get("size") else {
                return Err(bad(format!("{c} without a size")));
            };
            let Heap::Storage(size) = &r.heap[*k] else {
                return Err(bad(format!("{c}: size is not a LongStorage")));
            };
            let sizes: Vec<usize> = size
                .iter()
                .filter(|&&d| d >= 0.0)
                .map(|&d| d as usize)
                .collect();
            Box::new(Reshape::batched(&sizes))
        }
        "nn.LookupTable" => {
            let v = vec![
                f.tensor("weight")?
                    .ok_or_else(|| bad("nn.LookupTable without a weight"))?,
            ];
            let [n, dim] = v[0].0[..] else {
                return Err(bad("nn.LookupTable weight is not 2-D"));
            };
            let mut l = LookupTable::new(n, dim)?;
            set(c, &mut l, &v)?;
            Box::new(l)
        }
        other => return Err(bad(format!("class {other} is not supported"))),
    })
}

/// Whether `bytes` look like a Torch7 file in the ASCII variant: a
/// one-digit type tag and a newline (a binary file starts with a
/// little-endian int32 tag).
pub fn is_ascii(bytes: &[u8]) -> bool {
    matches!(bytes, [b'0'..=b'8', b'\n' | b'\r' | b' ', ..])
}

/// Whether `bytes` start like a Torch7 file (binary or ASCII): the type tag
/// of its root object, a table (3), a torch object (4) or a Lua function
/// (6..8, which [`import`] rejects).
pub fn is_t7(bytes: &[u8]) -> bool {
    let binary = bytes.len() >= 4
        && matches!(
            i32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            3 | 4 | 6..=8
        );
    binary || (is_ascii(bytes) && matches!(bytes[0], b'3' | b'4' | b'6'..=b'8'))
}

/// Imports a Torch7 model from the bytes of a `.t7` file (binary or ASCII). Inputs and
/// outputs keep Torch7's layout (batch first); note that Torch7 modules that
/// index labels or dimensions from 1 (nn.Concat) are translated to 0-based.
pub fn import(bytes: &[u8]) -> Result<Box<dyn Module>> {
    crate::module::loading(|| import_file(bytes))
}

fn import_file(bytes: &[u8]) -> Result<Box<dyn Module>> {
    let mut r = Reader {
        b: bytes,
        at: 0,
        heap: Vec::new(),
        ids: HashMap::new(),
        ascii: is_ascii(bytes),
    };
    let root = r.obj(0)?;
    if r.ascii {
        while bytes.get(r.at).is_some_and(u8::is_ascii_whitespace) {
            r.at += 1;
        }
    }
    if r.at != bytes.len() {
        return Err(bad(format!("{} trailing bytes", bytes.len() - r.at)));
    }
    let mut m = build(&r, &root)?;
    m.evaluate();
    Ok(m)
}
