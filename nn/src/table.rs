//! Containers and layers over tables: `Identity`, `Concat`, `ConcatTable`,
//! `ParallelTable`, `CAddTable`, `CMulTable`, `JoinTable`, `SplitTable`,
//! `SelectTable`.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, invalid, shape};
use crate::io::Spec;
use crate::module::{FusionRole, Module};
use crate::sequential::children_spec;

/// `a + b` for activities of the same structure (gradients of a shared input).
pub(crate) fn add_activities(layer: &str, a: &Activity, b: &Activity) -> Result<Activity> {
    match (a, b) {
        (Activity::Tensor(x), Activity::Tensor(y)) => {
            if x.sizes() != y.sizes() {
                return Err(invalid(
                    layer,
                    format!(
                        "gradients of shapes {:?} and {:?} for one input",
                        x.sizes(),
                        y.sizes()
                    ),
                ));
            }
            Ok(x.add(y)?.into())
        }
        (Activity::Table(x), Activity::Table(y)) if x.len() == y.len() => Ok(Activity::Table(
            x.iter()
                .zip(y)
                .map(|(a, b)| add_activities(layer, a, b))
                .collect::<Result<_>>()?,
        )),
        _ => Err(invalid(
            layer,
            "gradients of different structure for one input",
        )),
    }
}

/// Zeros shaped like `a`.
pub(crate) fn zeros_like(a: &Activity) -> Result<Activity> {
    Ok(match a {
        Activity::Tensor(t) => Tensor::<f32>::zeros(t.sizes())?.into(),
        Activity::Table(v) => Activity::Table(v.iter().map(zeros_like).collect::<Result<_>>()?),
    })
}

/// Runs `f(child, input, grad)` for every child on the shared `input` and
/// sums the input gradients (zeros without children).
fn sum_over_children(
    layer: &str,
    modules: &mut [Box<dyn Module>],
    input: &Activity,
    grads: &[Activity],
    mut f: impl FnMut(&mut Box<dyn Module>, &Activity, &Activity) -> Result<Activity>,
) -> Result<Activity> {
    let mut sum: Option<Activity> = None;
    for (m, g) in modules.iter_mut().zip(grads) {
        let gi = f(m, input, g)?;
        sum = Some(match sum {
            None => gi,
            Some(s) => add_activities(layer, &s, &gi)?,
        });
    }
    sum.map_or_else(|| zeros_like(input), Ok)
}

/// Passes its input (tensor or table) through unchanged.
#[derive(Clone, Debug, Default)]
pub struct Identity;

impl Identity {
    /// The layer.
    pub fn new() -> Identity {
        Identity
    }
}

impl Module for Identity {
    fn name(&self) -> &str {
        "Identity"
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        Ok(input.clone())
    }
    fn update_grad_input(&mut self, _input: &Activity, grad_output: &Activity) -> Result<Activity> {
        Ok(grad_output.clone())
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("Identity"))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// A fixed tensor, whatever its input (which only places it in a graph);
/// the input's gradient is zeros. Imported models use it for constants
/// that feed layers as data (an ONNX recurrence's initial state or
/// sequence lengths). Its values are state, saved with the model.
#[derive(Clone, Debug)]
pub struct Constant {
    dims: Vec<usize>,
    values: Vec<f32>,
}

impl Constant {
    /// The layer giving `value`.
    pub fn new(value: &Tensor<f32>) -> Constant {
        Constant {
            dims: value.sizes().to_vec(),
            values: value.contiguous().to_vec(),
        }
    }

    /// A layer giving zeros of `dims` (until its state is restored).
    pub(crate) fn zeros(dims: &[usize]) -> Result<Constant> {
        let n = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid("Constant", format!("dimensions {dims:?} overflow")))?;
        Ok(Constant {
            dims: dims.to_vec(),
            values: vec![0.0; n],
        })
    }
}

