//! Importing ONNX models (opset 13 and later) for the operators our layers
//! cover. The file is read with a bounds-checked protobuf reader; tensor
//! sizes are checked against the bytes that hold them; anything not covered
//! is an error naming the operator and what is unsupported.

use std::collections::HashMap;
use std::sync::Arc;

use bigdl_tensor::Tensor;

use bigdl_kernels::memory::le_values;

use super::protobuf::{Value, bad, each_field};
use crate::error::{NnError, Result};
use crate::graph::{GraphBuilder, Node};
use crate::layers::*;
use crate::module::{Module, StateMut};
use crate::sequential::Sequential;
use crate::table::{CAddTable, CMulTable, Constant, Identity, JoinTable, SelectTable};

/// A tensor from the file (values converted to f32; integer tensors also
/// kept as integers for shape inputs). The values are shared, not copied,
/// with the layers that take them as parameters ([`Tensor::from_shared`]).
#[derive(Clone, Debug)]
pub struct OnnxTensor {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub dims: Vec<usize>,
    /// The values as f32.
    pub data: Arc<Vec<f32>>,
    /// The values as integers (integer tensors only).
    pub ints: Option<Vec<i64>>,
}

impl OnnxTensor {
    /// As a tensor of its shape.
    pub fn tensor(&self) -> Result<Tensor<f32>> {
        Ok(Tensor::from_shared(self.data.clone(), &self.dims)?)
    }
}

/// Parses a `TensorProto`.
pub fn parse_tensor(msg: &[u8]) -> Result<OnnxTensor> {
    let (mut name, mut dims, mut dtype) = (String::new(), Vec::new(), 0i64);
    let (mut floats, mut ints, mut doubles) = (Vec::new(), Vec::new(), Vec::new());
    let mut raw: &[u8] = &[];
    each_field(msg, |f, v| {
        match f {
            1 => v.ints_into(&mut dims)?,
            2 => dtype = v.int()?,
            4 => v.floats_into(&mut floats)?,
            5 | 7 => v.ints_into(&mut ints)?,
            8 => name = v.string()?,
            9 => raw = v.bytes()?,
            10 => match v {
                Value::Fixed64(x) => doubles.push(f64::from_bits(x)),
                Value::Bytes(b) if b.len().is_multiple_of(8) => doubles.extend(
                    b.chunks(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
                ),
                v => return Err(bad(format!("bad double_data {v:?}"))),
            },
            _ => {}
        }
        Ok(())
    })?;
    let dims: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("tensor {name}: dimension {d}"))))
        .collect::<Result<_>>()?;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("tensor {name}: shape {dims:?} overflows")))?;
    let (width, is_int) = match dtype {
        1 => (4, false),
        6 => (4, true),
        7 => (8, true),
        11 => (8, false),
        t => {
            return Err(bad(format!(
                "tensor {name}: element type {t} is not supported"
            )));
        }
    };
    let (data, ints): (Vec<f32>, Option<Vec<i64>>) = if !raw.is_empty() {
        if raw.len() != n.saturating_mul(width) {
            return Err(bad(format!(
                "tensor {name}: {} bytes of data for shape {dims:?}",
                raw.len()
            )));
        }
        // The lengths were checked above: `le_values` cannot fail.
        let values = |what| bad(format!("tensor {name}: {what}"));
        match dtype {
            1 => (
                le_values::<f32>(raw).ok_or_else(|| values("f32 data"))?,
                None,
            ),
            11 => (
                raw.chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                    .collect(),
                None,
            ),
            6 => {
                let i: Vec<i64> = raw
                    .chunks(4)
                    .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as i64)
                    .collect();
                (i.iter().map(|&x| x as f32).collect(), Some(i))
            }
            _ => {
                let i = le_values::<i64>(raw).ok_or_else(|| values("i64 data"))?;
                (i.iter().map(|&x| x as f32).collect(), Some(i))
            }
        }
    } else if is_int {
        (ints.iter().map(|&x| x as f32).collect(), Some(ints))
    } else if dtype == 11 {
        (doubles.iter().map(|&x| x as f32).collect(), None)
    } else {
        (floats, None)
    };
    if data.len() != n {
        return Err(bad(format!(
            "tensor {name}: {} values for shape {dims:?}",
            data.len()
        )));
    }
    Ok(OnnxTensor {
        name,
        dims,
        data: Arc::new(data),
        ints,
    })
}

/// An attribute of a node (all kinds are parsed; those no supported operator
/// reads still show in error messages).
#[derive(Clone, Debug)]
#[allow(dead_code)]
enum AttrV {
    Float(f32),
    Int(i64),
    Str(String),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strs(Vec<String>),
    Tensor(OnnxTensor),
}

#[derive(Debug, Default)]
struct NodeP {
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: HashMap<String, AttrV>,
}

impl NodeP {
    fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(AttrV::Int(v)) => Ok(*v),
            Some(a) => Err(self.unsupported(&format!("attribute {name} = {a:?}"))),
        }
    }
    fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(AttrV::Float(v)) => Ok(*v),
            Some(a) => Err(self.unsupported(&format!("attribute {name} = {a:?}"))),
        }
    }
    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(AttrV::Ints(v)) => Ok(Some(v.clone())),
            Some(a) => Err(self.unsupported(&format!("attribute {name} = {a:?}"))),
        }
    }
    fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(AttrV::Str(v)) => Ok(v.clone()),
            Some(a) => Err(self.unsupported(&format!("attribute {name} = {a:?}"))),
        }
    }
    fn unsupported(&self, what: &str) -> NnError {
        NnError::Invalid {
            layer: format!("ONNX {}", self.op),
            what: format!("{what} is not supported"),
        }
    }
}

fn parse_attr(msg: &[u8]) -> Result<(String, Option<AttrV>)> {
    let mut name = String::new();
    let (mut f, mut i, mut s, mut t) = (None, None, None, None);
    let (mut floats, mut ints, mut strs) = (Vec::new(), Vec::new(), Vec::new());
    let mut ty = 0;
    each_field(msg, |n, v| {
        match n {
            1 => name = v.string()?,
            2 => f = Some(v.float()?),
            3 => i = Some(v.int()?),
            4 => s = Some(v.string()?),
            5 => t = Some(parse_tensor(v.bytes()?)?),
            7 => v.floats_into(&mut floats)?,
            8 => v.ints_into(&mut ints)?,
            9 => strs.push(v.string()?),
            20 => ty = v.int()?,
            _ => {}
        }
        Ok(())
    })?;
    // AttributeProto.AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4,
    // FLOATS 6, INTS 7, STRINGS 8.
    let v = match ty {
        1 => f.map(AttrV::Float),
        2 => i.map(AttrV::Int),
        3 => s.map(AttrV::Str),
        4 => t.map(AttrV::Tensor),
        6 => Some(AttrV::Floats(floats)),
        7 => Some(AttrV::Ints(ints)),
        8 => Some(AttrV::Strs(strs)),
        _ => None,
    };
    Ok((name, v))
}

