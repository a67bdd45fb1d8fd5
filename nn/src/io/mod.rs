//! The native model format: a model's description ([`Spec`]: layer types,
//! hyperparameters, structure) and its weights and state, saved and loaded
//! bitwise.
//!
//! Layout (little-endian): `BDLMODEL`, version `u32` (2), description length
//! `u64`, its CRC-32 `u32`, the description, zero bytes up to the alignment
//! below (version 2; none in version 1, which still loads), the flat weights
//! (one tensor in the tensor crate's checksummed `BDLT` encoding, in
//! [`Module::visit_parameters`] order, its numbers starting at a multiple of
//! 64 bytes into the file), and the non-parameter state (count `u64`, then
//! per item a tag: 0 and a `BDLT` tensor, or 1 and a `u64`). Every length is
//! checked against the bytes present before it is used.
//!
//! [`load`] maps the file into memory where the OS allows: the model's
//! weights are then the file's pages, read (checksummed) but not copied,
//! until something writes to them (training), which copies them first.

pub mod caffe;
pub mod onnx;
mod onnx_export;
mod protobuf;
mod spec;
pub(crate) mod state;
pub mod torch7;

pub use onnx_export::export as export_onnx;
pub use spec::{Attr, Spec};

use std::fs;
use std::path::Path;

use std::sync::Arc;

use bigdl_tensor::{Mapping, Tensor, crc32};

use crate::error::{NnError, Result};
use crate::graph::GraphBuilder;
use crate::layers::*;
use crate::module::{Module, compact_onto};
use crate::sequential::Sequential;
use crate::table::*;

const MAGIC: &[u8; 8] = b"BDLMODEL";
const VERSION: u32 = 2;
/// The flat weights' numbers start at a multiple of this many bytes.
const ALIGN: usize = 64;
/// Bytes of a rank-1 `BDLT` header (magic, version, type, rank, size, CRC).
const FLAT_HEADER: usize = 20;

/// Zero bytes between a `desc_len`-byte description and the weights.
fn padding(desc_len: usize) -> usize {
    (ALIGN - (24 + desc_len + FLAT_HEADER) % ALIGN) % ALIGN
}

fn bad(path: &Path, what: impl Into<String>) -> NnError {
    NnError::Data {
        path: path.display().to_string(),
        what: what.into(),
    }
}

fn unsupported(kind: &str) -> NnError {
    NnError::Invalid {
        layer: "model file".into(),
        what: format!("unknown module type {kind}"),
    }
}

/// The encoded model: description, weights and state.
pub fn encode(model: &mut dyn Module) -> Result<Vec<u8>> {
    let spec = model.spec().ok_or_else(|| NnError::Invalid {
        layer: model.name().to_string(),
        what: "this model holds a module the native format cannot describe".into(),
    })?;
    let mut desc = Vec::new();
    spec.encode(&mut desc);
    let mut out = Vec::new();
    out.extend(MAGIC);
    out.extend(VERSION.to_le_bytes());
    out.extend((desc.len() as u64).to_le_bytes());
    out.extend(crc32(&desc).to_le_bytes());
    out.extend(&desc);
    out.resize(out.len() + padding(desc.len()), 0);
    // The weights in parameter order, copied into one tensor.
    let mut flat = Vec::new();
    model.visit_parameters(&mut |w, _| flat.extend(w.to_vec()));
    let n = flat.len();
    Tensor::from_vec(flat, &[n])?.encode(&mut out);
    state::encode_state(&mut [model], &mut out)?;
    Ok(out)
}

/// Saves `model` to `path` atomically (temporary file, fsync, rename).
pub fn save(model: &mut dyn Module, path: &Path) -> Result<()> {
    let bytes = encode(model)?;
    let io = |e: std::io::Error| NnError::Io {
        path: path.display().to_string(),
        what: e.to_string(),
    };
    let tmp = path.with_extension("tmp-bdl");
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)
}