impl Module for Constant {
    fn name(&self) -> &str {
        "Constant"
    }
    fn forward(&mut self, _input: &Activity) -> Result<Activity> {
        Ok(Tensor::from_vec(self.values.clone(), &self.dims)?.into())
    }
    fn update_grad_input(&mut self, input: &Activity, _grad_output: &Activity) -> Result<Activity> {
        zeros_like(input)
    }
    fn visit_state(&mut self, f: &mut dyn FnMut(crate::StateMut<'_>)) {
        f(crate::StateMut::F32(&mut self.values));
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("Constant").ints("dims", &self.dims))
    }
    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Children, with the containers' shared plumbing.
#[derive(Clone, Debug, Default)]
struct Children {
    modules: Vec<Box<dyn Module>>,
    training: bool,
}

impl Children {
    fn visit(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        for m in &mut self.modules {
            m.visit_parameters(f);
        }
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        for m in &mut self.modules {
            m.set_training(training);
        }
    }
    fn reseed(&mut self, seed: u64) {
        for (i, m) in self.modules.iter_mut().enumerate() {
            m.reseed(crate::module::child_seed(seed, i));
        }
    }
}

macro_rules! container_plumbing {
    () => {
        fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
            self.children.visit(f);
        }
        fn set_training(&mut self, training: bool) {
            self.children.set_training(training);
        }
        fn is_training(&self) -> bool {
            self.children.training
        }
        fn reseed(&mut self, seed: u64) {
            self.children.reseed(seed);
        }
        fn visit_state(&mut self, f: &mut dyn FnMut(crate::StateMut<'_>)) {
            for m in &mut self.children.modules {
                m.visit_state(f);
            }
        }
        fn clone_module(&self) -> Box<dyn Module> {
            Box::new(self.clone())
        }
    };
}

/// Applies every child to the same input; the output is the table of their
/// outputs, the input gradient the sum of theirs.
#[derive(Clone, Debug)]
pub struct ConcatTable {
    children: Children,
}

impl Default for ConcatTable {
    fn default() -> Self {
        ConcatTable::new()
    }
}

impl ConcatTable {
    /// No children yet.
    pub fn new() -> ConcatTable {
        ConcatTable {
            children: Children {
                modules: Vec::new(),
                training: true,
            },
        }
    }

    /// Adds a child (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Self {
        self.children.modules.push(Box::new(m));
        self
    }

    /// Adds a boxed child (builder style).
    pub fn add_boxed(mut self, m: Box<dyn Module>) -> Self {
        self.children.modules.push(m);
        self
    }
}

impl Module for ConcatTable {
    fn name(&self) -> &str {
        "ConcatTable"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let outs = self
            .children
            .modules
            .iter_mut()
            .map(|m| m.forward(input))
            .collect::<Result<_>>()?;
        Ok(Activity::Table(outs))
    }

    fn predict(&mut self, input: &Activity) -> Result<Activity> {
        let outs = self
            .children
            .modules
            .iter_mut()
            .map(|m| m.predict(input))
            .collect::<Result<_>>()?;
        Ok(Activity::Table(outs))
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let g = table_of(self.name(), grad_output, self.children.modules.len())?;
        sum_over_children(
            "ConcatTable",
            &mut self.children.modules,
            input,
            g,
            |m, x, g| m.update_grad_input(x, g),
        )
    }

    fn backward(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let g = table_of(self.name(), grad_output, self.children.modules.len())?;
        sum_over_children(
            "ConcatTable",
            &mut self.children.modules,
            input,
            g,
            |m, x, g| m.backward(x, g),
        )
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let g = table_of(self.name(), grad_output, self.children.modules.len())?;
        for (m, g) in self.children.modules.iter_mut().zip(g) {
            m.acc_grad_parameters(input, g, scale)?;
        }
        Ok(())
    }

    fn spec(&self) -> Option<Spec> {
        children_spec(Spec::new("ConcatTable"), &self.children.modules)
    }

    container_plumbing!();
}

/// The table `a`, checked to hold `n` entries.
fn table_of<'a>(layer: &str, a: &'a Activity, n: usize) -> Result<&'a [Activity]> {
    let t = a.table(layer)?;
    if t.len() != n {
        return Err(invalid(
            layer,
            format!("a table of {} entries for {n} children", t.len()),
        ));
    }
    Ok(t)
}

/// Applies child `i` to entry `i` of the input table.
#[derive(Clone, Debug)]
pub struct ParallelTable {
    children: Children,
}

impl Default for ParallelTable {
    fn default() -> Self {
        ParallelTable::new()
    }
}

impl ParallelTable {
    /// No children yet.
    pub fn new() -> ParallelTable {
        ParallelTable {
            children: Children {
                modules: Vec::new(),
                training: true,
            },
        }
    }

    /// Adds a child (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Self {
        self.children.modules.push(Box::new(m));
        self
    }

    /// Adds a boxed child (builder style).
    pub fn add_boxed(mut self, m: Box<dyn Module>) -> Self {
        self.children.modules.push(m);
        self
    }
}