fn parse_node(msg: &[u8]) -> Result<NodeP> {
    let mut node = NodeP::default();
    each_field(msg, |n, v| {
        match n {
            1 => node.inputs.push(v.string()?),
            2 => node.outputs.push(v.string()?),
            4 => node.op = v.string()?,
            5 => {
                let (name, a) = parse_attr(v.bytes()?)?;
                if let Some(a) = a {
                    node.attrs.insert(name, a);
                }
            }
            7 => {
                let d = v.string()?;
                if !d.is_empty() && d != "ai.onnx" {
                    return Err(bad(format!("operator domain {d} is not supported")));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(node)
}

/// `(name, rank if known)` of a `ValueInfoProto`.
fn parse_value_info(msg: &[u8]) -> Result<(String, Option<usize>)> {
    let (mut name, mut rank) = (String::new(), None);
    each_field(msg, |n, v| {
        match n {
            1 => name = v.string()?,
            2 => each_field(v.bytes()?, |n, v| {
                if n == 1 {
                    each_field(v.bytes()?, |n, v| {
                        if n == 2 {
                            let mut dims = 0;
                            each_field(v.bytes()?, |n, _| {
                                dims += usize::from(n == 1);
                                Ok(())
                            })?;
                            rank = Some(dims);
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((name, rank))
}

struct Model {
    nodes: Vec<NodeP>,
    initializers: Vec<OnnxTensor>,
    inputs: Vec<(String, Option<usize>)>,
    outputs: Vec<String>,
    opset: i64,
}

fn parse_model(bytes: &[u8]) -> Result<Model> {
    let mut graph: Option<&[u8]> = None;
    let mut opset = 0;
    each_field(bytes, |n, v| {
        match n {
            7 => graph = Some(v.bytes()?),
            8 => {
                let (mut domain, mut version) = (String::new(), 0);
                each_field(v.bytes()?, |n, v| {
                    match n {
                        1 => domain = v.string()?,
                        2 => version = v.int()?,
                        _ => {}
                    }
                    Ok(())
                })?;
                if domain.is_empty() || domain == "ai.onnx" {
                    opset = version;
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    let graph = graph.ok_or_else(|| bad("not an ONNX model (no graph)"))?;
    let mut m = Model {
        nodes: Vec::new(),
        initializers: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        opset,
    };
    each_field(graph, |n, v| {
        match n {
            1 => m.nodes.push(parse_node(v.bytes()?)?),
            5 => m.initializers.push(parse_tensor(v.bytes()?)?),
            11 => m.inputs.push(parse_value_info(v.bytes()?)?),
            12 => m.outputs.push(parse_value_info(v.bytes()?)?.0),
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

thread_local! {
    /// The zeros that imported layers were built with, kept until the import
    /// ends. Their pages were never touched (zeroed allocations come from the
    /// system as zero pages); freed at once, the allocator would hand them to
    /// the next layer's zeroed allocation, which then clears them page by
    /// page: a fifth of ResNet-50's import time.
    static PLACEHOLDERS: std::cell::RefCell<Vec<Tensor<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes `values` the module's parameters, in order, checking sizes. The
/// values are shared, not copied: a parameter takes its values over on its
/// first write, or copies them if the importer still holds them then.
fn set_params<V: Into<Arc<Vec<f32>>>>(m: &mut dyn Module, values: Vec<V>) -> Result<()> {
    let mut count = 0;
    m.visit_parameters(&mut |_, _| count += 1);
    if count != values.len() {
        return Err(bad(format!(
            "{}: {count} parameters, {} given",
            m.name(),
            values.len()
        )));
    }
    let name = m.name().to_string();
    let mut values = values.into_iter();
    let mut err = None;
    m.visit_parameters(&mut |w, _| {
        let v: Arc<Vec<f32>> = values.next().expect("counted above").into();
        if err.is_some() {
            return;
        }
        if w.numel() == v.len() {
            let placeholder =
                std::mem::replace(w, Tensor::from_shared(v, w.sizes()).expect("sizes checked"));
            PLACEHOLDERS.with(|p| p.borrow_mut().push(placeholder));
        } else {
            err = Some(bad(format!(
                "{name}: a parameter of {} values, {} given",
                w.numel(),
                v.len()
            )));
        }
    });
    err.map_or(Ok(()), Err)
}

/// Symmetric `(h, w)` padding from ONNX `pads` (begins then ends).
fn sym_pads(node: &NodeP) -> Result<(usize, usize)> {
    let auto = node.string("auto_pad", "NOTSET")?;
    if auto != "NOTSET" && auto != "VALID" {
        return Err(node.unsupported(&format!("auto_pad {auto}")));
    }
    match node.ints("pads")?.as_deref() {
        None => Ok((0, 0)),
        Some(&[t, l, b, r]) if t == b && l == r && t >= 0 && l >= 0 => Ok((t as usize, l as usize)),
        Some(p) => Err(node.unsupported(&format!("padding {p:?} (asymmetric or not 2-D)"))),
    }
}

/// Folds every inference-mode `BatchNormalization` that is the only
/// consumer of a `Conv` into that convolution's weight and bias (scale
/// `gamma / sqrt(var + eps)` per output channel): one pass over the
/// activations fewer, as inference runtimes do. Leaves the graph unchanged
/// where any operand is not a constant of the expected size.
fn fold_batch_norms(model: &mut Model, consts: &mut HashMap<String, OnnxTensor>) {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &model.nodes {
        for i in &n.inputs {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    // Graph outputs and inputs are uses too: a weight that is also a graph
    // input (as exporters write with `keep_initializers_as_inputs`) must
    // keep its name.
    for o in model
        .outputs
        .iter()
        .chain(model.inputs.iter().map(|(n, _)| n))
    {
        *uses.entry(o.as_str()).or_default() += 1;
    }
    let mut folded: Vec<(usize, usize, bool, Vec<f32>, OnnxTensor)> = Vec::new();
    for (ci, conv) in model.nodes.iter().enumerate() {
        if conv.op != "Conv"
            || conv.outputs.len() != 1
            || uses.get(conv.outputs[0].as_str()) != Some(&1)
        {
            continue;
        }
        let Some(bi) = model
            .nodes
            .iter()
            .position(|n| n.op == "BatchNormalization" && n.inputs.first() == conv.outputs.first())
        else {
            continue;
        };
        let bn = &model.nodes[bi];
        if bn.outputs.len() != 1 || !matches!(bn.int("training_mode", 0), Ok(0)) {
            continue;
        }
        let get = |n: &NodeP, i: usize| n.inputs.get(i).and_then(|s| consts.get(s));
        let (Some(w), Some(gamma), Some(beta), Some(mean), Some(var), Ok(eps)) = (
            get(conv, 1),
            get(bn, 1),
            get(bn, 2),
            get(bn, 3),
            get(bn, 4),
            bn.float("epsilon", 1e-5),
        ) else {
            continue;
        };
        let oc = w.dims.first().copied().unwrap_or(0);
        let bias = get(conv, 2);
        let sized = |t: &OnnxTensor| t.data.len() == oc;
        if oc == 0
            || w.data.len() % oc != 0
            || ![gamma, beta, mean, var].iter().all(|t| sized(t))
            || bias.is_some_and(|b| !sized(b))
        {
            continue;
        }
        let scale: Vec<f32> = (0..oc)
            .map(|o| gamma.data[o] / (var.data[o] + eps).sqrt())
            .collect();
        let nb = OnnxTensor {
            name: format!("{}/bn_folded_bias", conv.outputs[0]),
            dims: vec![oc],
            data: Arc::new(
                (0..oc)
                    .map(|o| {
                        let b = bias.map_or(0.0, |b| b.data[o]);
                        (b - mean.data[o]) * scale[o] + beta.data[o]
                    })
                    .collect(),
            ),
            ints: None,
        };
        let sole = uses.get(conv.inputs[1].as_str()) == Some(&1);
        folded.push((ci, bi, sole, scale, nb));
    }
    let mut drop = vec![false; model.nodes.len()];
    for (ci, bi, sole, scale, nb) in folded {
        // The weight scaled in place when this convolution alone reads it
        // (else a scaled copy): no second copy of the model's weights.
        let w_name = &model.nodes[ci].inputs[1];
        let mut nw = if sole {
            consts.remove(w_name)
        } else {
            consts.get(w_name).cloned()
        }
        .expect("checked to be a constant above");
        nw.name = format!("{}/bn_folded", nw.name);
        let per = nw.data.len() / scale.len();
        for (chunk, s) in Arc::make_mut(&mut nw.data).chunks_mut(per).zip(&scale) {
            chunk.iter_mut().for_each(|x| *x *= s);
        }
        let out = model.nodes[bi].outputs[0].clone();
        let conv = &mut model.nodes[ci];
        conv.inputs.truncate(1);
        conv.inputs.extend([nw.name.clone(), nb.name.clone()]);
        conv.outputs = vec![out];
        consts.insert(nw.name.clone(), nw);
        consts.insert(nb.name.clone(), nb);
        drop[bi] = true;
    }
    let mut k = 0;
    model.nodes.retain(|_| {
        k += 1;
        !drop[k - 1]
    });
}

/// ONNX padding: fixed `[top, left, bottom, right]` (from `pads`, or from
/// `auto_pad` where it does not depend on the input size, i.e. with stride
/// 1), or `SAME_UPPER` / `SAME_LOWER` with strides, worked out per input.
enum Pads {
    Fixed([usize; 4]),
    Same {
        kernel: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
        lower: bool,
    },
}

fn pads4(
    node: &NodeP,
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
) -> Result<Pads> {
    let auto = node.string("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => match node.ints("pads")?.as_deref() {
            None => Ok(Pads::Fixed([0; 4])),
            Some(&[t, l, b, r]) if [t, l, b, r].iter().all(|&p| (0..1 << 20).contains(&p)) => {
                Ok(Pads::Fixed([
                    t as usize, l as usize, b as usize, r as usize,
                ]))
            }
            Some(p) => Err(node.unsupported(&format!("padding {p:?} (not 2-D)"))),
        },
        "VALID" => Ok(Pads::Fixed([0; 4])),
        "SAME_UPPER" | "SAME_LOWER" if stride != (1, 1) => Ok(Pads::Same {
            kernel,
            stride,
            dilation,
            lower: auto == "SAME_LOWER",
        }),
        "SAME_UPPER" | "SAME_LOWER" => {
            let total = |k: usize, d: usize| d * k.saturating_sub(1);
            let (th, tw) = (total(kernel.0, dilation.0), total(kernel.1, dilation.1));
            let (h, w) = ((th / 2, th - th / 2), (tw / 2, tw - tw / 2));
            // SAME_UPPER puts the odd one at the end.
            Ok(Pads::Fixed(if auto == "SAME_UPPER" {
                [h.0, w.0, h.1, w.1]
            } else {
                [h.1, w.1, h.0, w.0]
            }))
        }
        a => Err(node.unsupported(&format!("auto_pad {a}"))),
    }
}

/// A layer with padding `pads`: the symmetric part of a fixed padding
/// inside the layer (`make(pad_h, pad_w)`), the rest as an explicit padding
/// of `value` in front of it; a `SAME` padding with strides in front of an
/// unpadded layer.
fn padded(
    pads: Pads,
    value: f32,
    make: impl FnOnce(usize, usize) -> Result<Box<dyn Module>>,
) -> Result<Box<dyn Module>> {
    let [t, l, b, r] = match pads {
        Pads::Fixed(p) => p,
        Pads::Same {
            kernel,
            stride,
            dilation,
            lower,
        } => {
            let mut seq = Sequential::new();
            seq.push(Box::new(SamePadding::new(
                kernel, stride, dilation, lower, value,
            )?));
            seq.push(make(0, 0)?);
            return Ok(Box::new(seq));
        }
    };
    let (ph, pw) = (t.min(b), l.min(r));
    let layer = make(ph, pw)?;
    if t == b && l == r {
        return Ok(layer);
    }
    let mut seq = Sequential::new();
    if value == 0.0 {
        seq.push(Box::new(SpatialZeroPadding::new(
            l - pw,
            r - pw,
            t - ph,
            b - ph,
        )));
    } else {
        seq.push(Box::new(Padding::new(0, l - pw, r - pw, value)));
        seq.push(Box::new(Padding::new(1, t - ph, b - ph, value)));
    }
    seq.push(layer);
    Ok(Box::new(seq))
}

fn pair(node: &NodeP, name: &str, default: usize) -> Result<(usize, usize)> {
    match node.ints(name)?.as_deref() {
        None => Ok((default, default)),
        Some(&[a, b]) if a > 0 && b > 0 => Ok((a as usize, b as usize)),
        Some(v) => Err(node.unsupported(&format!("{name} {v:?}"))),
    }
}

/// Imports an ONNX model. `bound` supplies values for graph inputs that the
/// importer should treat as constants (weights given as inputs). The model is
/// returned in evaluation mode.
pub fn import(bytes: &[u8], bound: &[OnnxTensor]) -> Result<Box<dyn Module>> {
    let imported = crate::module::loading(|| import_graph(bytes, bound));
    PLACEHOLDERS.with(|p| p.borrow_mut().clear());
    imported
}

fn import_graph(bytes: &[u8], bound: &[OnnxTensor]) -> Result<Box<dyn Module>> {
    let model = parse_model(bytes)?;
    if model.opset != 0 && model.opset < 13 {
        return Err(bad(format!(
            "opset {} (13 or later is supported)",
            model.opset
        )));
    }
    let mut model = model;
    let mut consts: HashMap<String, OnnxTensor> = HashMap::new();
    for t in std::mem::take(&mut model.initializers)
        .into_iter()
        .chain(bound.iter().cloned())
    {
        consts.insert(t.name.clone(), t);
    }
    // An Identity of a constant is that constant under another name (PyTorch
    // writes these when it merges equal initializers); resolved before batch
    // norms fold, which look their operands up by name.
    model.nodes.retain(|node| {
        let ([input], [out]) = (&node.inputs[..], &node.outputs[..]) else {
            return true;
        };
        let Some(t) = consts.get(input).filter(|_| node.op == "Identity") else {
            return true;
        };
        let alias = OnnxTensor {
            name: out.clone(),
            ..t.clone()
        };
        consts.insert(out.clone(), alias);
        false
    });
    fold_batch_norms(&mut model, &mut consts);
    let mut g = GraphBuilder::new();
    let mut srcs: HashMap<String, Node> = HashMap::new();
    let mut ranks: HashMap<String, usize> = HashMap::new();
    let mut inputs = Vec::new();
    for (name, rank) in &model.inputs {
        if let Some(r) = rank {
            ranks.insert(name.clone(), *r);
        }
        if !consts.contains_key(name) {
            let n = g.input();
            srcs.insert(name.clone(), n);
            inputs.push(n);
        }
    }
    for node in &model.nodes {
        if node.op == "Constant" {
            let [out] = &node.outputs[..] else {
                return Err(node.unsupported("other than one output"));
            };
            let value = constant_value(node)?;
            consts.insert(
                out.clone(),
                OnnxTensor {
                    name: out.clone(),
                    ..value
                },
            );
            continue;
        }
        if matches!(node.op.as_str(), "LSTM" | "GRU" | "RNN") {
            let x = node
                .inputs
                .first()
                .and_then(|s| srcs.get(s))
                .copied()
                .ok_or_else(|| node.unsupported("an input X that is not a data node"))?;
            let constant = |i: usize| {
                node.inputs
                    .get(i)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| consts.get(s))
            };
            let data = |i: usize| {
                node.inputs
                    .get(i)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| srcs.get(s))
                    .copied()
            };
            for (name, out, rank) in recurrent(&mut g, node, x, &constant, &data)? {
                srcs.insert(name.clone(), out);
                ranks.insert(name, rank);
            }
            continue;
        }
        let get_const = |i: usize| -> Option<&OnnxTensor> {
            node.inputs
                .get(i)
                .filter(|s| !s.is_empty())
                .and_then(|s| consts.get(s))
        };
        let data: Vec<Node> = node
            .inputs
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| srcs.get(s).copied())
            .collect();
        let need_const = |i: usize, what: &str| -> Result<&OnnxTensor> {
            get_const(i)
                .ok_or_else(|| node.unsupported(&format!("a {what} that is not a constant")))
        };
        let first_rank = node.inputs.first().and_then(|s| ranks.get(s)).copied();
        let module: Box<dyn Module> = match node.op.as_str() {
            "Relu" => Box::new(ReLU::new()),
            "Sigmoid" => Box::new(Sigmoid::new()),
            "Tanh" => Box::new(Tanh::new()),
            "Abs" => Box::new(Abs::new()),
            "Exp" => Box::new(Exp::new()),
            "Log" => Box::new(Log::new()),
            "Sqrt" => Box::new(Sqrt::new()),
            "Neg" => Box::new(MulConstant::new(-1.0)),
            "Softplus" => Box::new(SoftPlus::new(1.0)),
            "LeakyRelu" => Box::new(LeakyReLU::new(node.float("alpha", 0.01)?)),
            "Elu" => Box::new(ELU::new(node.float("alpha", 1.0)?)),
            "Identity" => Box::new(Identity::new()),
            "Dropout" => {
                if node.outputs.len() > 1 && !node.outputs[1].is_empty() {
                    return Err(node.unsupported("the mask output"));
                }
                Box::new(Identity::new())
            }
            "Clip" => {
                let lo = get_const(1).map_or(f32::NEG_INFINITY, |t| {
                    t.data.first().copied().unwrap_or(f32::NEG_INFINITY)
                });
                let hi = get_const(2).map_or(f32::INFINITY, |t| {
                    t.data.first().copied().unwrap_or(f32::INFINITY)
                });
                if lo.is_nan() || hi.is_nan() || lo > hi {
                    return Err(node.unsupported(&format!("bounds {lo}, {hi}")));
                }
                Box::new(HardTanh::new(lo, hi))
            }
            "Softmax" | "LogSoftmax" => {
                let axis = node.int("axis", -1)?;
                if !(axis == -1 || first_rank.is_some_and(|r| axis == r as i64 - 1)) {
                    return Err(node.unsupported(&format!("axis {axis} (only the last axis)")));
                }
                if node.op == "Softmax" {
                    Box::new(SoftMax::new())
                } else {
                    Box::new(LogSoftMax::new())
                }
            }
            "Flatten" => {
                if node.int("axis", 1)? != 1 {
                    return Err(node.unsupported("an axis other than 1"));
                }
                Box::new(Flatten::new())
            }
            "Transpose" => {
                let perm: Vec<usize> = match node.ints("perm")? {
                    Some(p) => p.iter().map(|&x| x as usize).collect(),
                    None => (0..first_rank
                        .ok_or_else(|| node.unsupported("no perm and an unknown rank"))?)
                        .rev()
                        .collect(),
                };
                Box::new(Transpose::new(
                    &swaps(&perm).ok_or_else(|| node.unsupported(&format!("perm {perm:?}")))?,
                ))
            }
            "Concat" => {
                let axis = node.int("axis", 0)?;
                let axis = if axis < 0 {
                    let r = first_rank
                        .ok_or_else(|| node.unsupported("a negative axis with an unknown rank"))?;
                    (r as i64 + axis) as usize
                } else {
                    axis as usize
                };
                Box::new(JoinTable::new(axis))
            }
            "Sum" if data.len() >= 2 => Box::new(CAddTable::new()),
            "Sum" => Box::new(Identity::new()),
            "Sub" | "Div" => {
                let c = need_const(1, "second operand")?;
                if node.op == "Sub" {
                    constant_op(true, c, c.data.iter().map(|x| -x).collect())?
                } else {
                    constant_op(false, c, c.data.iter().map(|x| 1.0 / x).collect())?
                }
            }
            "Reshape" => {
                let shape = need_const(1, "shape")?
                    .ints
                    .clone()
                    .ok_or_else(|| node.unsupported("a shape that is not integers"))?;
                if node.int("allowzero", 0)? != 0 {
                    return Err(node.unsupported("allowzero"));
                }
                let rest = &shape[1.min(shape.len())..];
                let zeros = shape.iter().filter(|&&d| d == 0).count();
                let frees = shape.iter().filter(|&&d| d == -1).count();
                if shape.len() >= 2
                    && (shape[0] == 0 || shape[0] == -1)
                    && zeros + frees == 1
                    && rest.iter().all(|&d| d > 0)
                {
                    // [N, ...fixed]: keep the batch dimension.
                    Box::new(Reshape::batched(
                        &rest.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                    ))
                } else if zeros == 0 && frees <= 1 && shape.iter().all(|&d| d > 0 || d == -1) {
                    Box::new(View::new(
                        &shape
                            .iter()
                            .map(|&d| (d > 0).then_some(d as usize))
                            .collect::<Vec<_>>(),
                    ))
                } else {
                    return Err(node.unsupported(&format!("shape {shape:?}")));
                }
            }
            "Squeeze" | "Unsqueeze" => {
                let axes = match get_const(1) {
                    Some(t) => t.ints.clone().unwrap_or_default(),
                    None => node.ints("axes")?.unwrap_or_default(),
                };
                match axes[..] {
                    [a] if a >= 0 && node.op == "Squeeze" => {
                        Box::new(Squeeze::new(Some(a as usize)))
                    }
                    [] if node.op == "Squeeze" => Box::new(Squeeze::new(None)),
                    [a] if a >= 0 => Box::new(Unsqueeze::new(a as usize)),
                    _ => return Err(node.unsupported(&format!("axes {axes:?}"))),
                }
            }
            "Pad" => {
                if node.string("mode", "constant")? != "constant" {
                    return Err(node.unsupported("a mode other than constant"));
                }
                let pads = need_const(1, "pads")?
                    .ints
                    .clone()
                    .ok_or_else(|| node.unsupported("pads that are not integers"))?;
                let value = get_const(2)
                    .and_then(|t| t.data.first().copied())
                    .unwrap_or(0.0);
                match pads[..] {
                    [0, 0, t, l, 0, 0, b, r] if t >= 0 && l >= 0 && b >= 0 && r >= 0 => {
                        let (t, l, b, r) = (t as usize, l as usize, b as usize, r as usize);
                        if value == 0.0 {
                            Box::new(SpatialZeroPadding::new(l, r, t, b))
                        } else {
                            let mut s = crate::sequential::Sequential::new();
                            s.push(Box::new(Padding::new(0, l, r, value)));
                            s.push(Box::new(Padding::new(1, t, b, value)));
                            Box::new(s)
                        }
                    }
                    _ => {
                        return Err(node.unsupported(&format!("pads {pads:?} (4-D, spatial only)")));
                    }
                }
            }
            "ConvTranspose" => {
                let w = need_const(1, "weight")?;
                let [cin, ocg, kh, kw] = w.dims[..] else {
                    return Err(node.unsupported(&format!("a weight of shape {:?}", w.dims)));
                };
                if node.ints("output_shape")?.is_some() {
                    return Err(node.unsupported("output_shape"));
                }
                let groups = node.int("group", 1)?.max(1) as usize;
                let (ph, pw) = sym_pads(node)?;
                let (sh, sw) = pair(node, "strides", 1)?;
                let (dh, dw) = pair(node, "dilations", 1)?;
                let (ah, aw) = match node.ints("output_padding")?.as_deref() {
                    None => (0, 0),
                    Some(&[a, b]) if a >= 0 && b >= 0 => (a as usize, b as usize),
                    Some(v) => return Err(node.unsupported(&format!("output_padding {v:?}"))),
                };
                let mut c = SpatialFullConvolution::new(cin, ocg * groups, (kh, kw), groups)?
                    .stride(sh, sw)
                    .pad(ph, pw)
                    .adj(ah, aw)
                    .dilation(dh, dw);
                let mut vals = vec![w.data.clone()];
                match get_const(2) {
                    Some(b) => vals.push(b.data.clone()),
                    None => c = c.without_bias(),
                }
                set_params(&mut c, vals)?;
                Box::new(c)
            }
            "Gather" => {
                let table = get_const(0)
                    .ok_or_else(|| node.unsupported("a gathered tensor that is not a constant"))?;
                let [n, dim] = table.dims[..] else {
                    return Err(node.unsupported(&format!("a table of shape {:?}", table.dims)));
                };
                if node.int("axis", 0)? != 0 {
                    return Err(node.unsupported("an axis other than 0"));
                }
                let mut emb = LookupTable::new(n, dim)?;
                set_params(&mut emb, vec![table.data.clone()])?;
                Box::new(emb)
            }
            "Add" | "Mul" if data.len() == 2 => {
                if node.op == "Add" {
                    Box::new(CAddTable::new())
                } else {
                    Box::new(CMulTable::new())
                }
            }
            "Add" | "Mul" => {
                let c = get_const(1).or_else(|| get_const(0)).ok_or_else(|| {
                    node.unsupported("inputs that are neither nodes nor constants")
                })?;
                constant_op(node.op == "Add", c, c.data.to_vec())?
            }
            "Conv" => {
                let w = need_const(1, "weight")?;
                let [oc, cg, kh, kw] = w.dims[..] else {
                    return Err(node.unsupported(&format!(
                        "a weight of shape {:?} (2-D convolution only)",
                        w.dims
                    )));
                };
                let groups = node.int("group", 1)?.max(1) as usize;
                let (sh, sw) = pair(node, "strides", 1)?;
                let (dh, dw) = pair(node, "dilations", 1)?;
                let pads = pads4(node, (kh, kw), (sh, sw), (dh, dw))?;
                padded(pads, 0.0, |ph, pw| {
                    let mut c = SpatialConvolution::with_groups(cg * groups, oc, (kh, kw), groups)?
                        .stride(sh, sw)
                        .pad(ph, pw)
                        .dilation(dh, dw);
                    let mut vals = vec![w.data.clone()];
                    match get_const(2) {
                        Some(b) => vals.push(b.data.clone()),
                        None => c = c.without_bias(),
                    }
                    set_params(&mut c, vals)?;
                    Ok(Box::new(c))
                })?
            }
            "Gemm" => {
                let trans_a = node.int("transA", 0)? != 0;
                let b = need_const(1, "B")?;
                let [r, c] = b.dims[..] else {
                    return Err(node.unsupported(&format!("B of shape {:?}", b.dims)));
                };
                let trans_b = node.int("transB", 0)? != 0;
                let (alpha, beta) = (node.float("alpha", 1.0)?, node.float("beta", 1.0)?);
                let (k, n) = if trans_b { (c, r) } else { (r, c) };
                // Linear's weight is [N, K] = alpha * B^T (or alpha * B when transB).
                let mut w = vec![0.0f32; n * k];
                for i in 0..n {
                    for j in 0..k {
                        w[i * k + j] = alpha
                            * if trans_b {
                                b.data[i * k + j]
                            } else {
                                b.data[j * n + i]
                            };
                    }
                }
                let mut lin = Linear::new(k, n)?;
                let mut vals = vec![w];
                match get_const(2) {
                    Some(cb) if cb.data.len() == n || cb.data.len() == 1 => vals.push(
                        (0..n)
                            .map(|i| beta * cb.data[if cb.data.len() == 1 { 0 } else { i }])
                            .collect(),
                    ),
                    Some(cb) => return Err(node.unsupported(&format!("C of shape {:?}", cb.dims))),
                    None => lin = lin.without_bias(),
                }
                set_params(&mut lin, vals)?;
                if trans_a {
                    // A is [K, M]: its transpose is the batch of rows.
                    let mut seq = Sequential::new();
                    seq.push(Box::new(Transpose::new(&[(0, 1)])));
                    seq.push(Box::new(lin));
                    Box::new(seq)
                } else {
                    Box::new(lin)
                }
            }
            "MatMul" => {
                let b = need_const(1, "second operand")?;
                let [k, n] = b.dims[..] else {
                    return Err(
                        node.unsupported(&format!("a second operand of shape {:?}", b.dims))
                    );
                };
                let mut w = vec![0.0f32; n * k];
                for i in 0..n {
                    for j in 0..k {
                        w[i * k + j] = b.data[j * n + i];
                    }
                }
                let mut lin = Linear::new(k, n)?.without_bias();
                set_params(&mut lin, vec![w])?;
                Box::new(lin)
            }
            "MaxPool" | "AveragePool" => {
                if node.outputs.len() > 1 {
                    return Err(node.unsupported("the indices output"));
                }
                if pair(node, "dilations", 1)? != (1, 1) {
                    return Err(node.unsupported("dilation"));
                }
                let k = pair(node, "kernel_shape", 0)?;
                let s = pair(node, "strides", 1)?;
                let pads = pads4(node, k, s, (1, 1))?;
                let ceil = node.int("ceil_mode", 0)? != 0;
                let include = node.int("count_include_pad", 0)? != 0;
                let symmetric = matches!(pads, Pads::Fixed([t, l, b, r]) if t == b && l == r);
                if node.op == "MaxPool" {
                    padded(pads, f32::NEG_INFINITY, |ph, pw| {
                        let p = SpatialMaxPooling::new(k, s).pad(ph, pw);
                        Ok(Box::new(if ceil { p.ceil() } else { p }))
                    })?
                } else if symmetric || include {
                    padded(pads, 0.0, |ph, pw| {
                        let p = SpatialAveragePooling::new(k, s)
                            .pad(ph, pw)
                            .count_include_pad(include);
                        Ok(Box::new(if ceil { p.ceil() } else { p }))
                    })?
                } else {
                    return Err(node.unsupported(
                        "asymmetric or SAME padding that the average does not count",
                    ));
                }
            }
            "GlobalAveragePool" => Box::new(SpatialAveragePooling::global()),
            "BatchNormalization" => {
                if node.int("training_mode", 0)? != 0 {
                    return Err(node.unsupported("training mode"));
                }
                let [scale, bias, mean, var] =
                    [1, 2, 3, 4].map(|i| need_const(i, "statistic").map(|t| t.data.to_vec()));
                let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
                let mut bn =
                    BatchNormalization::any_layout(scale.len())?.eps(node.float("epsilon", 1e-5)?);
                set_params(&mut bn, vec![scale, bias])?;
                let mut stats = [mean, var].into_iter();
                bn.visit_state(&mut |s| {
                    if let (StateMut::F32(v), Some(x)) = (s, stats.next()) {
                        *v = x;
                    }
                });
                Box::new(bn)
            }
            "LRN" => {
                let size = node.int("size", 0)?;
                if size <= 0 {
                    return Err(node.unsupported(&format!("size {size}")));
                }
                Box::new(SpatialCrossMapLRN::new(
                    size as usize,
                    node.float("alpha", 1e-4)?,
                    node.float("beta", 0.75)?,
                    node.float("bias", 1.0)?,
                ))
            }
            op => {
                return Err(NnError::Invalid {
                    layer: format!("ONNX {op}"),
                    what: "this operator is not supported".into(),
                });
            }
        };
        if data.is_empty() {
            return Err(node.unsupported("a node without data inputs"));
        }
        let out = g.boxed(module, &data)?;
        if let Some(o) = node.outputs.first() {
            srcs.insert(o.clone(), out);
            if let Some(r) = first_rank {
                let r = match node.op.as_str() {
                    "Flatten" | "Gemm" | "MatMul" => 2,
                    _ => r,
                };
                ranks.insert(o.clone(), r);
            }
        }
    }
    let outputs: Vec<Node> = model
        .outputs
        .iter()
        .map(|o| {
            srcs.get(o).copied().ok_or_else(|| {
                bad(format!(
                    "graph output {o} is not computed by a supported node"
                ))
            })
        })
        .collect::<Result<_>>()?;
    let mut graph = g.build(&inputs, &outputs)?;
    graph.evaluate();
    Ok(Box::new(graph))
}

/// The value of a `Constant` node (`value`, or a number or list of them).
fn constant_value(node: &NodeP) -> Result<OnnxTensor> {
    let floats = |v: Vec<f32>, dims: Vec<usize>| OnnxTensor {
        name: String::new(),
        dims,
        data: Arc::new(v),
        ints: None,
    };
    let ints = |v: &[i64], dims: Vec<usize>| OnnxTensor {
        ints: Some(v.to_vec()),
        ..floats(v.iter().map(|&x| x as f32).collect(), dims)
    };
    let [(key, value)] = node.attrs.iter().collect::<Vec<_>>()[..] else {
        return Err(node.unsupported("other than one value attribute"));
    };
    Ok(match (key.as_str(), value) {
        ("value", AttrV::Tensor(t)) => t.clone(),
        ("value_float", AttrV::Float(v)) => floats(vec![*v], vec![]),
        ("value_floats", AttrV::Floats(v)) => floats(v.clone(), vec![v.len()]),
        ("value_int", AttrV::Int(v)) => ints(&[*v], vec![]),
        ("value_ints", AttrV::Ints(v)) => ints(v, vec![v.len()]),
        (k, _) => return Err(node.unsupported(&format!("the attribute {k}"))),
    })
}

/// A constant operand as a layer: a [`CAdd`] (`add`) or [`CMul`] of its
/// shape (a scalar as `[1]`) holding `values` (the operand, or its negation
/// or reciprocal for `Sub` and `Div`).
fn constant_op(add: bool, c: &OnnxTensor, values: Vec<f32>) -> Result<Box<dyn Module>> {
    let dims = if c.dims.is_empty() {
        vec![1]
    } else {
        c.dims.clone()
    };
    let mut m: Box<dyn Module> = if add {
        Box::new(CAdd::new(&dims)?)
    } else {
        Box::new(CMul::new(&dims)?)
    };
    set_params(m.as_mut(), vec![values])?;
    Ok(m)
}

/// An ONNX `LSTM`, `GRU` or `RNN` node as one [`Recurrent`] per direction
/// (the backward one reversed) between the layout changes ONNX needs:
/// returns its `Y`, `Y_h` and `Y_c` outputs (those the node names) with
/// their ranks. Supported: forward, reverse and bidirectional, both layouts,
/// default activations, biases, LSTM peepholes, `sequence_lens`, initial
/// states, GRU with either `linear_before_reset`; not: `clip`,
/// `input_forget`, other activations.
fn recurrent<'a>(
    g: &mut GraphBuilder,
    node: &NodeP,
    x: Node,
    constant: &dyn Fn(usize) -> Option<&'a OnnxTensor>,
    data: &dyn Fn(usize) -> Option<Node>,
) -> Result<Vec<(String, Node, usize)>> {
    let (kind, gates, perm): (CellKind, usize, &[usize]) = match node.op.as_str() {
        // Ours: i, f, g, o; ONNX: i, o, f, c.
        "LSTM" => (CellKind::Lstm, 4, &[0, 2, 3, 1]),
        // Ours: r, z, n; ONNX: z, r, h.
        "GRU" => (CellKind::Gru, 3, &[1, 0, 2]),
        _ => (CellKind::Rnn, 1, &[0]),
    };
    for a in ["activation_alpha", "activation_beta", "clip"] {
        if node.attrs.contains_key(a) {
            return Err(node.unsupported(a));
        }
    }
    // Activations: only the defaults (as some exporters spell out).
    let defaults: &[&str] = match kind {
        CellKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        CellKind::Gru => &["Sigmoid", "Tanh"],
        CellKind::Rnn => &["Tanh"],
    };
    match node.attrs.get("activations") {
        None => {}
        Some(AttrV::Strs(acts))
            if !acts.is_empty()
                && acts.len() % defaults.len() == 0
                && acts.chunks(defaults.len()).all(|c| {
                    c.iter()
                        .zip(defaults)
                        .all(|(a, d)| a.eq_ignore_ascii_case(d))
                }) => {}
        Some(a) => return Err(node.unsupported(&format!("activations {a:?}"))),
    }
    if node.int("input_forget", 0)? != 0 {
        return Err(node.unsupported("input_forget"));
    }
    let linear_before_reset = node.int("linear_before_reset", 0)? != 0;
    let (dirs, reverse) = match node.string("direction", "forward")?.as_str() {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        d => return Err(node.unsupported(&format!("direction {d}"))),
    };
    let batch_first = match node.int("layout", 0)? {
        0 => false,
        1 => true,
        l => return Err(node.unsupported(&format!("layout {l}"))),
    };
    let w = constant(1).ok_or_else(|| node.unsupported("a W that is not a constant"))?;
    let r = constant(2).ok_or_else(|| node.unsupported("an R that is not a constant"))?;
    let [wd, gh, d] = w.dims[..] else {
        return Err(node.unsupported(&format!("W of shape {:?}", w.dims)));
    };
    let h = gh / gates;
    if wd != dirs || h == 0 || gh != gates * h || node.int("hidden_size", h as i64)? != h as i64 {
        return Err(node.unsupported(&format!("W of shape {:?}", w.dims)));
    }
    if r.dims != [dirs, gh, h] {
        return Err(node.unsupported(&format!("R of shape {:?}", r.dims)));
    }
    let given = |i: usize| node.inputs.get(i).is_some_and(|s| !s.is_empty());
    let b = match constant(3) {
        Some(b) if b.dims != [dirs, 2 * gh] => {
            return Err(node.unsupported(&format!("B of shape {:?}", b.dims)));
        }
        None if given(3) => return Err(node.unsupported("a B that is not a constant")),
        b => b,
    };
    let p = match constant(7) {
        Some(p) if kind == CellKind::Lstm && p.dims == [dirs, 3 * h] => Some(p),
        Some(p) => return Err(node.unsupported(&format!("P of shape {:?}", p.dims))),
        None if given(7) => return Err(node.unsupported("a P that is not a constant")),
        None => None,
    };
    // [T, N, D] -> [N, T, D]: our recurrences are batch first.
    let x = if batch_first {
        x
    } else {
        g.boxed(Box::new(Transpose::new(&[(0, 1)])), &[x])?
    };
    // Lengths and initial states: data nodes, or constants as layers that
    // give them (initial states that are constant zeros are our own start).
    let operand = |g: &mut GraphBuilder, i: usize| -> Result<Option<Node>> {
        if let Some(n) = data(i) {
            return Ok(Some(n));
        }
        match constant(i) {
            None if given(i) => {
                Err(node.unsupported(&format!("input {i} that is neither data nor a constant")))
            }
            None => Ok(None),
            Some(c) if i >= 5 && c.data.iter().all(|&v| v == 0.0) => Ok(None),
            Some(c) => Ok(Some(g.boxed(Box::new(Constant::new(&c.tensor()?)), &[x])?)),
        }
    };
    let lens = operand(g, 4)?;
    let mut states: Vec<Node> = Vec::new();
    if let Some(h0) = operand(g, 5)? {
        states.push(h0);
    }
    if let Some(c0) = operand(g, 6)? {
        if states.is_empty() {
            // A zero h0 of c0's shape (0 c0: not zero where c0 is not
            // finite, a state no recurrence recovers from anyway).
            states.push(g.boxed(Box::new(MulConstant::new(0.0)), &[c0])?);
        }
        states.push(c0);
    }
    // Blocks of `h` rows of `cols` reordered from ONNX's to ours.
    let reorder = |src: &[f32], perm: &[usize], cols: usize| -> Vec<f32> {
        perm.iter()
            .flat_map(|&k| src[k * h * cols..(k + 1) * h * cols].iter().copied())
            .collect()
    };
    // Initial states are [dirs, N, H] ([N, dirs, H] batch first), as are
    // Y_h and Y_c.
    let dir_axis = usize::from(batch_first);
    // Per direction: Y [N, T, H], Y_h and Y_c [N, H].
    let mut outs: [Vec<Node>; 3] = Default::default();
    for dir in 0..dirs {
        let mut values = vec![
            reorder(&w.data[dir * gh * d..(dir + 1) * gh * d], perm, d),
            reorder(&r.data[dir * gh * h..(dir + 1) * gh * h], perm, h),
        ];
        match b {
            Some(b) => {
                let bd = &b.data[dir * 2 * gh..(dir + 1) * 2 * gh];
                values.push(reorder(&bd[..gh], perm, 1));
                values.push(reorder(&bd[gh..], perm, 1));
            }
            None => values.extend([vec![0.0; gh], vec![0.0; gh]]),
        }
        let cell = match (kind, p) {
            (CellKind::Gru, _) => Cell::gru_with(d, h, linear_before_reset)?,
            (CellKind::Lstm, Some(p)) => {
                // Ours: i, f, o; ONNX: i, o, f.
                values.push(reorder(
                    &p.data[dir * 3 * h..(dir + 1) * 3 * h],
                    &[0, 2, 1],
                    1,
                ));
                Cell::lstm_peephole(d, h)?
            }
            _ => Cell::of_kind(kind, d, h)?,
        };
        let mut core = Recurrent::new(cell).with_final_states();
        if dir == 1 || reverse {
            core = core.reversed();
        }
        let mut inputs = vec![x];
        if let Some(l) = lens {
            core = core.with_lengths();
            inputs.push(l);
        }
        for &st in &states {
            inputs.push(g.boxed(Box::new(Select::new(dir_axis, dir)), &[st])?);
        }
        set_params(&mut core, values)?;
        let out = g.boxed(Box::new(core), &inputs)?;
        let finals = if kind == CellKind::Lstm { 3 } else { 2 };
        for (k, o) in outs.iter_mut().enumerate().take(finals) {
            if node.outputs.get(k).is_some_and(|s| !s.is_empty()) {
                o.push(g.boxed(Box::new(SelectTable::new(k)), &[out])?);
            }
        }
    }
    let mut result = Vec::new();
    for (k, parts) in outs.into_iter().enumerate() {
        let Some(name) = node.outputs.get(k).filter(|s| !s.is_empty()) else {
            continue;
        };
        if parts.is_empty() {
            return Err(node.unsupported(&format!("output {name} of a cell without one")));
        }
        // Y: [T, dirs, N, H] ([N, T, dirs, H] batch first); Y_h, Y_c:
        // [dirs, N, H] ([N, dirs, H]).
        let (axis, rank) = if k == 0 {
            (1 + dir_axis, 4)
        } else {
            (dir_axis, 3)
        };
        let mut laid = Vec::new();
        for part in parts {
            let mut seq = Sequential::new();
            if k == 0 {
                seq.push(Box::new(Unsqueeze::new(2)));
                if !batch_first {
                    seq.push(Box::new(Transpose::new(&[(0, 1), (1, 2)])));
                }
            } else {
                seq.push(Box::new(Unsqueeze::new(axis)));
            }
            laid.push(g.boxed(Box::new(seq), &[part])?);
        }
        let out = match laid[..] {
            [p] => p,
            _ => g.boxed(Box::new(JoinTable::new(axis)), &laid)?,
        };
        result.push((name.clone(), out, rank));
    }
    Ok(result)
}

/// A permutation as a sequence of swaps (applied in order) that produces it.
fn swaps(perm: &[usize]) -> Option<Vec<(usize, usize)>> {
    let n = perm.len();
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..n).collect::<Vec<_>>() {
        return None;
    }
    // cur[i] = which source dimension sits at position i.
    let mut cur: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    for (i, &want) in perm.iter().enumerate() {
        let j = cur.iter().position(|&d| d == want).expect("a permutation");
        if j != i {
            cur.swap(i, j);
            out.push((i, j));
        }
    }
    Some(out)
}
