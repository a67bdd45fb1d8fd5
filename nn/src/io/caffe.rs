//! Importing Caffe models: a deploy `.prototxt` (protobuf text format) for
//! the structure and a `.caffemodel` (binary protobuf, current `layer` or
//! legacy V1 `layers`) for the weights, matched by layer name. Blob shapes
//! are checked in full against the layers the description builds.

use std::collections::HashMap;

use super::protobuf::{bad, each_field};
use crate::error::{NnError, Result};
use crate::graph::{GraphBuilder, Node};
use crate::layers::*;
use crate::module::{Module, StateMut};
use crate::table::{CAddTable, CMaxTable, CMulTable, Identity, JoinTable, ParallelTable};

/// A message in protobuf text format: fields in order, repeated ones
/// repeated.
#[derive(Clone, Debug, Default)]
pub(crate) struct TextMsg {
    fields: Vec<(String, TextVal)>,
}

#[derive(Clone, Debug)]
enum TextVal {
    Scalar(String),
    Msg(TextMsg),
}

impl TextMsg {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextVal> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }
    fn msgs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextMsg> + 'a {
        self.all(name).filter_map(|v| match v {
            TextVal::Msg(m) => Some(m),
            TextVal::Scalar(_) => None,
        })
    }
    fn msg<'a>(&'a self, name: &'a str) -> Option<&'a TextMsg> {
        self.msgs(name).next()
    }
    fn scalars<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.all(name).filter_map(|v| match v {
            TextVal::Scalar(s) => Some(s.as_str()),
            TextVal::Msg(_) => None,
        })
    }
    fn str<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.scalars(name).next()
    }
    fn usize(&self, name: &str) -> Result<Option<usize>> {
        self.str(name)
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| bad(format!("{name}: {s:?} is not a size")))
            })
            .transpose()
    }
    fn usizes(&self, name: &str) -> Result<Vec<usize>> {
        self.scalars(name)
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| bad(format!("{name}: {s:?} is not a size")))
            })
            .collect()
    }
    fn f32(&self, name: &str, default: f32) -> Result<f32> {
        match self.str(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<f32>()
                .map_err(|_| bad(format!("{name}: {s:?} is not a number"))),
        }
    }
    fn bool(&self, name: &str, default: bool) -> bool {
        self.str(name).map_or(default, |s| s == "true" || s == "1")
    }
}

/// Parses protobuf text format (the `.prototxt` dialect: `name: value`,
/// `name { ... }`, `name: { ... }`, quoted strings, `#` comments). Nesting is
/// limited to 64 levels.
pub(crate) fn parse_text(text: &str) -> Result<TextMsg> {
    let tokens = tokenize(text)?;
    let mut at = 0;
    let m = parse_msg(&tokens, &mut at, 0)?;
    if at != tokens.len() {
        return Err(bad(format!("unexpected {:?} at the top level", tokens[at])));
    }
    Ok(m)
}