impl Module for ParallelTable {
    fn name(&self) -> &str {
        "ParallelTable"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let x = table_of(self.name(), input, self.children.modules.len())?;
        let outs = self
            .children
            .modules
            .iter_mut()
            .zip(x)
            .map(|(m, x)| m.forward(x))
            .collect::<Result<_>>()?;
        Ok(Activity::Table(outs))
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let n = self.children.modules.len();
        let (x, g) = (
            table_of(self.name(), input, n)?,
            table_of(self.name(), grad_output, n)?,
        );
        let gs = self
            .children
            .modules
            .iter_mut()
            .zip(x.iter().zip(g))
            .map(|(m, (x, g))| m.update_grad_input(x, g))
            .collect::<Result<_>>()?;
        Ok(Activity::Table(gs))
    }

    fn backward(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let n = self.children.modules.len();
        let (x, g) = (
            table_of(self.name(), input, n)?,
            table_of(self.name(), grad_output, n)?,
        );
        let gs = self
            .children
            .modules
            .iter_mut()
            .zip(x.iter().zip(g))
            .map(|(m, (x, g))| m.backward(x, g))
            .collect::<Result<_>>()?;
        Ok(Activity::Table(gs))
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let n = self.children.modules.len();
        let (x, g) = (
            table_of(self.name(), input, n)?,
            table_of(self.name(), grad_output, n)?,
        );
        for (m, (x, g)) in self.children.modules.iter_mut().zip(x.iter().zip(g)) {
            m.acc_grad_parameters(x, g, scale)?;
        }
        Ok(())
    }

    fn spec(&self) -> Option<Spec> {
        children_spec(Spec::new("ParallelTable"), &self.children.modules)
    }

    container_plumbing!();
}

/// Applies every child to the same input and joins their (tensor) outputs
/// along `dim` (0-based, counting the batch dimension: channels of NCHW are
/// `dim` 1), as Inception's branches.
#[derive(Clone, Debug)]
pub struct Concat {
    dim: usize,
    children: Children,
    sizes: Vec<usize>,
}

impl Concat {
    /// Joins along `dim`.
    pub fn new(dim: usize) -> Concat {
        Concat {
            dim,
            children: Children {
                modules: Vec::new(),
                training: true,
            },
            sizes: Vec::new(),
        }
    }

    /// Adds a child (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Self {
        self.children.modules.push(Box::new(m));
        self
    }

    /// Adds a boxed child (builder style).
    pub fn add_boxed(mut self, m: Box<dyn Module>) -> Self {
        self.children.modules.push(m);
        self
    }

    /// Runs every child on `input` with `f` and joins the outputs.
    fn run(
        &mut self,
        input: &Activity,
        f: impl Fn(&mut Box<dyn Module>, &Activity) -> Result<Activity>,
    ) -> Result<Activity> {
        let outs = self
            .children
            .modules
            .iter_mut()
            .map(|m| f(m, input)?.into_tensor("Concat"))
            .collect::<Result<Vec<_>>>()?;
        if outs.is_empty() {
            return Err(invalid("Concat", "no children"));
        }
        self.sizes = outs
            .iter()
            .map(|t| t.sizes().get(self.dim).copied().unwrap_or(0))
            .collect();
        let refs: Vec<&Tensor<f32>> = outs.iter().collect();
        Ok(Tensor::cat(&refs, self.dim)?.into())
    }

    /// Each child's slice of `grad_output` along `dim`.
    fn split(&self, grad_output: &Activity) -> Result<Vec<Activity>> {
        let gy = grad_output.tensor("Concat")?;
        let total: usize = self.sizes.iter().sum();
        if gy.dim() <= self.dim || gy.sizes()[self.dim] != total {
            return Err(shape(
                "Concat",
                format!("{total} along dimension {}", self.dim),
                gy.sizes(),
            ));
        }
        let mut at = 0;
        let mut out = Vec::with_capacity(self.sizes.len());
        for &n in &self.sizes {
            out.push(gy.narrow(self.dim, at, n)?.contiguous().into());
            at += n;
        }
        Ok(out)
    }
}

impl Module for Concat {
    fn name(&self) -> &str {
        "Concat"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        self.run(input, |m, x| m.forward(x))
    }

    fn predict(&mut self, input: &Activity) -> Result<Activity> {
        self.run(input, |m, x| m.predict(x))
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let parts = self.split(grad_output)?;
        sum_over_children(
            "Concat",
            &mut self.children.modules,
            input,
            &parts,
            |m, x, g| m.update_grad_input(x, g),
        )
    }

