//! Exporting models to ONNX (opset 13) for the layers that map, so models
//! trained here can be served elsewhere. The export walks the model's
//! [`Spec`] and takes the weights and state in the same order.

use bigdl_tensor::Tensor;

use super::Spec;
use crate::error::{NnError, Result};
use crate::module::{Module, StateMut};

/// Protocol-buffer writing.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, ((field as u64) << 3) | wire as u64);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend(b);
    }
    pub fn int(out: &mut Vec<u8>, field: u32, v: i64) {
        key(out, field, 0);
        varint(out, v as u64);
    }
    pub fn float(out: &mut Vec<u8>, field: u32, v: f32) {
        key(out, field, 5);
        out.extend(v.to_le_bytes());
    }
}

/// An ONNX attribute value.
enum A {
    I(i64),
    F(f32),
    Is(Vec<i64>),
}

fn attribute(name: &str, a: &A) -> Vec<u8> {
    let mut m = Vec::new();
    pb::bytes(&mut m, 1, name.as_bytes());
    match a {
        A::F(v) => {
            pb::float(&mut m, 2, *v);
            pb::int(&mut m, 20, 1);
        }
        A::I(v) => {
            pb::int(&mut m, 3, *v);
            pb::int(&mut m, 20, 2);
        }
        A::Is(v) => {
            let mut packed = Vec::new();
            v.iter().for_each(|&x| pb::varint(&mut packed, x as u64));
            pb::bytes(&mut m, 8, &packed);
            pb::int(&mut m, 20, 7);
        }
    }
    m
}

fn tensor_proto(name: &str, dims: &[usize], data: &[f32]) -> Vec<u8> {
    let mut m = Vec::new();
    let mut packed = Vec::new();
    dims.iter().for_each(|&d| pb::varint(&mut packed, d as u64));
    pb::bytes(&mut m, 1, &packed);
    pb::int(&mut m, 2, 1); // FLOAT
    pb::bytes(&mut m, 8, name.as_bytes());
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    pb::bytes(&mut m, 9, &raw);
    m
}

fn int_tensor_proto(name: &str, data: &[i64]) -> Vec<u8> {
    let mut m = Vec::new();
    let mut packed = Vec::new();
    pb::varint(&mut packed, data.len() as u64);
    pb::bytes(&mut m, 1, &packed);
    pb::int(&mut m, 2, 7); // INT64
    pb::bytes(&mut m, 8, name.as_bytes());
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    pb::bytes(&mut m, 9, &raw);
    m
}

/// Symbolic values: a tensor's name, or a table of them.
#[derive(Clone, Debug)]
enum Sym {
    Name(String),
    Table(Vec<Sym>),
}

struct Export<'a> {
    nodes: Vec<Vec<u8>>,
    inits: Vec<Vec<u8>>,
    params: std::slice::Iter<'a, Tensor<f32>>,
    state: std::vec::IntoIter<std::result::Result<u64, Vec<f32>>>,
    counter: usize,
}

fn unsupported(what: String) -> NnError {
    NnError::Invalid {
        layer: "ONNX export".into(),
        what,
    }
}

