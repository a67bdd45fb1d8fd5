//! `Graph`: a container whose modules form a directed acyclic graph.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, invalid};
use crate::module::{FusionRole, Module};
use crate::table::{Identity, add_activities, zeros_like};

/// A node of a graph under construction (an index into its builder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node(usize);

/// Builds a [`Graph`]: nodes are added after the nodes they read, so the
/// order of construction is a topological order and cycles cannot be built.
///
/// ```
/// use bigdl_nn::layers::{Linear, Tanh};
/// use bigdl_nn::{CAddTable, GraphBuilder, Module};
/// # fn main() -> Result<(), bigdl_nn::NnError> {
/// let mut g = GraphBuilder::new();
/// let x = g.input();
/// let a = g.node(Linear::new(4, 4)?, &[x])?;
/// let b = g.node(Tanh::new(), &[a])?;
/// let sum = g.node(CAddTable::new(), &[a, b])?; // a skip connection
/// let mut model = g.build(&[x], &[sum])?;
/// # let _ = model.name();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<(Box<dyn Module>, Vec<usize>)>,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// A graph input (one entry of the input table when there are several).
    pub fn input(&mut self) -> Node {
        self.nodes.push((Box::new(Identity::new()), Vec::new()));
        Node(self.nodes.len() - 1)
    }

    /// A node applying `m` to the output of `inputs` (one node: its output;
    /// several: the table of their outputs, in this order).
    pub fn node(&mut self, m: impl Module + 'static, inputs: &[Node]) -> Result<Node> {
        self.boxed(Box::new(m), inputs)
    }

    /// As [`GraphBuilder::node`] for a boxed module.
    pub fn boxed(&mut self, m: Box<dyn Module>, inputs: &[Node]) -> Result<Node> {
        if inputs.is_empty() {
            return Err(invalid(
                "Graph",
                format!("node {} ({}) has no inputs", self.nodes.len(), m.name()),
            ));
        }
        if let Some(bad) = inputs.iter().find(|n| n.0 >= self.nodes.len()) {
            return Err(invalid(
                "Graph",
                format!("input node {} of {} does not exist", bad.0, m.name()),
            ));
        }
        self.nodes.push((m, inputs.iter().map(|n| n.0).collect()));
        Ok(Node(self.nodes.len() - 1))
    }

    /// The graph from `inputs` to `outputs`. Every input must be an
    /// [`GraphBuilder::input`] node and every node must be reachable from
    /// them.
    pub fn build(self, inputs: &[Node], outputs: &[Node]) -> Result<Graph> {
        let n = self.nodes.len();
        if inputs.is_empty() || outputs.is_empty() {
            return Err(invalid("Graph", "a graph needs inputs and outputs"));
        }
        for node in inputs.iter().chain(outputs) {
            if node.0 >= n {
                return Err(invalid("Graph", format!("node {} does not exist", node.0)));
            }
        }
        for (i, (m, preds)) in self.nodes.iter().enumerate() {
            let is_input = inputs.iter().any(|x| x.0 == i);
            if preds.is_empty() && !is_input {
                return Err(invalid(
                    "Graph",
                    format!("input node {i} is not among the graph's inputs"),
                ));
            }
            if is_input && !preds.is_empty() {
                return Err(invalid(
                    "Graph",
                    format!("graph input {i} ({}) is not an input node", m.name()),
                ));
            }
        }
        Ok(Graph {
            nodes: self.nodes,
            inputs: inputs.iter().map(|x| x.0).collect(),
            outputs: outputs.iter().map(|x| x.0).collect(),
            node_inputs: Vec::new(),
            node_grads: Vec::new(),
            training: true,
        })
    }
}

/// Modules connected as a directed acyclic graph (BigDL's `Graph`): several
/// inputs and outputs (tables when more than one), shared outputs whose
/// gradients are summed.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Modules and the indices of the nodes they read, in topological order.
    nodes: Vec<(Box<dyn Module>, Vec<usize>)>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Each node's input from the last forward.
    node_inputs: Vec<Activity>,
    /// Each node's output gradient from the last `update_grad_input`.
    node_grads: Vec<Option<Activity>>,
    training: bool,
}