    fn backward(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let parts = self.split(grad_output)?;
        sum_over_children(
            "Concat",
            &mut self.children.modules,
            input,
            &parts,
            |m, x, g| m.backward(x, g),
        )
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let parts = self.split(grad_output)?;
        for (m, g) in self.children.modules.iter_mut().zip(&parts) {
            m.acc_grad_parameters(input, g, scale)?;
        }
        Ok(())
    }

    fn spec(&self) -> Option<Spec> {
        children_spec(
            Spec::new("Concat").int("dim", self.dim),
            &self.children.modules,
        )
    }

    container_plumbing!();
}

/// The tensors of a table as a list, checked to be non-empty.
fn tensors<'a>(layer: &str, input: &'a Activity) -> Result<Vec<&'a Tensor<f32>>> {
    let t = input.table(layer)?;
    if t.is_empty() {
        return Err(invalid(layer, "an empty table"));
    }
    t.iter().map(|a| a.tensor(layer)).collect()
}

/// Element-wise sum of the tensors of a table (same shapes).
#[derive(Clone, Debug, Default)]
pub struct CAddTable;

impl CAddTable {
    /// The layer.
    pub fn new() -> CAddTable {
        CAddTable
    }
}

impl Module for CAddTable {
    fn name(&self) -> &str {
        "CAddTable"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Add
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        for x in &xs[1..] {
            same_sizes(self.name(), xs[0], x)?;
        }
        if xs.len() == 1 {
            return Ok(xs[0].contiguous().into());
        }
        let out = xs[0].add(xs[1])?;
        for x in &xs[2..] {
            out.add_(x)?;
        }
        Ok(out.into())
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        let gy = grad_output.tensor(self.name())?;
        same_sizes(self.name(), xs[0], gy)?;
        Ok(Activity::Table(
            xs.iter().map(|_| gy.deep_clone().into()).collect(),
        ))
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("CAddTable"))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

fn same_sizes(layer: &str, a: &Tensor<f32>, b: &Tensor<f32>) -> Result<()> {
    if a.sizes() == b.sizes() {
        Ok(())
    } else {
        Err(shape(
            layer,
            format!("{:?} (as the first entry)", a.sizes()),
            b.sizes(),
        ))
    }
}

/// Element-wise product of the tensors of a table (same shapes).
#[derive(Clone, Debug, Default)]
pub struct CMulTable;

impl CMulTable {
    /// The layer.
    pub fn new() -> CMulTable {
        CMulTable
    }
}

impl Module for CMulTable {
    fn name(&self) -> &str {
        "CMulTable"
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        let out = xs[0].deep_clone();
        for x in &xs[1..] {
            same_sizes(self.name(), xs[0], x)?;
            out.cmul_(x)?;
        }
        Ok(out.into())
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        let gy = grad_output.tensor(self.name())?;
        same_sizes(self.name(), xs[0], gy)?;
        // d/dx_i = gy * prod of the others (no division: zeros are fine).
        let mut out = Vec::with_capacity(xs.len());
        for i in 0..xs.len() {
            let g = gy.deep_clone();
            for (j, x) in xs.iter().enumerate() {
                if j != i {
                    g.cmul_(x)?;
                }
            }
            out.push(g.into());
        }
        Ok(Activity::Table(out))
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("CMulTable"))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Element-wise maximum of the tensors of a table (same shapes); the
/// gradient goes to the first tensor holding the maximum (BigDL's
/// `CMaxTable`, Caffe's `Eltwise MAX`).
#[derive(Clone, Debug, Default)]
pub struct CMaxTable;

impl CMaxTable {
    /// The layer.
    pub fn new() -> CMaxTable {
        CMaxTable
    }
}

impl Module for CMaxTable {
    fn name(&self) -> &str {
        "CMaxTable"
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        let mut out = xs[0].contiguous().to_vec();
        for x in &xs[1..] {
            same_sizes(self.name(), xs[0], x)?;
            let x = x.contiguous();
            out.iter_mut()
                .zip(x.as_slice()?.iter())
                .for_each(|(o, &v)| *o = o.max(v));
        }
        Ok(Tensor::from_vec(out, xs[0].sizes())?.into())
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        let gy = grad_output.tensor(self.name())?;
        same_sizes(self.name(), xs[0], gy)?;
        let vals: Vec<Vec<f32>> = xs.iter().map(|x| x.contiguous().to_vec()).collect();
        let gy = gy.contiguous().to_vec();
        let mut grads = vec![vec![0.0f32; gy.len()]; xs.len()];
        for (e, &g) in gy.iter().enumerate() {
            let mut best = 0;
            for k in 1..vals.len() {
                if vals[k][e] > vals[best][e] {
                    best = k;
                }
            }
            grads[best][e] = g;
        }
        grads
            .into_iter()
            .map(|g| Ok(Tensor::from_vec(g, xs[0].sizes())?.into()))
            .collect::<Result<Vec<Activity>>>()
            .map(Activity::Table)
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("CMaxTable"))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Joins the tensors of a table along `dim` (0-based).
#[derive(Clone, Debug)]
pub struct JoinTable {
    dim: usize,
}

impl JoinTable {
    /// Joins along `dim`.
    pub fn new(dim: usize) -> JoinTable {
        JoinTable { dim }
    }
}

impl Module for JoinTable {
    fn name(&self) -> &str {
        "JoinTable"
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        Ok(Tensor::cat(&xs, self.dim)?.into())
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let xs = tensors(self.name(), input)?;
        let gy = grad_output.tensor(self.name())?;
        let total: usize = xs
            .iter()
            .map(|x| x.sizes().get(self.dim).copied().unwrap_or(0))
            .sum();
        if gy.dim() <= self.dim || gy.sizes()[self.dim] != total {
            return Err(shape(
                self.name(),
                format!("{total} along dimension {}", self.dim),
                gy.sizes(),
            ));
        }
        let mut at = 0;
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            let n = x.sizes()[self.dim];
            out.push(gy.narrow(self.dim, at, n)?.contiguous().into());
            at += n;
        }
        Ok(Activity::Table(out))
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("JoinTable").int("dim", self.dim))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Splits a tensor along `dim` into the table of its slices (that dimension
/// removed).
#[derive(Clone, Debug)]
pub struct SplitTable {
    dim: usize,
}

impl SplitTable {
    /// Splits along `dim`.
    pub fn new(dim: usize) -> SplitTable {
        SplitTable { dim }
    }
}

impl Module for SplitTable {
    fn name(&self) -> &str {
        "SplitTable"
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(self.name())?;
        if x.dim() <= self.dim {
            return Err(shape(
                self.name(),
                format!("at least {} dimensions", self.dim + 1),
                x.sizes(),
            ));
        }
        let parts = (0..x.sizes()[self.dim])
            .map(|i| Ok(x.select(self.dim, i)?.contiguous().into()))
            .collect::<Result<_>>()?;
        Ok(Activity::Table(parts))
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(self.name())?;
        let gs = tensors(self.name(), grad_output)?;
        if x.dim() <= self.dim || gs.len() != x.sizes()[self.dim] {
            return Err(invalid(
                self.name(),
                format!("{} gradients for input {:?}", gs.len(), x.sizes()),
            ));
        }
        let parts = gs
            .iter()
            .map(|g| g.unsqueeze(self.dim))
            .collect::<bigdl_tensor::Result<Vec<_>>>()?;
        let refs: Vec<&Tensor<f32>> = parts.iter().collect();
        let gx = Tensor::cat(&refs, self.dim)?;
        same_sizes(self.name(), x, &gx)?;
        Ok(gx.into())
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("SplitTable").int("dim", self.dim))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Entry `index` (0-based) of a table.
#[derive(Clone, Debug)]
pub struct SelectTable {
    index: usize,
}

impl SelectTable {
    /// Selects entry `index`.
    pub fn new(index: usize) -> SelectTable {
        SelectTable { index }
    }

    fn entry<'a>(&self, input: &'a Activity) -> Result<&'a Activity> {
        let t = input.table("SelectTable")?;
        t.get(self.index).ok_or_else(|| {
            invalid(
                "SelectTable",
                format!("entry {} of a table of {}", self.index, t.len()),
            )
        })
    }
}

impl Module for SelectTable {
    fn name(&self) -> &str {
        "SelectTable"
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        Ok(self.entry(input)?.clone())
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.entry(input)?;
        let t = input.table(self.name())?;
        let mut out = Vec::with_capacity(t.len());
        for (i, a) in t.iter().enumerate() {
            out.push(if i == self.index {
                grad_output.clone()
            } else {
                zeros_like(a)?
            });
        }
        Ok(Activity::Table(out))
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("SelectTable").int("index", self.index))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