impl Export<'_> {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}_{}", self.counter)
    }

    fn param(&mut self, kind: &str) -> Result<Tensor<f32>> {
        self.params
            .next()
            .cloned()
            .ok_or_else(|| unsupported(format!("{kind}: missing parameters")))
    }

    fn floats_state(&mut self, kind: &str) -> Result<Vec<f32>> {
        match self.state.next() {
            Some(Err(v)) => Ok(v),
            _ => Err(unsupported(format!("{kind}: missing state"))),
        }
    }

    fn init(&mut self, base: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(base);
        self.inits.push(tensor_proto(&name, dims, data));
        name
    }

    fn node(&mut self, op: &str, inputs: &[String], attrs: &[(&str, A)]) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        let mut m = Vec::new();
        inputs
            .iter()
            .for_each(|i| pb::bytes(&mut m, 1, i.as_bytes()));
        pb::bytes(&mut m, 2, out.as_bytes());
        pb::bytes(&mut m, 3, out.as_bytes());
        pb::bytes(&mut m, 4, op.as_bytes());
        for (n, a) in attrs {
            pb::bytes(&mut m, 5, &attribute(n, a));
        }
        self.nodes.push(m);
        out
    }

    fn name(&self, s: &Sym, kind: &str) -> Result<String> {
        match s {
            Sym::Name(n) => Ok(n.clone()),
            Sym::Table(_) => Err(unsupported(format!("{kind} given a table"))),
        }
    }

    fn names(&self, s: &Sym, kind: &str) -> Result<Vec<String>> {
        match s {
            Sym::Table(v) => v.iter().map(|x| self.name(x, kind)).collect(),
            Sym::Name(_) => Err(unsupported(format!("{kind} given a tensor"))),
        }
    }

    fn walk(&mut self, s: &Spec, x: Sym) -> Result<Sym> {
        let k = s.kind.as_str();
        let one = |e: &Self| e.name(&x, k);
        let ints = |v: Vec<usize>| A::Is(v.into_iter().map(|x| x as i64).collect());
        Ok(Sym::Name(match k {
            "Sequential" => {
                let mut cur = x;
                for c in &s.children {
                    cur = self.walk(c, cur)?;
                }
                return Ok(cur);
            }
            "ConcatTable" => {
                return Ok(Sym::Table(
                    s.children
                        .iter()
                        .map(|c| self.walk(c, x.clone()))
                        .collect::<Result<_>>()?,
                ));
            }
            "ParallelTable" => {
                let Sym::Table(xs) = x else {
                    return Err(unsupported("ParallelTable given a tensor".into()));
                };
                return Ok(Sym::Table(
                    s.children
                        .iter()
                        .zip(xs)
                        .map(|(c, x)| self.walk(c, x))
                        .collect::<Result<_>>()?,
                ));
            }
            "Identity" | "Dropout" | "Contiguous" => {
                if k == "Dropout" {
                    self.state.next();
                    self.state.next();
                }
                return Ok(x);
            }
            "Concat" => {
                let parts: Vec<String> = s
                    .children
                    .iter()
                    .map(|c| self.walk(c, x.clone()).and_then(|y| self.name(&y, k)))
                    .collect::<Result<_>>()?;
                self.node(
                    "Concat",
                    &parts,
                    &[("axis", A::I(s.get_usize("dim")? as i64))],
                )
            }
            "CAddTable" => {
                let n = self.names(&x, k)?;
                self.node("Sum", &n, &[])
            }
            "CMulTable" => {
                let n = self.names(&x, k)?;
                let mut acc = n[0].clone();
                for b in &n[1..] {
                    acc = self.node("Mul", &[acc, b.clone()], &[]);
                }
                acc
            }
            "JoinTable" => {
                let n = self.names(&x, k)?;
                self.node("Concat", &n, &[("axis", A::I(s.get_usize("dim")? as i64))])
            }
            "Linear" => {
                let w = self.param(k)?;
                let (o, i) = (s.get_usize("out")?, s.get_usize("in")?);
                let wn = self.init("weight", &[o, i], &w.to_vec());
                let mut ins = vec![one(self)?, wn];
                if s.get_bool("bias")? {
                    let b = self.param(k)?;
                    ins.push(self.init("bias", &[o], &b.to_vec()));
                }
                self.node("Gemm", &ins, &[("transB", A::I(1))])
            }
            "SpatialConvolution" | "SpatialFullConvolution" => {
                let w = self.param(k)?;
                let wn = self.init("weight", w.sizes(), &w.to_vec());
                let mut ins = vec![one(self)?, wn];
                if s.get_bool("bias")? {
                    let b = self.param(k)?;
                    ins.push(self.init("bias", b.sizes(), &b.to_vec()));
                }
                let pad = s.get_usizes("pad")?;
                let mut attrs = vec![
                    ("kernel_shape", ints(s.get_usizes("kernel")?)),
                    ("strides", ints(s.get_usizes("stride")?)),
                    ("pads", ints(vec![pad[0], pad[1], pad[0], pad[1]])),
                    ("dilations", ints(s.get_usizes("dilation")?)),
                    ("group", A::I(s.get_usize("groups")? as i64)),
                ];
                if k == "SpatialFullConvolution" {
                    attrs.push(("output_padding", ints(s.get_usizes("adj")?)));
                    self.node("ConvTranspose", &ins, &attrs)
                } else {
                    self.node("Conv", &ins, &attrs)
                }
            }
            "SpatialMaxPooling" | "SpatialAveragePooling" => {
                let input = one(self)?;
                if s.get_bool("global")? {
                    self.node("GlobalAveragePool", &[input], &[])
                } else {
                    let pad = s.get_usizes("pad")?;
                    let mut attrs = vec![
                        ("kernel_shape", ints(s.get_usizes("kernel")?)),
                        ("strides", ints(s.get_usizes("stride")?)),
                        ("pads", ints(vec![pad[0], pad[1], pad[0], pad[1]])),
                        ("ceil_mode", A::I(s.get_bool("ceil")? as i64)),
                    ];
                    if k == "SpatialMaxPooling" {
                        self.node("MaxPool", &[input], &attrs)
                    } else {
                        attrs.push((
                            "count_include_pad",
                            A::I(s.get_bool("count_include_pad")? as i64),
                        ));
                        self.node("AveragePool", &[input], &attrs)
                    }
                }
            }
            "BatchNormalization" => {
                let c = s.get_usize("channels")?;
                let (g, b) = if s.get_bool("affine")? {
                    (self.param(k)?.to_vec(), self.param(k)?.to_vec())
                } else {
                    (vec![1.0; c], vec![0.0; c])
                };
                let (m, v) = (self.floats_state(k)?, self.floats_state(k)?);
                let input = one(self)?;
                let names = [("scale", g), ("B", b), ("mean", m), ("var", v)]
                    .map(|(n, d)| self.init(n, &[c], &d));
                let mut ins = vec![input];
                ins.extend(names);
                self.node(
                    "BatchNormalization",
                    &ins,
                    &[("epsilon", A::F(s.get_f32("eps")?))],
                )
            }
            "SpatialCrossMapLRN" => {
                let input = one(self)?;
                self.node(
                    "LRN",
                    &[input],
                    &[
                        ("size", A::I(s.get_usize("size")? as i64)),
                        ("alpha", A::F(s.get_f32("alpha")?)),
                        ("beta", A::F(s.get_f32("beta")?)),
                        ("bias", A::F(s.get_f32("k")?)),
                    ],
                )
            }
            "ReLU" | "Tanh" | "Sigmoid" | "Abs" | "Exp" | "Log" | "Sqrt" => {
                let op = match k {
                    "ReLU" => "Relu",
                    "Tanh" => "Tanh",
                    "Sigmoid" => "Sigmoid",
                    "Abs" => "Abs",
                    "Exp" => "Exp",
                    "Log" => "Log",
                    _ => "Sqrt",
                };
                let input = one(self)?;
                self.node(op, &[input], &[])
            }
            "SoftMax" | "LogSoftMax" => {
                let input = one(self)?;
                let op = if k == "SoftMax" {
                    "Softmax"
                } else {
                    "LogSoftmax"
                };
                self.node(op, &[input], &[("axis", A::I(-1))])
            }
            "LeakyReLU" => {
                let input = one(self)?;
                self.node(
                    "LeakyRelu",
                    &[input],
                    &[("alpha", A::F(s.get_f32("negval")?))],
                )
            }
            "ELU" => {
                let input = one(self)?;
                self.node("Elu", &[input], &[("alpha", A::F(s.get_f32("alpha")?))])
            }
            "ReLU6" | "HardTanh" => {
                let (lo, hi) = if k == "ReLU6" {
                    (0.0, 6.0)
                } else {
                    (s.get_f32("min")?, s.get_f32("max")?)
                };
                let input = one(self)?;
                let lo = self.init("min", &[], &[lo]);
                let hi = self.init("max", &[], &[hi]);
                self.node("Clip", &[input, lo, hi], &[])
            }
            "MulConstant" | "AddConstant" => {
                let input = one(self)?;
                let c = self.init("c", &[], &[s.get_f32("c")?]);
                self.node(
                    if k == "MulConstant" { "Mul" } else { "Add" },
                    &[input, c],
                    &[],
                )
            }
            "CMul" | "CAdd" | "Scale" => {
                let size = s.get_usizes("size")?;
                let mut y = one(self)?;
                if k != "CAdd" {
                    let w = self.param(k)?;
                    let wn = self.init("scale", &size, &w.to_vec());
                    y = self.node("Mul", &[y, wn], &[]);
                }
                if k != "CMul" {
                    let b = self.param(k)?;
                    let bn = self.init("bias", &size, &b.to_vec());
                    y = self.node("Add", &[y, bn], &[]);
                }
                y
            }
            "Reshape" if s.get_bool("batched")? => {
                let mut shape = vec![0i64];
                shape.extend(s.get_usizes("sizes")?.iter().map(|&d| d as i64));
                let name = self.fresh("shape");
                self.inits.push(int_tensor_proto(&name, &shape));
                let input = one(self)?;
                self.node("Reshape", &[input, name], &[])
            }
            "Flatten" => {
                let input = one(self)?;
                self.node("Flatten", &[input], &[("axis", A::I(1))])
            }
            "LookupTable" => {
                let w = self.param(k)?;
                let tn = self.init("table", w.sizes(), &w.to_vec());
                let input = one(self)?;
                let idx = self.node("Cast", &[input], &[("to", A::I(7))]);
                self.node("Gather", &[tn, idx], &[("axis", A::I(0))])
            }
            other => {
                return Err(unsupported(format!(
                    "{other} has no ONNX mapping in this build{}",
                    if other == "Reshape" {
                        " (use Reshape::batched)"
                    } else {
                        ""
                    }
                )));
            }
        }))
    }
}