/// Loads a model saved by [`save`]: rebuilt from its description, weights
/// and state restored, parameters compacted. The file is memory-mapped where
/// the OS allows, and the weights stay the file's pages (no copy) until
/// written; elsewhere it is read.
pub fn load(path: &Path) -> Result<Box<dyn Module>> {
    let decoded = match Mapping::open(path) {
        Ok(map) => crate::module::loading(|| decode_model(map.bytes(), Some(&map))),
        Err(_) => {
            let bytes = fs::read(path).map_err(|e| NnError::Io {
                path: path.display().to_string(),
                what: e.to_string(),
            })?;
            decode(&bytes)
        }
    };
    decoded.map_err(|e| match e {
        NnError::Data { what, .. } => bad(path, what),
        other => bad(path, other.to_string()),
    })
}

/// Imports a model file of any format this build reads, detected from its
/// content: the native format, Torch7 (binary or ASCII) or ONNX. (Caffe
/// needs two files: [`caffe::import`].)
pub fn import_any(bytes: &[u8]) -> Result<Box<dyn Module>> {
    if is_native(bytes) {
        return decode(bytes);
    }
    if torch7::is_t7(bytes) {
        return torch7::import(bytes);
    }
    onnx::import(bytes, &[]).map_err(|e| {
        bad(
            Path::new("model"),
            format!("neither a bigdl, Torch7 nor ONNX model this build can import ({e})"),
        )
    })
}