fn tokenize(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' || c == ';' {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|&c| c != '\n') {
                chars.next();
            }
        } else if "{}:<>".contains(c) {
            chars.next();
            out.push(match c {
                '<' => "{".into(),
                '>' => "}".into(),
                c => c.to_string(),
            });
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::from("\"");
            loop {
                match chars.next() {
                    None => return Err(bad("an unterminated string")),
                    Some('\\') => {
                        if let Some(e) = chars.next() {
                            s.push(e);
                        }
                    }
                    Some(q) if q == c => break,
                    Some(x) => s.push(x),
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while chars
                .peek()
                .is_some_and(|&c| !c.is_whitespace() && !"{}:<>#,;\"'".contains(c))
            {
                s.push(chars.next().expect("peeked"));
            }
            if s.is_empty() {
                return Err(bad(format!("unexpected character {c:?}")));
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn parse_msg(t: &[String], at: &mut usize, depth: usize) -> Result<TextMsg> {
    if depth > 64 {
        return Err(bad("messages nested more than 64 deep"));
    }
    let mut m = TextMsg::default();
    while *at < t.len() && t[*at] != "}" {
        let name = t[*at].clone();
        *at += 1;
        if t.get(*at).map(String::as_str) == Some(":") {
            *at += 1;
        }
        match t.get(*at).map(String::as_str) {
            Some("{") => {
                *at += 1;
                let sub = parse_msg(t, at, depth + 1)?;
                if t.get(*at).map(String::as_str) != Some("}") {
                    return Err(bad(format!("unclosed {name} {{")));
                }
                *at += 1;
                m.fields.push((name, TextVal::Msg(sub)));
            }
            Some(v) if v != "}" && v != ":" => {
                let v = v.strip_prefix('"').unwrap_or(v).to_string();
                *at += 1;
                m.fields.push((name, TextVal::Scalar(v)));
            }
            _ => return Err(bad(format!("field {name} without a value"))),
        }
    }
    Ok(m)
}

/// A blob from the caffemodel: shape and data.
#[derive(Clone, Debug)]
struct Blob {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn parse_blob(msg: &[u8]) -> Result<Blob> {
    let (mut shape, mut legacy, mut data, mut doubles) =
        (Vec::new(), [0i64; 4], Vec::new(), Vec::new());
    each_field(msg, |n, v| {
        match n {
            7 => each_field(v.bytes()?, |n, v| {
                if n == 1 {
                    v.ints_into(&mut shape)?;
                }
                Ok(())
            })?,
            1..=4 => legacy[n as usize - 1] = v.int()?,
            5 => v.floats_into(&mut data)?,
            8 => match v {
                super::protobuf::Value::Bytes(b) if b.len().is_multiple_of(8) => doubles.extend(
                    b.chunks(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32),
                ),
                super::protobuf::Value::Fixed64(x) => doubles.push(f64::from_bits(x) as f32),
                v => return Err(bad(format!("bad double_data {v:?}"))),
            },
            _ => {}
        }
        Ok(())
    })?;
    if data.is_empty() {
        data = doubles;
    }
    let shape: Vec<usize> = if shape.is_empty() {
        // Legacy 4-D shape; leading 1s dropped as Caffe's own upgrade does
        // for biases ([1, 1, 1, n] -> [n]).
        let dims: Vec<usize> = legacy.iter().map(|&d| d.max(0) as usize).collect();
        let first = dims.iter().position(|&d| d != 1).unwrap_or(3);
        dims[first..].to_vec()
    } else {
        shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("blob dimension {d}"))))
            .collect::<Result<_>>()?
    };
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("blob shape overflows"))?;
    if n != data.len() {
        return Err(bad(format!(
            "a blob of shape {shape:?} holds {} values",
            data.len()
        )));
    }
    Ok(Blob { shape, data })
}

/// Layer name -> blobs, from a caffemodel.
fn parse_weights(bytes: &[u8]) -> Result<HashMap<String, Vec<Blob>>> {
    let mut out = HashMap::new();
    each_field(bytes, |n, v| {
        // NetParameter.layer = 100 (LayerParameter: name 1, blobs 7);
        // NetParameter.layers = 2 (V1LayerParameter: name 4, blobs 6).
        let (name_f, blob_f) = match n {
            100 => (1, 7),
            2 => (4, 6),
            _ => return Ok(()),
        };
        let (mut name, mut blobs) = (String::new(), Vec::new());
        each_field(v.bytes()?, |n, v| {
            if n == name_f {
                name = v.string()?;
            } else if n == blob_f {
                blobs.push(parse_blob(v.bytes()?)?);
            }
            Ok(())
        })?;
        if !blobs.is_empty() {
            out.insert(name, blobs);
        }
        Ok(())
    })?;
    Ok(out)
}

fn unsupported(layer: &str, what: String) -> NnError {
    NnError::Invalid {
        layer: format!("Caffe layer {layer}"),
        what,
    }
}

/// The `(h, w)` pair of a Caffe parameter given as `name` (one or two
/// values) or as `name_h` / `name_w`.
fn hw(p: &TextMsg, name: &str, default: usize) -> Result<(usize, usize)> {
    let (h, w) = (
        p.usize(&format!("{name}_h"))?,
        p.usize(&format!("{name}_w"))?,
    );
    if let (Some(h), Some(w)) = (h, w) {
        return Ok((h, w));
    }
    let v = p.usizes(name)?;
    Ok(match v[..] {
        [] => (default, default),
        [a] => (a, a),
        [a, b] => (a, b),
        _ => return Err(bad(format!("{name}: {v:?} (2-D only)"))),
    })
}

/// Copies blobs into a module's parameters, checking every shape in full.
fn set_blobs(layer: &str, m: &mut dyn Module, blobs: &[&Blob]) -> Result<()> {
    let params = m.parameters();
    if params.len() != blobs.len() {
        return Err(unsupported(
            layer,
            format!("{} blobs for {} parameters", blobs.len(), params.len()),
        ));
    }
    for ((w, _), b) in params.iter().zip(blobs) {
        if w.sizes() != b.shape.as_slice() {
            return Err(unsupported(
                layer,
                format!(
                    "a blob of shape {:?} for a parameter of shape {:?}",
                    b.shape,
                    w.sizes()
                ),
            ));
        }
        if b.data.len() != w.numel() {
            return Err(unsupported(
                layer,
                format!(
                    "a blob of shape {:?} with {} numbers",
                    b.shape,
                    b.data.len()
                ),
            ));
        }
        w.as_slice_mut()?.copy_from_slice(&b.data);
    }
    Ok(())
}

/// V1 layer type names (enum values in prototxt) mapped to current ones.
fn current_type(t: &str) -> &str {
    match t {
        "CONVOLUTION" => "Convolution",
        "DECONVOLUTION" => "Deconvolution",
        "INNER_PRODUCT" => "InnerProduct",
        "POOLING" => "Pooling",
        "RELU" => "ReLU",
        "SIGMOID" => "Sigmoid",
        "TANH" => "TanH",
        "ABSVAL" => "AbsVal",
        "POWER" => "Power",
        "EXP" => "Exp",
        "LRN" => "LRN",
        "ELTWISE" => "Eltwise",
        "CONCAT" => "Concat",
        "SPLIT" => "Split",
        "FLATTEN" => "Flatten",
        "DROPOUT" => "Dropout",
        "SOFTMAX" => "Softmax",
        "DATA" => "Data",
        t => t,
    }
}

/// Imports a Caffe network: `prototxt` (deploy description) and `weights`
/// (caffemodel bytes). The result takes the network's input blob(s) (a table
/// when several) and returns its unconsumed top blob(s), in evaluation mode.
pub fn import(prototxt: &str, weights: &[u8]) -> Result<Box<dyn Module>> {
    crate::module::loading(|| import_net(prototxt, weights))
}

fn import_net(prototxt: &str, weights: &[u8]) -> Result<Box<dyn Module>> {
    let net = parse_text(prototxt)?;
    let blobs = parse_weights(weights)?;
    let mut g = GraphBuilder::new();
    let mut tops: HashMap<String, Node> = HashMap::new();
    let mut consumed: HashMap<String, bool> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut inputs = Vec::new();
    for name in net.scalars("input") {
        let n = g.input();
        tops.insert(name.to_string(), n);
        inputs.push(n);
    }
    let layers: Vec<&TextMsg> = net.msgs("layer").chain(net.msgs("layers")).collect();
    for l in layers {
        let name = l.str("name").unwrap_or("").to_string();
        let ty = current_type(l.str("type").unwrap_or(""));
        let bottoms: Vec<String> = l.scalars("bottom").map(str::to_string).collect();
        let top_names: Vec<String> = l.scalars("top").map(str::to_string).collect();
        let lb: Vec<&Blob> = blobs
            .get(&name)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let param = |p: &str| l.msg(p).cloned().unwrap_or_default();
        if matches!(ty, "Input" | "Data") {
            for t in &top_names {
                let n = g.input();
                tops.insert(t.clone(), n);
                inputs.push(n);
            }
            continue;
        }
        if matches!(ty, "Accuracy" | "SoftmaxWithLoss" | "Silence") {
            continue; // Training-only layers: a deploy network ignores them.
        }
        let data: Vec<Node> = bottoms
            .iter()
            .map(|b| {
                tops.get(b)
                    .copied()
                    .ok_or_else(|| unsupported(&name, format!("bottom {b} is not produced before")))
            })
            .collect::<Result<_>>()?;
        for b in &bottoms {
            consumed.insert(b.clone(), true);
        }
        if ty == "Split" {
            // Every top is the bottom.
            for t in &top_names {
                tops.insert(t.clone(), data[0]);
                consumed.insert(t.clone(), false);
                order.push(t.clone());
            }
            continue;
        }
        if ty == "Slice" {
            // Top i is the part between slice points i - 1 and i of the axis.
            let p = param("slice_param");
            let axis = p.usize("axis")?.or(p.usize("slice_dim")?).unwrap_or(1);
            let points = p.usizes("slice_point")?;
            if points.len() + 1 != top_names.len() {
                return Err(unsupported(
                    &name,
                    format!(
                        "{} slice points for {} tops (equal parts would need the input's size)",
                        points.len(),
                        top_names.len()
                    ),
                ));
            }
            if points.first() == Some(&0) || points.windows(2).any(|w| w[0] >= w[1]) {
                return Err(unsupported(&name, format!("slice points {points:?}")));
            }
            let mut start = 0;
            for (i, t) in top_names.iter().enumerate() {
                let len = points.get(i).map_or(-1, |&end| (end - start) as i64);
                let n = g.boxed(Box::new(Narrow::signed(axis, start, len)), &[data[0]])?;
                tops.insert(t.clone(), n);
                consumed.insert(t.clone(), false);
                order.push(t.clone());
                start = points.get(i).copied().unwrap_or(start);
            }
            continue;
        }
        let m: Box<dyn Module> = match ty {
            "Reshape" => {
                let p = param("reshape_param");
                if p.str("axis").is_some_and(|a| a != "0")
                    || p.str("num_axes").is_some_and(|a| a != "-1")
                {
                    return Err(unsupported(&name, "axis or num_axes".into()));
                }
                let dims: Vec<i64> = p
                    .msg("shape")
                    .map(|m| {
                        m.scalars("dim")
                            .map(|d| d.parse::<i64>().map_err(|_| bad(format!("dim {d:?}"))))
                            .collect::<Result<Vec<_>>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                let rest = dims.get(1..).unwrap_or(&[]);
                let frees = dims.iter().filter(|&&d| d == -1).count();
                match dims.first() {
                    Some(0) if rest == [-1] => Box::new(Flatten::new()),
                    Some(0) if !rest.is_empty() && rest.iter().all(|&d| d > 0) => Box::new(
                        Reshape::batched(&rest.iter().map(|&d| d as usize).collect::<Vec<_>>()),
                    ),
                    Some(_) if frees <= 1 && dims.iter().all(|&d| d > 0 || d == -1) => {
                        Box::new(View::new(
                            &dims
                                .iter()
                                .map(|&d| (d > 0).then_some(d as usize))
                                .collect::<Vec<_>>(),
                        ))
                    }
                    _ => return Err(unsupported(&name, format!("shape {dims:?}"))),
                }
            }
            "Convolution" | "Deconvolution" => {
                let p = param("convolution_param");
                let out = p
                    .usize("num_output")?
                    .ok_or_else(|| unsupported(&name, "no num_output".into()))?;
                let groups = p.usize("group")?.unwrap_or(1);
                let k = hw(&p, "kernel", 0)?;
                let k = if k == (0, 0) {
                    hw(&p, "kernel_size", 0)?
                } else {
                    k
                };
                let (ph, pw) = hw(&p, "pad", 0)?;
                let (sh, sw) = hw(&p, "stride", 1)?;
                let (dh, dw) = hw(&p, "dilation", 1)?;
                let w = lb
                    .first()
                    .ok_or_else(|| unsupported(&name, "no weights in the caffemodel".into()))?;
                let bias = p.bool("bias_term", true);
                // The layer the prototxt describes must be the blob's size
                // before anything is allocated for it.
                let (a, b) = if ty == "Convolution" {
                    (Some(out), w.shape.get(1).copied())
                } else {
                    (w.shape.first().copied(), Some(out / groups.max(1)))
                };
                let want = [a, b, Some(k.0), Some(k.1)]
                    .iter()
                    .try_fold(1usize, |acc, &x| acc.checked_mul(x?));
                if want != Some(w.data.len()) {
                    return Err(unsupported(
                        &name,
                        format!(
                            "{out} outputs, kernel {k:?} and a weight blob of shape {:?} ({} numbers)",
                            w.shape,
                            w.data.len()
                        ),
                    ));
                }
                let mut m: Box<dyn Module> = if ty == "Convolution" {
                    let cin = w.shape.get(1).copied().unwrap_or(0) * groups;
                    let c = SpatialConvolution::with_groups(cin, out, k, groups)?
                        .stride(sh, sw)
                        .pad(ph, pw)
                        .dilation(dh, dw);
                    Box::new(if bias { c } else { c.without_bias() })
                } else {
                    let cin = w.shape.first().copied().unwrap_or(0);
                    let c = SpatialFullConvolution::new(cin, out, k, groups)?
                        .stride(sh, sw)
                        .pad(ph, pw)
                        .dilation(dh, dw);
                    Box::new(if bias { c } else { c.without_bias() })
                };
                set_blobs(&name, m.as_mut(), &lb)?;
                m
            }
            "InnerProduct" => {
                let p = param("inner_product_param");
                if p.bool("transpose", false) {
                    return Err(unsupported(&name, "transpose".into()));
                }
                let out = p
                    .usize("num_output")?
                    .ok_or_else(|| unsupported(&name, "no num_output".into()))?;
                let w = lb
                    .first()
                    .ok_or_else(|| unsupported(&name, "no weights in the caffemodel".into()))?;
                let inp = w.data.len() / out.max(1);
                if inp == 0 || inp * out != w.data.len() {
                    return Err(unsupported(
                        &name,
                        format!(
                            "{out} outputs and a weight blob of {} numbers",
                            w.data.len()
                        ),
                    ));
                }
                // Caffe flattens from axis 1; its (legacy) weight may be 4-D.
                let mut lin = Linear::new(inp, out)?;
                if !p.bool("bias_term", true) {
                    lin = lin.without_bias();
                }
                let w2 = Blob {
                    shape: vec![out, inp],
                    data: w.data.clone(),
                };
                let mut bl = vec![&w2];
                bl.extend(lb.iter().skip(1).copied());
                set_blobs(&name, &mut lin, &bl)?;
                let mut s = crate::sequential::Sequential::new();
                s.push(Box::new(Flatten::new()));
                s.push(Box::new(lin));
                Box::new(s)
            }
            "Pooling" => {
                let p = param("pooling_param");
                let global = p.bool("global_pooling", false);
                let k = hw(&p, "kernel", 0)?;
                let k = if k == (0, 0) {
                    hw(&p, "kernel_size", 0)?
                } else {
                    k
                };
                let (ph, pw) = hw(&p, "pad", 0)?;
                let s = hw(&p, "stride", 1)?;
                let pool = p.str("pool").unwrap_or("MAX");
                // Caffe rounds output sizes up (ceil) unless round_mode says FLOOR.
                let ceil = p.str("round_mode").unwrap_or("CEIL") != "FLOOR";
                match (pool, global) {
                    ("MAX" | "0", false) => {
                        let m = SpatialMaxPooling::new(k, s).pad(ph, pw);
                        Box::new(if ceil { m.ceil() } else { m })
                    }
                    ("AVE" | "1", false) => {
                        let m = SpatialAveragePooling::new(k, s).pad(ph, pw);
                        Box::new(if ceil { m.ceil() } else { m })
                    }
                    ("AVE" | "1", true) => Box::new(SpatialAveragePooling::global()),
                    (p, g) => return Err(unsupported(&name, format!("pool {p} (global {g})"))),
                }
            }
            "ReLU" => {
                let slope = param("relu_param").f32("negative_slope", 0.0)?;
                if slope == 0.0 {
                    Box::new(ReLU::new()) as Box<dyn Module>
                } else {
                    Box::new(LeakyReLU::new(slope))
                }
            }
            "PReLU" => {
                let a = lb
                    .first()
                    .ok_or_else(|| unsupported(&name, "no slopes".into()))?;
                let mut m = PReLU::new(if a.data.len() == 1 { 0 } else { a.data.len() })?;
                let flat = Blob {
                    shape: vec![a.data.len()],
                    data: a.data.clone(),
                };
                set_blobs(&name, &mut m, &[&flat])?;
                Box::new(m)
            }
            "ELU" => Box::new(ELU::new(param("elu_param").f32("alpha", 1.0)?)),
            "Sigmoid" => Box::new(Sigmoid::new()),
            "TanH" => Box::new(Tanh::new()),
            "AbsVal" => Box::new(Abs::new()),
            "Power" => {
                let p = param("power_param");
                Box::new(Power::new(
                    p.f32("power", 1.0)?,
                    p.f32("scale", 1.0)?,
                    p.f32("shift", 0.0)?,
                ))
            }
            "Exp" | "Log" => {
                let p = param(if ty == "Exp" {
                    "exp_param"
                } else {
                    "log_param"
                });
                if p.f32("base", -1.0)? != -1.0
                    || p.f32("scale", 1.0)? != 1.0
                    || p.f32("shift", 0.0)? != 0.0
                {
                    return Err(unsupported(&name, "base, scale or shift".into()));
                }
                if ty == "Exp" {
                    Box::new(Exp::new()) as Box<dyn Module>
                } else {
                    Box::new(Log::new())
                }
            }
            "LRN" => {
                let p = param("lrn_param");
                if p.str("norm_region")
                    .is_some_and(|r| r != "ACROSS_CHANNELS" && r != "0")
                {
                    return Err(unsupported(&name, "WITHIN_CHANNEL normalisation".into()));
                }
                Box::new(SpatialCrossMapLRN::new(
                    p.usize("local_size")?.unwrap_or(5),
                    p.f32("alpha", 1.0)?,
                    p.f32("beta", 0.75)?,
                    p.f32("k", 1.0)?,
                ))
            }
            "BatchNorm" => {
                let eps = param("batch_norm_param").f32("eps", 1e-5)?;
                let [mean, var, sf] = &lb[..] else {
                    return Err(unsupported(
                        &name,
                        format!("{} blobs (mean, variance, factor expected)", lb.len()),
                    ));
                };
                let f = sf.data.first().copied().unwrap_or(1.0);
                let f = if f == 0.0 { 0.0 } else { 1.0 / f };
                let c = mean.data.len();
                if var.data.len() != c {
                    return Err(unsupported(
                        &name,
                        "mean and variance of different sizes".into(),
                    ));
                }
                let mut bn = BatchNormalization::any_layout(c)?.eps(eps).without_affine();
                let mut stats = [
                    mean.data.iter().map(|v| v * f).collect::<Vec<_>>(),
                    var.data.iter().map(|v| v * f).collect(),
                ]
                .into_iter();
                bn.visit_state(&mut |s| {
                    if let (StateMut::F32(v), Some(x)) = (s, stats.next()) {
                        *v = x;
                    }
                });
                Box::new(bn)
            }
            "Scale" | "Bias" => {
                let gamma = lb
                    .first()
                    .ok_or_else(|| unsupported(&name, "no blobs".into()))?;
                let c = gamma.data.len();
                let size = [c, 1, 1];
                let bias_term = ty == "Bias" || param("scale_param").bool("bias_term", false);
                let mut m: Box<dyn Module> = match (ty, bias_term) {
                    ("Bias", _) => Box::new(CAdd::new(&size)?),
                    (_, true) => Box::new(Scale::new(&size)?),
                    (_, false) => Box::new(CMul::new(&size)?),
                };
                let reshaped: Vec<Blob> = lb
                    .iter()
                    .map(|b| Blob {
                        shape: size.to_vec(),
                        data: b.data.clone(),
                    })
                    .collect();
                set_blobs(&name, m.as_mut(), &reshaped.iter().collect::<Vec<_>>())?;
                m
            }
            "Eltwise" => {
                let p = param("eltwise_param");
                let coeffs: Vec<f32> = p
                    .scalars("coeff")
                    .map(|c| c.parse().unwrap_or(f32::NAN))
                    .collect();
                let op = p.str("operation").unwrap_or("SUM");
                let sum = matches!(op, "SUM" | "1");
                if coeffs.iter().any(|&c| c != 1.0) && !sum {
                    return Err(unsupported(&name, format!("coefficients for {op}")));
                }
                if !coeffs.is_empty() && coeffs.len() != bottoms.len() {
                    return Err(unsupported(
                        &name,
                        format!("{} coefficients for {} inputs", coeffs.len(), bottoms.len()),
                    ));
                }
                match op {
                    "SUM" | "1" if coeffs.iter().any(|&c| c != 1.0) => {
                        // Each input scaled by its coefficient, then summed.
                        let scaled = coeffs.iter().fold(ParallelTable::new(), |t, &c| {
                            t.add_boxed(Box::new(MulConstant::new(c)))
                        });
                        let mut s = crate::sequential::Sequential::new();
                        s.push(Box::new(scaled));
                        s.push(Box::new(CAddTable::new()));
                        Box::new(s)
                    }
                    "SUM" | "1" => Box::new(CAddTable::new()),
                    "PROD" | "0" => Box::new(CMulTable::new()),
                    "MAX" | "2" => Box::new(CMaxTable::new()),
                    op => return Err(unsupported(&name, format!("operation {op}"))),
                }
            }
            "Concat" => {
                let p = param("concat_param");
                let axis = p.usize("axis")?.or(p.usize("concat_dim")?).unwrap_or(1);
                Box::new(JoinTable::new(axis))
            }
            "Flatten" => Box::new(Flatten::new()),
            "Dropout" => Box::new(Identity::new()),
            "Softmax" => Box::new(SoftMax::new()),
            t => return Err(unsupported(&name, format!("type {t} is not supported"))),
        };
        let out = g.boxed(m, &data)?;
        for t in &top_names {
            tops.insert(t.clone(), out);
            consumed.insert(t.clone(), false);
            order.push(t.clone());
        }
    }
    // Outputs: tops nobody consumed, in order of definition (latest binding).
    let mut outputs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in order.iter().rev() {
        if consumed.get(t) == Some(&false) && seen.insert(t.clone()) {
            outputs.push(tops[t]);
        }
    }
    outputs.reverse();
    outputs.dedup();
    if inputs.is_empty() || outputs.is_empty() {
        return Err(bad("a network without inputs or outputs"));
    }
    let mut graph = g.build(&inputs, &outputs)?;
    graph.evaluate();
    Ok(Box::new(graph))
}