/// The ONNX encoding (opset 13) of `model` for inputs of `input_shape` (the
/// first dimension, the batch, is symbolic in the file): one input named
/// `input`, outputs named `output` (`output_k` for several), their shapes
/// found by running the model once in evaluation mode. Errors name the first
/// layer without an ONNX mapping.
pub fn export(model: &mut dyn Module, input_shape: &[usize]) -> Result<Vec<u8>> {
    model.evaluate();
    let probe = model.forward(&Tensor::<f32>::zeros(input_shape)?.into())?;
    let out_shapes: Vec<Vec<usize>> = match &probe {
        crate::Activity::Tensor(t) => vec![t.sizes().to_vec()],
        crate::Activity::Table(v) => v
            .iter()
            .map(|a| a.tensor("ONNX export").map(|t| t.sizes().to_vec()))
            .collect::<Result<_>>()?,
    };
    let spec = model
        .spec()
        .ok_or_else(|| unsupported("the model has a module without a description".into()))?;
    let params: Vec<Tensor<f32>> = model.parameters().into_iter().map(|(w, _)| w).collect();
    let mut state = Vec::new();
    model.visit_state(&mut |s| {
        state.push(match s {
            StateMut::F32(v) => Err(v.clone()),
            StateMut::U64(v) => Ok(*v),
        })
    });
    let mut e = Export {
        nodes: Vec::new(),
        inits: Vec::new(),
        params: params.iter(),
        state: state.into_iter(),
        counter: 0,
    };
    let out = e.walk(&spec, Sym::Name("input".into()))?;
    if e.params.next().is_some() {
        return Err(unsupported("parameters left over after the walk".into()));
    }
    let outs: Vec<String> = match &out {
        Sym::Name(n) => vec![n.clone()],
        Sym::Table(v) => v
            .iter()
            .map(|s| e.name(s, "output"))
            .collect::<Result<_>>()?,
    };
    // Rename the outputs through Identity nodes so they have stable names.
    let mut finals = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        let name = if outs.len() == 1 {
            "output".to_string()
        } else {
            format!("output_{i}")
        };
        let mut m = Vec::new();
        pb::bytes(&mut m, 1, o.as_bytes());
        pb::bytes(&mut m, 2, name.as_bytes());
        pb::bytes(&mut m, 4, b"Identity");
        e.nodes.push(m);
        finals.push(name);
    }
    let value_info = |name: &str, dims: &[usize]| {
        let mut shape = Vec::new();
        for (i, &d) in dims.iter().enumerate() {
            let mut dim = Vec::new();
            if i == 0 {
                pb::bytes(&mut dim, 2, b"N");
            } else {
                pb::int(&mut dim, 1, d as i64);
            }
            pb::bytes(&mut shape, 1, &dim);
        }
        let mut tensor_type = Vec::new();
        pb::int(&mut tensor_type, 1, 1); // FLOAT
        pb::bytes(&mut tensor_type, 2, &shape);
        let mut ty = Vec::new();
        pb::bytes(&mut ty, 1, &tensor_type);
        let mut v = Vec::new();
        pb::bytes(&mut v, 1, name.as_bytes());
        pb::bytes(&mut v, 2, &ty);
        v
    };
    let mut graph = Vec::new();
    e.nodes.iter().for_each(|n| pb::bytes(&mut graph, 1, n));
    pb::bytes(&mut graph, 2, b"bigdl");
    e.inits.iter().for_each(|t| pb::bytes(&mut graph, 5, t));
    pb::bytes(&mut graph, 11, &value_info("input", input_shape));
    if finals.len() != out_shapes.len() {
        return Err(unsupported("outputs differ from the model's".into()));
    }
    for (n, s) in finals.iter().zip(&out_shapes) {
        pb::bytes(&mut graph, 12, &value_info(n, s));
    }
    let mut model_pb = Vec::new();
    pb::int(&mut model_pb, 1, 7); // IR version 7
    pb::bytes(&mut model_pb, 2, b"bigdl-rs");
    pb::bytes(&mut model_pb, 7, &graph);
    let mut opset = Vec::new();
    pb::bytes(&mut opset, 1, b"");
    pb::int(&mut opset, 2, 13);
    pb::bytes(&mut model_pb, 8, &opset);
    Ok(model_pb)
}