impl Graph {
    /// The backward pass over the nodes in reverse; `fused` runs each
    /// node's `backward` (input and parameter gradients at once).
    fn back(&mut self, grad_output: &Activity, fused: bool) -> Result<Activity> {
        let mut grads = self.output_grads(grad_output)?;
        self.node_grads = vec![None; self.nodes.len()];
        let mut input_grads: Vec<Option<Activity>> = vec![None; self.inputs.len()];
        for i in (0..self.nodes.len()).rev() {
            let Some(g) = grads[i].take() else {
                continue; // Nothing downstream reads this node.
            };
            let (m, x) = (&mut self.nodes[i].0, &self.node_inputs[i]);
            let gi = if fused {
                m.backward(x, &g)?
            } else {
                m.update_grad_input(x, &g)?
            };
            self.node_grads[i] = Some(g);
            if let Some(k) = self.inputs.iter().position(|&x| x == i) {
                accumulate(&mut input_grads[k], gi)?;
                continue;
            }
            let preds = self.nodes[i].1.clone();
            if preds.len() == 1 {
                accumulate(&mut grads[preds[0]], gi)?;
            } else {
                let parts = gi.table("Graph")?.to_vec();
                if parts.len() != preds.len() {
                    return Err(invalid(
                        "Graph",
                        format!(
                            "{} returned {} input gradients for {} inputs",
                            self.nodes[i].0.name(),
                            parts.len(),
                            preds.len()
                        ),
                    ));
                }
                for (&p, part) in preds.iter().zip(parts) {
                    accumulate(&mut grads[p], part)?;
                }
            }
        }
        let mut out = Vec::with_capacity(self.inputs.len());
        for (k, g) in input_grads.into_iter().enumerate() {
            out.push(match g {
                Some(g) => g,
                None => zeros_like(&self.node_inputs[self.inputs[k]])?,
            });
        }
        Ok(Graph::pack(out))
    }

    /// How [`Module::predict`] runs each node: a ReLU that alone reads a
    /// convolution, or an addition that alone reads it (with another input
    /// computed before it) and the ReLU that alone reads the addition, run
    /// inside the convolution; their nodes take its output.
    fn fusion_plan(&self) -> Vec<Step> {
        let n = self.nodes.len();
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, (_, preds)) in self.nodes.iter().enumerate() {
            for &p in preds {
                readers[p].push(i);
            }
        }
        // The node that alone reads node i's output.
        let sole =
            |i: usize| (readers[i].len() == 1 && !self.outputs.contains(&i)).then(|| readers[i][0]);
        let role = |i: usize| self.nodes[i].0.fusion_role();
        let mut steps = vec![Step::Run; n];
        for i in 0..n {
            if role(i) != FusionRole::Producer || self.inputs.contains(&i) {
                continue;
            }
            let Some(j) = sole(i) else { continue };
            let (mut residual, mut last) = (None, i);
            let preds = &self.nodes[j].1;
            if role(j) == FusionRole::Add && preds.len() == 2 && preds.contains(&i) {
                let r = if preds[0] == i { preds[1] } else { preds[0] };
                if r >= i {
                    continue; // Not computed yet when node i runs (or i itself).
                }
                residual = Some(r);
                last = j;
            }
            let relu = match if residual.is_some() { sole(j) } else { Some(j) } {
                Some(k) if role(k) == FusionRole::Relu && self.nodes[k].1 == [last] => {
                    steps[k] = Step::Alias(last);
                    true
                }
                _ => false,
            };
            if residual.is_some() {
                steps[j] = Step::Alias(i);
            }
            if residual.is_some() || relu {
                steps[i] = Step::Fused { residual, relu };
            }
        }
        steps
    }

    fn pack(items: Vec<Activity>) -> Activity {
        if items.len() == 1 {
            items.into_iter().next().expect("one item")
        } else {
            Activity::Table(items)
        }
    }

    /// The activity entry `k` of the graph input for input node `k`.
    fn graph_inputs(&self, input: &Activity) -> Result<Vec<Activity>> {
        if self.inputs.len() == 1 {
            return Ok(vec![input.clone()]);
        }
        let t = input.table("Graph")?;
        if t.len() != self.inputs.len() {
            return Err(invalid(
                "Graph",
                format!("{} inputs for a graph of {}", t.len(), self.inputs.len()),
            ));
        }
        Ok(t.to_vec())
    }

    /// The gradient of every node's output, summed over its readers.
    fn output_grads(&mut self, grad_output: &Activity) -> Result<Vec<Option<Activity>>> {
        if self.node_inputs.len() != self.nodes.len() {
            return Err(invalid("Graph", "backward before forward"));
        }
        let mut grads: Vec<Option<Activity>> = vec![None; self.nodes.len()];
        let outs: Vec<Activity> = if self.outputs.len() == 1 {
            vec![grad_output.clone()]
        } else {
            let t = grad_output.table("Graph")?;
            if t.len() != self.outputs.len() {
                return Err(invalid(
                    "Graph",
                    format!(
                        "{} output gradients for {} outputs",
                        t.len(),
                        self.outputs.len()
                    ),
                ));
            }
            t.to_vec()
        };
        for (&o, g) in self.outputs.iter().zip(outs) {
            accumulate(&mut grads[o], g)?;
        }
        Ok(grads)
    }
}