/// Whether `bytes` start like a native model file.
pub fn is_native(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Decodes a model from the bytes of a native model file.
pub fn decode(bytes: &[u8]) -> Result<Box<dyn Module>> {
    crate::module::loading(|| decode_model(bytes, None))
}

/// Decodes `bytes`, which are `map`'s when given (the weights are then
/// taken from the mapping without copying).
fn decode_model(bytes: &[u8], map: Option<&Arc<Mapping>>) -> Result<Box<dyn Module>> {
    let here = Path::new("model");
    if bytes.len() < 24 || !is_native(bytes) {
        return Err(bad(here, "not a bigdl model file"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != 1 && version != VERSION {
        return Err(bad(
            here,
            format!("model format version {version}, this build reads 1 and {VERSION}"),
        ));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let rest = &bytes[24..];
    if len > rest.len() as u64 {
        return Err(bad(
            here,
            format!("a description of {len} bytes in a file of {}", bytes.len()),
        ));
    }
    let desc = &rest[..len as usize];
    if crc32(desc) != u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes")) {
        return Err(bad(here, "description checksum mismatch"));
    }
    let (spec, used) = Spec::decode(desc)?;
    if used != desc.len() {
        return Err(bad(here, "trailing bytes after the description"));
    }
    let mut at = 24 + desc.len();
    if version >= 2 {
        let pad = padding(desc.len());
        if bytes.len() < at + pad || bytes[at..at + pad].iter().any(|&b| b != 0) {
            return Err(bad(here, "missing or damaged padding before the weights"));
        }
        at += pad;
    }
    let (w, n) = match map {
        Some(map) => Tensor::<f32>::decode_mapped(map, at),
        None => Tensor::<f32>::decode(&bytes[at..]),
    }
    .map_err(|e| bad(here, e.to_string()))?;
    at += n;
    // The description may not make us allocate more than the file holds.
    let floats = spec_floats(&spec);
    if floats > 4 * w.numel() as u128 + (1 << 20) {
        return Err(bad(
            here,
            format!(
                "the description asks for about {floats} numbers, the file holds {} weights",
                w.numel()
            ),
        ));
    }
    let mut model = build(&spec)?;
    let params = crate::module::count(model.as_mut());
    if w.numel() != params {
        return Err(bad(
            here,
            format!("{} weights for a model of {params}", w.numel()),
        ));
    }
    compact_onto(model.as_mut(), w.view(&[params])?)?;
    let bad_here = |what: String| bad(here, what);
    let state = state::decode_state(bytes, &mut at, &bad_here)?;
    if at != bytes.len() {
        return Err(bad(here, "trailing bytes after the state"));
    }
    if !state::state_fits(&state::state_shape(&mut [model.as_mut()]), &state) {
        return Err(bad(
            here,
            "the saved state does not match the described model",
        ));
    }
    state::apply_state(&mut [model.as_mut()], state);
    Ok(model)
}

/// An upper bound on the numbers (parameters, gradients, statistics) that
/// building `s` allocates, from its attributes alone, before any allocation:
/// weights and gradients count twice. Saturates instead of overflowing.
fn spec_floats(s: &Spec) -> u128 {
    let u = |n: &str| s.get_usize(n).map_or(0, |v| v as u128);
    let prod = |n: &str| {
        s.get_usizes(n).map_or(0, |v| {
            v.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128))
        })
    };
    let own = match s.kind.as_str() {
        "Linear" => u("in").saturating_mul(u("out")).saturating_add(u("out")),
        "SpatialConvolution" | "SpatialFullConvolution" => u("in")
            .saturating_mul(u("out"))
            .saturating_mul(prod("kernel"))
            .saturating_add(u("out")),
        "CMul" | "CAdd" | "Scale" => prod("size").saturating_mul(2),
        "PReLU" => u("planes"),
        "BatchNormalization" => u("channels").saturating_mul(2),
        "Constant" => prod("dims"),
        "LookupTable" => u("n").saturating_mul(u("dim")),
        "RnnCell" | "LSTM" | "GRU" => {
            let (i, h) = (u("input"), u("hidden"));
            // (LSTM peepholes: 3 H more.)
            i.saturating_add(h)
                .saturating_add(3)
                .saturating_mul(h)
                .saturating_mul(4)
        }
        _ => 0,
    };
    s.children.iter().fold(own.saturating_mul(2), |a, c| {
        a.saturating_add(spec_floats(c))
    })
}

fn pair(s: &Spec, name: &str) -> Result<(usize, usize)> {
    match s.get_usizes(name)?[..] {
        [a, b] => Ok((a, b)),
        _ => Err(unsupported(&format!(
            "{} with a {name} that is not a pair",
            s.kind
        ))),
    }
}

fn children(s: &Spec) -> Result<Vec<Box<dyn Module>>> {
    s.children.iter().map(build).collect()
}

/// Builds the module a spec describes (fresh weights; [`load`] restores
/// them).
pub fn build(s: &Spec) -> Result<Box<dyn Module>> {
    let f = |n: &str| s.get_f32(n);
    let u = |n: &str| s.get_usize(n);
    Ok(match s.kind.as_str() {
        "Linear" => {
            let l = Linear::new(u("in")?, u("out")?)?;
            Box::new(if s.get_bool("bias")? {
                l
            } else {
                l.without_bias()
            })
        }
        "SpatialConvolution" => {
            let (sh, sw) = pair(s, "stride")?;
            let (ph, pw) = pair(s, "pad")?;
            let (dh, dw) = pair(s, "dilation")?;
            let c = SpatialConvolution::with_groups(
                u("in")?,
                u("out")?,
                pair(s, "kernel")?,
                u("groups")?,
            )?
            .stride(sh, sw)
            .pad(ph, pw)
            .dilation(dh, dw);
            Box::new(if s.get_bool("bias")? {
                c
            } else {
                c.without_bias()
            })
        }
        "SpatialFullConvolution" => {
            let (sh, sw) = pair(s, "stride")?;
            let (ph, pw) = pair(s, "pad")?;
            let (ah, aw) = pair(s, "adj")?;
            let (dh, dw) = pair(s, "dilation")?;
            let c =
                SpatialFullConvolution::new(u("in")?, u("out")?, pair(s, "kernel")?, u("groups")?)?
                    .stride(sh, sw)
                    .pad(ph, pw)
                    .adj(ah, aw)
                    .dilation(dh, dw);
            Box::new(if s.get_bool("bias")? {
                c
            } else {
                c.without_bias()
            })
        }
        "SpatialMaxPooling" | "SpatialAveragePooling" => {
            let (ph, pw) = pair(s, "pad")?;
            let global = s.get_bool("global")?;
            let ceil = s.get_bool("ceil")?;
            if s.kind == "SpatialMaxPooling" {
                let p = SpatialMaxPooling::new(pair(s, "kernel")?, pair(s, "stride")?).pad(ph, pw);
                Box::new(if ceil { p.ceil() } else { p })
            } else {
                let p = if global {
                    SpatialAveragePooling::global()
                } else {
                    SpatialAveragePooling::new(pair(s, "kernel")?, pair(s, "stride")?).pad(ph, pw)
                };
                let p = p.count_include_pad(s.get_bool("count_include_pad")?);
                Box::new(if ceil { p.ceil() } else { p })
            }
        }
        "ReLU" => Box::new(ReLU::new()),
        "Tanh" => Box::new(Tanh::new()),
        "Sigmoid" => Box::new(Sigmoid::new()),
        "SoftMax" => Box::new(SoftMax::new()),
        "SoftMin" => Box::new(SoftMin::new()),
        "LogSoftMax" => Box::new(LogSoftMax::new()),
        "ReLU6" => Box::new(ReLU6::new()),
        "LeakyReLU" => Box::new(LeakyReLU::new(f("negval")?)),
        "ELU" => Box::new(ELU::new(f("alpha")?)),
        "HardTanh" => Box::new(HardTanh::new(f("min")?, f("max")?)),
        "SoftPlus" => Box::new(SoftPlus::new(f("beta")?)),
        "Threshold" => Box::new(Threshold::new(f("threshold")?, f("value")?)),
        "Abs" => Box::new(Abs::new()),
        "Power" => Box::new(Power::new(f("power")?, f("scale")?, f("shift")?)),
        "Sqrt" => Box::new(Sqrt::new()),
        "Square" => Box::new(Square::new()),
        "Exp" => Box::new(Exp::new()),
        "Log" => Box::new(Log::new()),
        "MulConstant" => Box::new(MulConstant::new(f("c")?)),
        "AddConstant" => Box::new(AddConstant::new(f("c")?)),
        "Reshape" => {
            let sizes = s.get_usizes("sizes")?;
            Box::new(if s.get_bool("batched")? {
                Reshape::batched(&sizes)
            } else {
                Reshape::new(&sizes)
            })
        }
        "View" => match s.attrs.iter().find(|(n, _)| n == "sizes") {
            Some((_, Attr::Ints(v))) if v.iter().all(|&x| x >= -1) => Box::new(View::new(
                &v.iter()
                    .map(|&x| (x >= 0).then_some(x as usize))
                    .collect::<Vec<_>>(),
            )),
            _ => return Err(unsupported("View without sizes")),
        },
        "Squeeze" => match s.attrs.iter().find(|(n, _)| n == "dim") {
            Some((_, Attr::Int(-1))) => Box::new(Squeeze::new(None)),
            _ => Box::new(Squeeze::new(Some(u("dim")?))),
        },
        "Unsqueeze" => Box::new(Unsqueeze::new(u("dim")?)),
        "Transpose" => {
            let flat = s.get_usizes("pairs")?;
            let pairs: Vec<(usize, usize)> = flat
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0], c[1]))
                .collect();
            Box::new(Transpose::new(&pairs))
        }
        "Narrow" => Box::new(Narrow::signed(
            u("dim")?,
            u("offset")?,
            s.get_i64("length")?,
        )),
        "Select" => Box::new(Select::signed(u("dim")?, s.get_i64("index")?)),
        "Contiguous" => Box::new(Contiguous::new()),
        "Flatten" => Box::new(Flatten::new()),
        "SpatialZeroPadding" => match s.get_usizes("dims")?[..] {
            [0, l, r, 1, t, b] => Box::new(SpatialZeroPadding::new(l, r, t, b)),
            _ => return Err(unsupported("SpatialZeroPadding with other dimensions")),
        },
        "Padding" => match s.get_usizes("dims")?[..] {
            [d, a, b] => Box::new(Padding::new(d, a, b, s.get_pad_value("value")?)),
            _ => return Err(unsupported("Padding of several dimensions")),
        },
        "SamePadding" => Box::new(SamePadding::new(
            pair(s, "kernel")?,
            pair(s, "stride")?,
            pair(s, "dilation")?,
            s.get_bool("lower")?,
            s.get_pad_value("value")?,
        )?),
        "Reverse" => Box::new(Reverse::new(u("dim")?)),
        "Sum" => Box::new(Sum::new(u("dim")?)),
        "Mean" => Box::new(Mean::new(u("dim")?)),
        "Max" => Box::new(Max::new(u("dim")?)),
        "CMul" => Box::new(CMul::new(&s.get_usizes("size")?)?),
        "CAdd" => Box::new(CAdd::new(&s.get_usizes("size")?)?),
        "Scale" => Box::new(Scale::new(&s.get_usizes("size")?)?),
        "PReLU" => Box::new(PReLU::new(u("planes")?)?),
        "BatchNormalization" => {
            let c = u("channels")?;
            let bn = if s.get_bool("any_layout")? {
                BatchNormalization::any_layout(c)?
            } else if s.get_bool("spatial")? {
                BatchNormalization::spatial(c)?
            } else {
                BatchNormalization::new(c)?
            }
            .eps(f("eps")?)
            .momentum(f("momentum")?);
            Box::new(if s.get_bool("affine")? {
                bn
            } else {
                bn.without_affine()
            })
        }
        "SpatialCrossMapLRN" => Box::new(SpatialCrossMapLRN::new(
            u("size")?,
            f("alpha")?,
            f("beta")?,
            f("k")?,
        )),
        "Dropout" => Box::new(Dropout::new(f("p")?)?),
        "LookupTable" => Box::new(LookupTable::new(u("n")?, u("dim")?)?),
        "Recurrent" => match &s.children[..] {
            [c] => {
                // Files from before the flags hold recurrences without them.
                let mut r = Recurrent::new(Cell::from_spec(c)?);
                if s.get_bool_or("reverse", false)? {
                    r = r.reversed();
                }
                if s.get_bool_or("lengths", false)? {
                    r = r.with_lengths();
                }
                if s.get_bool_or("final_states", false)? {
                    r = r.with_final_states();
                }
                Box::new(r)
            }
            _ => return Err(unsupported("Recurrent without exactly one cell")),
        },
        "BiRecurrent" => match &s.children[..] {
            [a, b] => Box::new(BiRecurrent::new(Cell::from_spec(a)?, Cell::from_spec(b)?)?),
            _ => return Err(unsupported("BiRecurrent without exactly two cells")),
        },
        "TimeDistributed" => match &s.children[..] {
            [c] => Box::new(TimeDistributed::boxed(build(c)?)),
            _ => return Err(unsupported("TimeDistributed without exactly one module")),
        },
        "Sequential" => {
            let mut m = Sequential::new();
            for c in children(s)? {
                m.push(c);
            }
            Box::new(m)
        }
        "ConcatTable" => Box::new(
            children(s)?
                .into_iter()
                .fold(ConcatTable::new(), |t, c| t.add_boxed(c)),
        ),
        "ParallelTable" => Box::new(
            children(s)?
                .into_iter()
                .fold(ParallelTable::new(), |t, c| t.add_boxed(c)),
        ),
        "Concat" => Box::new(
            children(s)?
                .into_iter()
                .fold(Concat::new(u("dim")?), |t, c| t.add_boxed(c)),
        ),
        "Identity" => Box::new(Identity::new()),
        "Constant" => Box::new(crate::table::Constant::zeros(&s.get_usizes("dims")?)?),
        "CAddTable" => Box::new(CAddTable::new()),
        "CMulTable" => Box::new(CMulTable::new()),
        "CMaxTable" => Box::new(crate::table::CMaxTable::new()),
        "JoinTable" => Box::new(JoinTable::new(u("dim")?)),
        "SplitTable" => Box::new(SplitTable::new(u("dim")?)),
        "SelectTable" => Box::new(SelectTable::new(u("index")?)),
        "Graph" => {
            let mut g = GraphBuilder::new();
            let mut nodes = Vec::with_capacity(s.children.len());
            for (k, c) in s.children.iter().enumerate() {
                let preds = s.get_usizes(&format!("preds{k}"))?;
                let node = if preds.is_empty() {
                    g.input()
                } else {
                    let ins: Vec<_> = preds
                        .iter()
                        .map(|&p| {
                            nodes
                                .get(p)
                                .copied()
                                .ok_or_else(|| unsupported("Graph with a forward reference"))
                        })
                        .collect::<Result<_>>()?;
                    g.boxed(build(c)?, &ins)?
                };
                nodes.push(node);
            }
            let pick = |name: &str| -> Result<Vec<_>> {
                s.get_usizes(name)?
                    .iter()
                    .map(|&i| {
                        nodes
                            .get(i)
                            .copied()
                            .ok_or_else(|| unsupported("Graph with a missing node"))
                    })
                    .collect()
            };
            Box::new(g.build(&pick("inputs")?, &pick("outputs")?)?)
        }
        k => return Err(unsupported(k)),
    })
}