/// What [`Module::predict`] does at a node of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The node's own `predict`.
    Run,
    /// `predict_with` the output of node `residual` added, then ReLU.
    Fused { residual: Option<usize>, relu: bool },
    /// Fused into the node it reads, whose output (computed with this
    /// node's work) it takes.
    Alias(usize),
}

fn accumulate(slot: &mut Option<Activity>, g: Activity) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        Some(s) => add_activities("Graph", &s, &g)?,
    });
    Ok(())
}

impl Graph {
    /// [`Module::predict`]'s work.
    fn predict_steps(&mut self, input: &Activity) -> Result<Activity> {
        let given = self.graph_inputs(input)?;
        self.node_inputs.clear();
        self.node_grads.clear();
        let n = self.nodes.len();
        let steps = self.fusion_plan();
        // The last node reading each output (graph outputs are kept).
        let mut last_read = vec![0; n];
        for (i, (_, preds)) in self.nodes.iter().enumerate() {
            for &p in preds {
                last_read[p] = i;
            }
        }
        for &o in &self.outputs {
            last_read[o] = n;
        }
        let mut outputs: Vec<Option<Activity>> = vec![None; n];
        for i in 0..n {
            let output = |p: usize| outputs[p].clone().expect("topological order");
            outputs[i] = Some(match steps[i] {
                Step::Alias(src) => output(src),
                step => {
                    let x = match self.inputs.iter().position(|&k| k == i) {
                        Some(k) => given[k].clone(),
                        None => Graph::pack(self.nodes[i].1.iter().map(|&p| output(p)).collect()),
                    };
                    let m = &mut self.nodes[i].0;
                    match step {
                        Step::Fused { residual, relu } => {
                            let r = residual
                                .map(|r| output(r).into_tensor(m.name()))
                                .transpose()?;
                            m.predict_with(&x, r.as_ref(), relu)?
                        }
                        _ => m.predict(&x)?,
                    }
                }
            });
            for &p in &self.nodes[i].1 {
                if last_read[p] == i
                    && let Some(a) = outputs[p].take()
                {
                    crate::module::recycle(a);
                }
            }
        }
        Ok(Graph::pack(
            self.outputs
                .iter()
                .map(|&o| outputs[o].clone().expect("computed"))
                .collect(),
        ))
    }
}

impl Module for Graph {
    fn name(&self) -> &str {
        "Graph"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let given = self.graph_inputs(input)?;
        let mut outputs: Vec<Option<Activity>> = vec![None; self.nodes.len()];
        self.node_inputs.clear();
        for i in 0..self.nodes.len() {
            let x = match self.inputs.iter().position(|&k| k == i) {
                Some(k) => given[k].clone(),
                None => Graph::pack(
                    self.nodes[i]
                        .1
                        .iter()
                        .map(|&p| outputs[p].clone().expect("topological order"))
                        .collect(),
                ),
            };
            outputs[i] = Some(self.nodes[i].0.forward(&x)?);
            self.node_inputs.push(x);
        }
        Ok(Graph::pack(
            self.outputs
                .iter()
                .map(|&o| outputs[o].clone().expect("computed"))
                .collect(),
        ))
    }

    fn predict(&mut self, input: &Activity) -> Result<Activity> {
        crate::module::predicting(|| self.predict_steps(input))
    }

    fn update_grad_input(&mut self, _input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.back(grad_output, false)
    }

    fn backward(&mut self, _input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.back(grad_output, true)
    }

    fn acc_grad_parameters(
        &mut self,
        _input: &Activity,
        _grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        if self.node_grads.len() != self.nodes.len() {
            return Err(invalid(
                "Graph",
                "acc_grad_parameters before update_grad_input",
            ));
        }
        for (i, (m, _)) in self.nodes.iter_mut().enumerate() {
            if let Some(g) = &self.node_grads[i] {
                m.acc_grad_parameters(&self.node_inputs[i], g, scale)?;
            }
        }
        Ok(())
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        for (m, _) in &mut self.nodes {
            m.visit_parameters(f);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for (m, _) in &mut self.nodes {
            m.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn visit_state(&mut self, f: &mut dyn FnMut(crate::StateMut<'_>)) {
        for (m, _) in &mut self.nodes {
            m.visit_state(f);
        }
    }

    fn reseed(&mut self, seed: u64) {
        for (i, (m, _)) in self.nodes.iter_mut().enumerate() {
            m.reseed(crate::module::child_seed(seed, i));
        }
    }

    fn spec(&self) -> Option<crate::io::Spec> {
        let mut spec = crate::io::Spec::new("Graph")
            .ints("inputs", &self.inputs)
            .ints("outputs", &self.outputs);
        for (k, (m, preds)) in self.nodes.iter().enumerate() {
            spec = spec.ints(&format!("preds{k}"), preds).child(m.spec()?);
        }
        Some(spec)
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
